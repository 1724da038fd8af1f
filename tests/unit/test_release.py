"""The pure part of the SDK's release step: a release made from the broker's (or this node's)
decisions, and the TLS context a broker URL gets. Against a real broker:
tests/integration/test_release.py."""

from __future__ import annotations

import ssl

from tearline.clients.http import _tls_for
from tearline.clients.partner import PreviewDecision, release_of
from tests.factories import label


def test_a_grant_without_a_key_to_seal_to_is_not_a_recipient_and_says_so() -> None:
    decisions = {"USA": PreviewDecision("grant", agreement="gbr-usa")}
    release = release_of(label(releasable_to=("USA",)), "classic", decisions, {"USA"})
    assert dict(release.recipients) == {}
    assert release.not_sent == {"USA": "NO_ENCRYPTION_KEY"}


def test_a_plain_http_broker_gets_no_ca_bundle_and_a_tls_one_the_default() -> None:
    context = _tls_for("http://127.0.0.1:8000")
    assert isinstance(context, ssl.SSLContext)
    # Were a TLS connection ever made on it, it would be checked, against no CA: refused.
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
    assert _tls_for("https://broker.example") is True
    assert _tls_for("HTTPS://broker.example") is True
