"""RFC 9421 request signatures: the SDK signs (clients.httpsig), the broker verifies
(broker.signatures).

Real Ed25519 keys throughout; each refusal is a signed request with exactly one thing wrong.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest

from tearline.broker.signatures import MAX_FUTURE_S, Authenticated, verify_request
from tearline.clients.errors import AuthenticationError, IdentityError
from tearline.clients.httpsig import sign_request, signing_key_of
from tearline.clients.protocol import crypto
from tearline.clients.protocol.identity import Identity, Partner, PrivateKey, Registry
from tests.factories import NOW, identity, partner, registry

URL = "https://broker.example:8443/v1/reports?dry_run=1"
BODY = b'{"header":"eyJ2IjoxfQ","signatures":[],"ciphertext":"AAAA"}' * 16
CREATED = int(NOW.timestamp())
NONCE = "k3Jx9Qp2vB7mN4tZ8wYc1A"
WINDOW = 60


def _me(pid: str = "GBR") -> Identity:
    # factories.identity caches on its arguments as spelled: name the suite the way partner() does
    return identity(pid, "pq-hybrid")


def _kid_and_key(pid: str = "GBR") -> tuple[str, bytes]:
    return signing_key_of(_me(pid), NOW)


@dataclasses.dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    registry: Registry

    def verify(self, *, window: int = WINDOW) -> Authenticated:
        return verify_request(
            self.method,
            self.url,
            self.headers,
            self.body,
            self.registry,
            now=NOW,
            replay_window_s=window,
        )


def _registry(*partners: Partner | str) -> Registry:
    return registry(*(partners or ("GBR", "USA")))


def signed(
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    *,
    key_of: str = "GBR",
    kid: str | None = None,
    created: int = CREATED,
    nonce: str = NONCE,
    reg: Registry | None = None,
) -> Request:
    """A request the SDK signed with ``key_of``'s Ed25519 key, under ``kid`` (default: its own)."""
    own_kid, private = _kid_and_key(key_of)
    headers = {"Content-Type": "application/json", "Host": "broker.example:8443"}
    headers |= sign_request(
        method,
        url,
        headers,
        body,
        key_id=kid or own_kid,
        private_key=private,
        created=created,
        nonce=nonce,
    )
    return Request(method, url, headers, body, reg or _registry())


def hand_signed(
    components: tuple[str, ...],
    params: str,
    *,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
) -> Request:
    """A request signed over an RFC 9421 signature base built by hand, not by the library.

    Lets a test send parameters the SDK never would, and checks the broker against the RFC text
    rather than against the library that made the signature.
    """
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    values = {"@method": method, "@target-uri": url, "content-digest": digest}
    inner = "(" + " ".join(f'"{c}"' for c in components) + ")" + params
    lines = [f'"{c}": {values[c]}' for c in components] + [f'"@signature-params": {inner}']
    _, private = _kid_and_key()
    signature = crypto.SigningKey(crypto.ED25519, private).sign("\n".join(lines).encode())
    headers = {
        "Content-Digest": digest,
        "Signature-Input": f"sig1={inner}",
        "Signature": f"sig1=:{base64.b64encode(signature).decode()}:",
    }
    return Request(method, url, headers, body, _registry())


def _params(
    *, created: bool = True, keyid: bool = True, nonce: bool = True, extra: str = ""
) -> str:
    return (
        (f";created={CREATED}" if created else "")
        + (';keyid="GBR-sig-1"' if keyid else "")
        + ';alg="ed25519"'
        + (f';nonce="{NONCE}"' if nonce else "")
        + extra
    )


def _changed_key(pid: str, **changes: object) -> Partner:
    """``pid``'s registry entry with its Ed25519 signing key changed (revoked, expired, …)."""
    kid, _ = _kid_and_key(pid)
    base = partner(pid)
    keys = tuple(
        dataclasses.replace(k, **changes) if k.kid == kid else k  # type: ignore[arg-type]
        for k in base.keys
    )
    return dataclasses.replace(base, keys=keys)


def _with(req: Request, **changes: object) -> Request:
    return dataclasses.replace(req, **changes)  # type: ignore[arg-type]


def _without(req: Request, *names: str) -> Request:
    lowered = {n.lower() for n in names}
    return _with(req, headers={k: v for k, v in req.headers.items() if k.lower() not in lowered})


def _two_signatures() -> Request:
    req = signed()
    other = signed(nonce="second-nonce-0123456789")
    sig_input = (
        req.headers["Signature-Input"]
        + ", "
        + other.headers["Signature-Input"].replace("sig1=", "sig2=")
    )
    signature = (
        req.headers["Signature"] + ", " + other.headers["Signature"].replace("sig1=", "sig2=")
    )
    return _with(req, headers=req.headers | {"Signature-Input": sig_input, "Signature": signature})


# --- what passes ------------------------------------------------------------------------------


