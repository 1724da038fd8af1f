"""HTTP Message Signatures (RFC 9421) on partner requests, the signing half (DESIGN §6).

Every request a partner sends carries one signature, labelled ``sig1``, made with the partner's
Ed25519 ``sig`` key over ``@method`` and ``@target-uri``, plus ``content-digest`` (RFC 9530,
SHA-256) when there is a body, with the parameters ``created``, ``keyid``, ``alg="ed25519"`` and
``nonce``. ``broker.signatures`` checks it.

Pure: the caller passes the time (``created``) and the nonce and gets back the headers to add;
nothing here reads a clock, a file or the network.

Another language's client signs the same way with any RFC 9421 library; the signature base of a
``POST`` looks like::

    "@method": POST
    "@target-uri": https://broker.example/v1/reports
    "content-digest": sha-256=:<base64 of SHA-256(body)>:
    "@signature-params": ("@method" "@target-uri" "content-digest");created=1780315200;\
keyid="GBR-sig-1";alg="ed25519";nonce="<unique per request>"
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
)

from tearline.clients.errors import IdentityError, InputError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import format_time
from tearline.clients.protocol.identity import Identity

LABEL: Final = "sig1"
ALGORITHM_ID: Final = "ed25519"
COVERED: Final = ("@method", "@target-uri")
COVERED_WITH_BODY: Final = (*COVERED, "content-digest")
# Headers this module owns: whatever the caller passed under these names is replaced.
_OWN_HEADERS: Final = frozenset({"content-digest", "signature-input", "signature"})


class Ed25519Algorithm(HTTPSignatureAlgorithm):
    """RFC 9421 ``ed25519`` over Tearline's key handles instead of ``cryptography`` objects.

    Only ``clients.protocol.crypto`` may touch ``cryptography.hazmat``, and its verification key
    runs on libsodium, twice as fast as OpenSSL on the broker's hot path (DESIGN §10).
    """

    algorithm_id = ALGORITHM_ID

    def __init__(
        self,
        public_key: crypto.VerifyKey | None = None,
        private_key: crypto.SigningKey | None = None,
    ) -> None:
        # A registry can hold ML-DSA signing keys too; this algorithm must never run on one.
        for key in (public_key, private_key):
            if key is not None and key.alg != crypto.ED25519:
                raise HTTPMessageSignaturesException(f"{key.alg} key used with ed25519")
        self.public_key = public_key
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        if self.private_key is None:
            raise HTTPMessageSignaturesException("no private key to sign with")
        return self.private_key.sign(message)

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None:
            raise HTTPMessageSignaturesException("no public key to verify with")
        self.public_key.verify(signature, message)


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, kid: str, key: crypto.SigningKey) -> None:
        self._kid = kid
        self._key = key

    def resolve_private_key(self, key_id: str) -> crypto.SigningKey:
        if key_id != self._kid:
            raise HTTPMessageSignaturesException(f"no private key for {key_id!r}")
        return self._key


@dataclass(slots=True)
class RequestView:
    """The request view the library reads: method, absolute URL, headers it may add to."""

    method: str
    url: str
    headers: dict[str, str]


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    key_id: str,
    private_key: bytes,
    created: int,
    nonce: str,
) -> dict[str, str]:
    """The headers to add to a request: ``Signature-Input``, ``Signature`` and, when ``body`` is
    not empty, ``Content-Digest``.

    ``url`` is the absolute, already encoded URL the request goes to (``str(httpx_request.url)``),
    ``method`` its upper-case method. ``created`` is Unix time in seconds and ``nonce`` a fresh
    random string of 16 to 128 URL-safe characters (e.g. ``secrets.token_urlsafe(16)``): the
    broker refuses a nonce it has seen within the replay window.

    An empty body is treated as no body, so a GET and a bodiless POST sign alike; the broker only
    asks for a digest when there are bytes to bind.
    """
    try:
        key = crypto.SigningKey(crypto.ED25519, private_key)
    except crypto.CryptoFailure as exc:
        raise IdentityError(f"request signing key {key_id!r}: {exc}") from exc
    request = RequestView(
        method, url, {k: v for k, v in headers.items() if k.lower() not in _OWN_HEADERS}
    )
    signer = HTTPMessageSigner(
        signature_algorithm=Ed25519Algorithm, key_resolver=_OneKey(key_id, key)
    )
    try:
        signer.sign(
            request,
            key_id=key_id,
            created=datetime.fromtimestamp(created, UTC),
            nonce=nonce,
            label=LABEL,
            include_alg=True,
            covered_component_ids=COVERED,
            # The library adds Content-Digest and covers it whenever it is given body bytes.
            body=body or None,
        )
    except HTTPMessageSignaturesException as exc:
        raise InputError(f"cannot sign {method} {url}: {exc}", code="unsignable_request") from exc
    added = {k.lower(): (k, v) for k, v in request.headers.items() if k.lower() in _OWN_HEADERS}
    return dict(added.values())


def signing_key_of(identity: Identity, now: datetime) -> tuple[str, bytes]:
    """The Ed25519 ``sig`` key ``identity`` signs its requests with at ``now``, as
    ``(kid, raw private key)``: the newest one valid then, as for envelopes."""
    valid = [
        k
        for k in identity.keys
        if k.record.use == "sig" and k.record.alg == crypto.ED25519 and k.record.valid_at(now)
    ]
    if not valid:
        raise IdentityError(
            f"identity {identity.partner} has no Ed25519 signing key valid at {format_time(now)}"
        )
    best = max(valid, key=lambda k: (k.record.not_before, k.record.kid))
    return best.record.kid, best.private


def sign_as(
    identity: Identity,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    now: datetime,
) -> dict[str, str]:
    """:func:`sign_request` with ``identity``'s current key, ``created`` from ``now`` and a
    fresh random nonce: what every client does for every request."""
    kid, private = signing_key_of(identity, now)
    return sign_request(
        method,
        url,
        headers,
        body,
        key_id=kid,
        private_key=private,
        created=int(now.timestamp()),
        nonce=secrets.token_urlsafe(16),
    )
