"""The SDK's release step (``AsyncPartner.release``): who a report with a label reaches, who it
does not and why; and ``publish`` sealing to exactly that release, or refusing before anything is
posted. ``tearline publish`` shows the release and has the SDK seal it (clients.cli.partner).

The broker is an httpx mock transport answering the directory and the preview; every request
it sees is recorded, so "nothing was posted" is checked, not assumed.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from tearline.clients.errors import DeniedError, InputError
from tearline.clients.http import _tls_for
from tearline.clients.partner import (
    EXCLUDED_BY_ONLY,
    UNKNOWN_PARTNER,
    AsyncPartner,
    PreviewDecision,
    release_of,
)
from tearline.clients.protocol.encoding import b64e
from tests.factories import LEVELS, SCHEME, identity, label

KEY = identity("USA").public_entry()["keys"][0]
GRANT = {"decision": "grant", "agreement": "gbr-usa", "keys": [KEY]}


def broker(decisions: dict[str, Any], seen: list[tuple[str, str]]) -> httpx.MockTransport:
    """A broker whose registry holds GBR, USA, CAN and DEU and whose preview says ``decisions``."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if request.url.path == "/v1/partners":
            return httpx.Response(
                200,
                json={
                    "partners": [identity(p).public_entry() for p in ("GBR", "USA", "CAN", "DEU")],
                    "scheme": {
                        "policy": SCHEME.policy,
                        "levels": list(LEVELS),
                        "caveats": sorted(SCHEME.caveats),
                        "groups": {g: sorted(m) for g, m in SCHEME.groups.items()},
                    },
                    "broker": {"kid": "broker-test", "public": b64e(bytes(32))},
                },
            )
        if request.url.path == "/v1/releasability/preview":
            return httpx.Response(200, json={"partners": decisions})
        return httpx.Response(500, json={"error": {"code": "internal", "message": "not here"}})

    return httpx.MockTransport(handle)


def node(decisions: dict[str, Any], seen: list[tuple[str, str]]) -> AsyncPartner:
    return AsyncPartner("http://broker.test", identity("GBR"), transport=broker(decisions, seen))


DECISIONS = {
    "GBR": {"decision": "deny", "reason": "ORIGINATOR"},
    "USA": GRANT,
    "CAN": {**GRANT, "agreement": "gbr-can"},
    "DEU": {"decision": "deny", "reason": "NO_AGREEMENT"},
}


async def test_release_names_every_partner_rel_to_names_that_does_not_get_it_and_why() -> None:
    seen: list[tuple[str, str]] = []
    async with node(DECISIONS, seen) as gbr:
        # FVEY expands to AUS, CAN, GBR, NZL and USA; the registry holds neither AUS nor NZL.
        wanted = label(releasable_to=("FVEY", "DEU", "ATLANTIS"))
        release = await gbr.release(wanted, only=["USA"])
    assert list(release.recipients) == ["USA"]
    assert release.not_sent == {
        "ATLANTIS": UNKNOWN_PARTNER,
        "AUS": UNKNOWN_PARTNER,
        "CAN": EXCLUDED_BY_ONLY,
        "DEU": "NO_AGREEMENT",
        "NZL": UNKNOWN_PARTNER,
    }
    # What the policy refused, without those the originator itself left out.
    assert "CAN" not in release.refused
    assert release.refused["DEU"] == "NO_AGREEMENT"
    assert ("POST", "/v1/reports") not in seen


def test_a_grant_without_a_key_to_seal_to_is_not_a_recipient_and_says_so() -> None:
    decisions = {"USA": PreviewDecision("grant", agreement="gbr-usa")}
    release = release_of(label(releasable_to=("USA",)), "classic", decisions, {"USA"})
    assert dict(release.recipients) == {}
    assert release.not_sent == {"USA": "NO_ENCRYPTION_KEY"}


async def test_publish_with_require_all_sends_nothing_when_a_rel_to_partner_is_refused() -> None:
    seen: list[tuple[str, str]] = []
    async with node(DECISIONS, seen) as gbr:
        with pytest.raises(DeniedError) as refused:
            await gbr.publish(
                b"report", label(releasable_to=("USA", "DEU")), content_type="text/plain",
                require_all=True,
            )  # fmt: skip
    assert refused.value.code == "not_all_entitled"
    assert refused.value.details == {"not_sent": {"DEU": "NO_AGREEMENT"}}
    assert ("POST", "/v1/reports") not in seen


async def test_publish_to_nobody_entitled_sends_nothing_and_says_why() -> None:
    seen: list[tuple[str, str]] = []
    # As the broker answers for REL TO DEU, ATLANTIS: no one it names is entitled.
    outside = {"decision": "deny", "reason": "NOT_RELEASABLE_TO"}
    decisions = {**DECISIONS, "USA": outside, "CAN": outside}
    async with node(decisions, seen) as gbr:
        with pytest.raises(DeniedError) as refused:
            await gbr.publish(
                b"report", label(releasable_to=("DEU", "ATLANTIS")), content_type="text/plain"
            )
    assert refused.value.code == "no_recipients"
    details = refused.value.details
    assert isinstance(details, dict)
    assert details["denied"]["DEU"] == "NO_AGREEMENT"
    assert details["not_sent"] == {"ATLANTIS": UNKNOWN_PARTNER, "DEU": "NO_AGREEMENT"}
    assert ("POST", "/v1/reports") not in seen


async def test_publish_refuses_a_release_decided_for_another_label_before_asking_anything() -> None:
    seen: list[tuple[str, str]] = []
    async with node(DECISIONS, seen) as gbr:
        release = await gbr.release(label(releasable_to=("USA",)))
        asked = len(seen)
        with pytest.raises(InputError, match="another label or suite"):
            await gbr.publish(
                b"report", label(releasable_to=("USA", "CAN")), content_type="text/plain",
                release=release,
            )  # fmt: skip
        with pytest.raises(InputError, match="another label or suite"):
            await gbr.publish(
                b"report", release.label, content_type="text/plain", suite="pq-hybrid",
                release=release,
            )  # fmt: skip
    assert len(seen) == asked  # refused before any request


def test_a_plain_http_broker_gets_no_ca_bundle_and_a_tls_one_the_default() -> None:
    context = _tls_for("http://127.0.0.1:8000")
    assert isinstance(context, ssl.SSLContext)
    # Were a TLS connection ever made on it, it would be checked, against no CA: refused.
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
    assert _tls_for("https://broker.example") is True
    assert _tls_for("HTTPS://broker.example") is True