def test_round_trip_with_body() -> None:
    req = signed()
    assert req.verify() == Authenticated(
        partner="GBR", kid="GBR-sig-1", nonce=NONCE, created=CREATED
    )


def test_round_trip_without_body() -> None:
    req = signed("GET", "http://localhost:8000/v1/inbox?wait=30&limit=10", b"", key_of="USA")
    assert "Content-Digest" not in req.headers
    assert req.verify().partner == "USA"


def test_headers_match_whatever_their_case() -> None:
    req = signed()
    lowered = _with(req, headers={k.lower(): v for k, v in req.headers.items()})
    assert lowered.verify().partner == "GBR"


def test_sign_request_emits_the_documented_fields() -> None:
    headers = signed().headers
    digest = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    assert headers["Content-Digest"] == f"sha-256=:{digest}:"
    assert headers["Signature-Input"] == (
        'sig1=("@method" "@target-uri" "content-digest");'
        f'created={CREATED};keyid="GBR-sig-1";alg="ed25519";nonce="{NONCE}"'
    )
    label, _, value = headers["Signature"].partition("=")
    assert label == "sig1"
    assert len(base64.b64decode(value.strip(":"), validate=True)) == 64


def test_sign_request_replaces_stale_signature_headers() -> None:
    kid, private = _kid_and_key()
    old = {"signature": "sig1=:AAAA:", "content-digest": "sha-256=:AAAA:", "Accept": "*/*"}
    added = sign_request(
        "POST", URL, old, BODY, key_id=kid, private_key=private, created=CREATED, nonce=NONCE
    )
    assert sorted(added) == ["Content-Digest", "Signature", "Signature-Input"]


def test_a_signature_base_built_by_hand_from_rfc_9421_verifies() -> None:
    req = hand_signed(("@method", "@target-uri", "content-digest"), _params())
    assert req.verify().partner == "GBR"


@pytest.mark.parametrize("age", [0, WINDOW, -MAX_FUTURE_S], ids=["now", "window-edge", "skew-edge"])
def test_created_at_the_edges_of_the_window_passes(age: int) -> None:
    assert signed(created=CREATED - age).verify().created == CREATED - age


def test_signing_key_of_picks_the_newest_valid_ed25519_key() -> None:
    me = _me()
    old = me.keys[0]
    assert old.record.alg == crypto.ED25519
    newer = PrivateKey(
        dataclasses.replace(old.record, kid="GBR-sig-2", not_before=NOW - timedelta(days=1)),
        old.private,
    )
    later = PrivateKey(
        dataclasses.replace(old.record, kid="GBR-sig-3", not_before=NOW + timedelta(days=1)),
        old.private,
    )
    rotated = Identity("GBR", (*me.keys, newer, later))
    assert signing_key_of(rotated, NOW) == ("GBR-sig-2", old.private)


def test_signing_key_of_refuses_an_identity_without_a_valid_key() -> None:
    me = _me()
    revoked = Identity(
        "GBR",
        tuple(PrivateKey(dataclasses.replace(k.record, revoked=True), k.private) for k in me.keys),
    )
    with pytest.raises(IdentityError, match="no Ed25519 signing key"):
        signing_key_of(revoked, NOW)


# --- what is refused --------------------------------------------------------------------------

_ML_DSA_KID = next(k.kid for k in partner("GBR").keys if k.alg == crypto.ML_DSA_65)
_ENC_KID = next(k.kid for k in partner("GBR").keys if k.alg == crypto.X25519)

REFUSALS: dict[str, tuple[Callable[[], Request], str]] = {
    "unsigned": (
        lambda: _without(signed(), "Signature", "Signature-Input"),
        "signature_missing",
    ),
    "signature-input-only": (lambda: _without(signed(), "Signature"), "signature_missing"),
    "tampered-method": (lambda: _with(signed(), method="PUT"), "signature_invalid"),
    "tampered-path": (
        lambda: _with(signed(), url=URL.replace("/v1/reports", "/v1/inbox/ack")),
        "signature_invalid",
    ),
    "tampered-query": (
        lambda: _with(signed(), url=URL.replace("dry_run=1", "dry_run=0")),
        "signature_invalid",
    ),
    "tampered-host": (
        lambda: _with(signed(), url=URL.replace("broker.example", "evil.example")),
        "signature_invalid",
    ),
    "tampered-body": (lambda: _with(signed(), body=BODY + b" "), "digest_mismatch"),
    "body-replaced-with-its-digest": (
        lambda: _with(
            signed(),
            body=b"{}",
            headers=signed().headers
            | {
                "Content-Digest": "sha-256=:"
                + base64.b64encode(hashlib.sha256(b"{}").digest()).decode()
                + ":"
            },
        ),
        "signature_invalid",
    ),
    "digest-header-removed": (
        lambda: _without(signed(), "Content-Digest"),
        "digest_missing",
    ),
    "body-added-to-bodiless-request": (
        lambda: _with(signed(body=b""), body=BODY),
        "digest_missing",
    ),
    "another-partners-key-under-this-keyid": (
        lambda: signed(key_of="USA", kid="GBR-sig-1"),
        "signature_invalid",
    ),
    "unknown-keyid": (lambda: signed(kid="ZZZ-sig-1"), "unknown_key"),
    "encryption-keyid": (lambda: signed(kid=_ENC_KID), "key_not_allowed"),
    "ml-dsa-keyid": (lambda: signed(kid=_ML_DSA_KID), "key_not_allowed"),
    "revoked-key": (
        lambda: signed(reg=_registry(_changed_key("GBR", revoked=True), "USA")),
        "key_not_valid",
    ),
    "expired-key": (
        lambda: signed(
            reg=_registry(_changed_key("GBR", not_after=NOW - timedelta(seconds=1)), "USA")
        ),
        "key_not_valid",
    ),
    "key-not-yet-valid": (
        lambda: signed(
            reg=_registry(_changed_key("GBR", not_before=NOW + timedelta(seconds=1)), "USA")
        ),
        "key_not_valid",
    ),
    "suspended-partner": (
        lambda: signed(reg=_registry(partner("GBR", status="suspended"), "USA")),
        "partner_suspended",
    ),
    "stale-created": (lambda: signed(created=CREATED - WINDOW - 1), "stale_signature"),
    "created-in-the-future": (
        lambda: signed(created=CREATED + MAX_FUTURE_S + 1),
        "signature_from_future",
    ),
    "expires-in-the-past": (
        lambda: hand_signed(
            ("@method", "@target-uri", "content-digest"), _params(extra=f";expires={CREATED}")
        ),
        "stale_signature",
    ),
    "missing-nonce": (
        lambda: hand_signed(("@method", "@target-uri", "content-digest"), _params(nonce=False)),
        "params_missing",
    ),
    "missing-created": (
        lambda: hand_signed(("@method", "@target-uri", "content-digest"), _params(created=False)),
        "params_missing",
    ),
    "missing-keyid": (
        lambda: hand_signed(("@method", "@target-uri", "content-digest"), _params(keyid=False)),
        "params_missing",
    ),
    "short-nonce": (lambda: signed(nonce="abc"), "params_invalid"),
    "other-algorithm": (
        lambda: hand_signed(
            ("@method", "@target-uri", "content-digest"),
            _params().replace('alg="ed25519"', 'alg="hmac-sha256"'),
        ),
        "params_invalid",
    ),
    "body-without-content-digest-covered": (
        lambda: hand_signed(("@method", "@target-uri"), _params()),
        "components_missing",
    ),
    "method-not-covered": (
        lambda: hand_signed(("@target-uri", "content-digest"), _params()),
        "components_missing",
    ),
    "target-uri-not-covered": (
        lambda: hand_signed(("@method", "content-digest"), _params()),
        "components_missing",
    ),
    "garbage-signature-header": (
        lambda: _with(signed(), headers=signed().headers | {"Signature": "sig1=:not base64!:"}),
        "signature_invalid",
    ),
    "garbage-signature-input-header": (
        lambda: _with(signed(), headers=signed().headers | {"Signature-Input": "((("}),
        "signature_invalid",
    ),
    "truncated-signature": (
        lambda: _with(signed(), headers=signed().headers | {"Signature": "sig1=:AAAA:"}),
        "signature_invalid",
    ),
    "labels-disagree": (
        lambda: _with(
            signed(),
            headers=signed().headers
            | {"Signature": signed().headers["Signature"].replace("sig1=", "sig2=")},
        ),
        "signature_invalid",
    ),
    "two-signatures": (_two_signatures, "signature_ambiguous"),
}


@pytest.mark.parametrize(("make", "code"), list(REFUSALS.values()), ids=list(REFUSALS))
def test_refused(make: Callable[[], Request], code: str) -> None:
    req = make()
    with pytest.raises(AuthenticationError) as caught:
        req.verify()
    assert caught.value.code == code, caught.value.message
    assert caught.value.message


def test_replay_window_is_the_callers() -> None:
    req = signed(created=CREATED - 31)
    assert req.verify(window=60).created == CREATED - 31
    with pytest.raises(AuthenticationError) as caught:
        req.verify(window=30)
    assert caught.value.code == "stale_signature"


def test_suspension_is_checked_even_with_a_good_signature() -> None:
    # The same request, first under the registry as it was, then after the operator suspended GBR.
    req = signed()
    assert req.verify().partner == "GBR"
    with pytest.raises(AuthenticationError) as caught:
        _with(req, registry=_registry(partner("GBR", status="suspended"), "USA")).verify()
    assert caught.value.code == "partner_suspended"
