"""Who is calling: RFC 9421 request signatures checked against the registry (DESIGN §6). Pure.

:func:`verify_request` takes the method, URL, headers, body, registry and ``now``, and returns the
authenticated partner or raises :class:`~clients.errors.AuthenticationError` with a precise
``code``. No clock, no I/O: the one stateful step, remembering the signature's nonce so that a
replay is refused, is :func:`broker.auth.remember_nonce` (Redis), kept apart so this module stays
testable without a server; :func:`nonce_key`, :func:`nonce_ttl_s` and :func:`replayed` here are
what it (and the ingest script, ``broker.store.Store.ingest``) store and refuse with.

A request passes when it carries exactly one signature whose ``keyid`` is an Ed25519 ``sig`` key
of an active partner, valid at ``now``; that covers ``@method``, ``@target-uri`` and, when the body
is not empty, ``content-digest``; whose ``created`` lies within the replay window (and at most
:data:`MAX_FUTURE_S` ahead); that carries a ``nonce``; whose Content-Digest matches the body; and
whose signature verifies. ``clients.httpsig`` makes such signatures.

Refusal codes: ``signature_missing``, ``signature_invalid``, ``signature_ambiguous``,
``params_missing``, ``params_invalid``, ``components_missing``, ``stale_signature``,
``signature_from_future``, ``unknown_key``, ``key_not_allowed``, ``key_not_valid``,
``partner_suspended``, ``digest_missing``, ``digest_mismatch``; and from
:func:`broker.auth.remember_nonce`, ``replayed_request``.
They name what is wrong with the request, never anything private: the directory of keys and
partner statuses is public anyway (``GET /v1/partners``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)

from tearline.clients.errors import AuthenticationError
from tearline.clients.httpsig import ALGORITHM_ID, Ed25519Algorithm, RequestView
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import format_time
from tearline.clients.protocol.identity import Registry

#: How far ahead of the broker's clock ``created`` may be: clocks of partner nodes drift.
MAX_FUTURE_S: Final = 5
DEFAULT_REPLAY_WINDOW_S: Final = 60
#: Nonces are Redis key material: bounded in length and alphabet, long enough to be unique.
NONCE: Final = re.compile(r"[A-Za-z0-9._~+/=-]{16,128}", re.ASCII)

# Coverage is compared on identity (name and parameters), the way RFC 9421 compares components:
# a ``"@method";req`` or ``"content-digest";key="sha-512"`` is not the plain component.
_METHOD: Final = ("@method", frozenset[tuple[str, Any]]())
_TARGET_URI: Final = ("@target-uri", frozenset[tuple[str, Any]]())
_CONTENT_DIGEST: Final = ("content-digest", frozenset[tuple[str, Any]]())


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request whose signature checked out: who signed it, with which key, and its nonce."""

    partner: str
    kid: str
    nonce: str
    created: int


def _refuse(code: str, message: str) -> AuthenticationError:
    return AuthenticationError(message, code=code)


class _RegistryKeys(HTTPSignatureKeyResolver):
    """Maps ``keyid`` to the registry's parsed key, refusing keys that may not sign requests."""

    def __init__(self, registry: Registry, now: datetime) -> None:
        self._registry = registry
        self._now = now
        self.partner: str | None = None

    def resolve_public_key(self, key_id: str) -> crypto.VerifyKey:
        owner = self._registry.key(key_id)
        if owner is None:
            raise _refuse("unknown_key", f"no partner has a key with id {key_id!r}")
        record = owner.record
        if record.use != "sig" or record.alg != crypto.ED25519:
            raise _refuse(
                "key_not_allowed",
                f"key {key_id!r} is a {record.alg} {record.use} key; requests are signed with "
                "an Ed25519 sig key",
            )
        if not record.valid_at(self._now):
            state = "revoked" if record.revoked else "outside its validity period"
            raise _refuse("key_not_valid", f"key {key_id!r} is {state} at {format_time(self._now)}")
        partner = self._registry.get(owner.partner)
        if partner is None or not partner.active:
            raise _refuse("partner_suspended", f"partner {owner.partner} is suspended")
        self.partner = owner.partner
        return self._registry.verify_key(key_id)


class _Verifier(HTTPMessageVerifier):
    """The library's verifier, with Tearline's policy on the signature parameters.

    The library calls :meth:`validate_created_and_expires` on the parsed ``Signature-Input``
    before it resolves a key or does any cryptography; overriding it puts every shape check there,
    with the caller's ``now`` in place of the library's clock read (this module is pure).
    """

    def __init__(self, resolver: _RegistryKeys, now: float, window: int, has_body: bool) -> None:
        super().__init__(signature_algorithm=Ed25519Algorithm, key_resolver=resolver)
        self._now = now
        self._window = window
        self._has_body = has_body

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        covered = {(item.value, frozenset(item.params.items())) for item in sig_input}
        _check_params(sig_input.params, covered, self._now, self._window, self._has_body)


def _check_params(
    params: Mapping[str, Any],
    covered: set[tuple[str, frozenset[tuple[str, Any]]]],
    now: float,
    window: int,
    has_body: bool,
) -> None:
    """Tearline's policy on a signature's parameters and coverage, before any key or crypto."""
    missing = [p for p in ("created", "keyid", "nonce") if p not in params]
    if missing:
        raise _refuse(
            "params_missing", f"the signature lacks the parameter(s) {', '.join(missing)}"
        )
    if not isinstance(params["nonce"], str) or not NONCE.fullmatch(params["nonce"]):
        raise _refuse(
            "params_invalid", "the nonce must be 16 to 128 characters of [A-Za-z0-9._~+/=-]"
        )
    if params.get("alg", ALGORITHM_ID) != ALGORITHM_ID:
        raise _refuse("params_invalid", f"the signature algorithm must be {ALGORITHM_ID!r}")
    required = [_METHOD, _TARGET_URI, *([_CONTENT_DIGEST] if has_body else [])]
    lacking = [name for name, params_ in required if (name, params_) not in covered]
    if lacking:
        raise _refuse("components_missing", f"the signature does not cover {', '.join(lacking)}")
    created = params["created"]
    age = now - created
    if age > window:
        raise _refuse(
            "stale_signature",
            f"the signature was created {age:.0f} s ago; the replay window is {window} s",
        )
    if -age > MAX_FUTURE_S:
        raise _refuse(
            "signature_from_future",
            f"the signature was created {-age:.0f} s in the future; check the clock",
        )
    if "expires" in params and params["expires"] <= now:
        raise _refuse("stale_signature", "the signature has expired")


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    registry: Registry,
    *,
    now: datetime,
    replay_window_s: int = DEFAULT_REPLAY_WINDOW_S,
) -> Authenticated:
    """Authenticate one request, or raise :class:`AuthenticationError`.

    ``url`` is the full target URI as the client addressed it, ``scheme://host[:port]/path?query``
    with the ``Host`` the client sent and the path and query exactly as they arrived (still
    percent-encoded); ``headers.items()`` must yield every field line. The nonce is not checked
    here: pass the result to :func:`remember_nonce`.
    """
    fields = combine_fields(headers.items())
    if "signature" not in fields or "signature-input" not in fields:
        raise _refuse(
            "signature_missing",
            "the request is not signed: send Signature-Input and Signature (RFC 9421)",
        )
    if body and "content-digest" not in fields:
        raise _refuse("digest_missing", "a request with a body must send Content-Digest")
    resolver = _RegistryKeys(registry, now)
    auth = _verify_canonical(method, url, fields, body, resolver, now.timestamp(), replay_window_s)
    if auth is None:
        auth = _verify_with_library(
            method, url, fields, body, resolver, now.timestamp(), replay_window_s
        )
    return auth


# The fast path (DESIGN §10: the library's parse cost three Ed25519 verifications per request).
# A signature in the canonical form the SDK writes, the form RFC 9421's own examples use, is
# matched by these patterns and its signature base written directly; anything else, valid or
# not, goes through the library. Each pattern admits only text whose structured-field
# serialisation is itself, so the base built here is byte for byte the one the library builds,
# and every check runs in the same order with the same refusal codes
# (tests/unit/test_request_signature_paths.py holds the two paths to that).
_CANONICAL_INPUT: Final = re.compile(
    r'(?P<label>[a-z][a-z0-9_.-]{0,63})=(?P<params>\((?P<covered>"@method" "@target-uri"'
    r'(?: "content-digest")?)\);created=(?P<created>[0-9]{1,12});'
    r'keyid="(?P<keyid>[\x20\x21\x23-\x5b\x5d-\x7e]{1,256})";alg="ed25519";'
    r'nonce="(?P<nonce>[A-Za-z0-9._~+/=-]{16,128})")',
    re.ASCII,
)
_CANONICAL_SIGNATURE: Final = re.compile(
    r"(?P<label>[a-z][a-z0-9_.-]{0,63})=:(?P<sig>[A-Za-z0-9+/]{86}==):", re.ASCII
)
_CANONICAL_DIGEST: Final = re.compile(r"sha-256=:[A-Za-z0-9+/]{43}=:", re.ASCII)
# A URL the library's @target-uri resolver returns unchanged (its own grammar, RFC 3986, with a
# lower-case scheme and host and a path): it is the component value as it stands.
_URL_CHARS: Final = r"A-Za-z0-9._~!$&'()*+,;=:@/-"
_CANONICAL_URL: Final = re.compile(
    r"https?://[a-z0-9.-]{1,253}(?::[0-9]{1,5})?"
    rf"/(?:[{_URL_CHARS}]|%[0-9A-Fa-f]{{2}})*(?:\?(?:[?{_URL_CHARS}]|%[0-9A-Fa-f]{{2}})*)?",
    re.ASCII,
)


def _verify_canonical(
    method: str,
    url: str,
    fields: Mapping[str, str],
    body: bytes,
    resolver: _RegistryKeys,
    now: float,
    window: int,
) -> Authenticated | None:
    """The request authenticated from its canonical signature, or None when the signature is
    not in canonical form (the caller then asks the library)."""
    sig_input = _CANONICAL_INPUT.fullmatch(fields["signature-input"])
    signature = _CANONICAL_SIGNATURE.fullmatch(fields["signature"])
    if sig_input is None or signature is None or not _CANONICAL_URL.fullmatch(url):
        return None
    if sig_input["label"] != signature["label"] or method not in _CANONICAL_METHODS:
        return None
    digest = fields.get("content-digest")
    covers_digest = sig_input["covered"].endswith('"content-digest"')
    if covers_digest != bool(body) or (
        covers_digest and (digest is None or not _CANONICAL_DIGEST.fullmatch(digest))
    ):
        return None
    created = int(sig_input["created"])
    params = {"created": created, "keyid": sig_input["keyid"], "nonce": sig_input["nonce"]}
    covered = {_METHOD, _TARGET_URI, *([_CONTENT_DIGEST] if covers_digest else [])}
    _check_params({**params, "alg": ALGORITHM_ID}, covered, now, window, bool(body))
    key = resolver.resolve_public_key(sig_input["keyid"])
    lines = [f'"@method": {method}', f'"@target-uri": {url}']
    if covers_digest:
        lines.append(f'"content-digest": {digest}')
    lines.append(f'"@signature-params": {sig_input["params"]}')
    try:
        key.verify(base64.b64decode(signature["sig"]), "\n".join(lines).encode("ascii"))
    except crypto.CryptoFailure:
        raise _refuse("signature_invalid", "the request signature does not verify") from None
    if covers_digest and digest != _sha256_digest_field(body):
        raise _refuse("digest_mismatch", "Content-Digest does not match the body")
    assert resolver.partner is not None
    return Authenticated(resolver.partner, sig_input["keyid"], sig_input["nonce"], created)


_CANONICAL_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})


def _sha256_digest_field(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(crypto.sha256(body)).decode('ascii')}:"


def _verify_with_library(
    method: str,
    url: str,
    fields: Mapping[str, str],
    body: bytes,
    resolver: _RegistryKeys,
    now: float,
    window: int,
) -> Authenticated:
    """Any RFC 9421 signature, through the library, with the same policy."""
    _one_signature(fields)
    verifier = _Verifier(resolver, now, window, bool(body))
    try:
        # max_age=None: the age is checked by _Verifier against `now`, not the library's clock.
        (result,) = verifier.verify(RequestView(method, url, dict(fields)), max_age=None)
    except AuthenticationError:
        raise
    except InvalidSignature as exc:
        # The library wraps what the key resolver raises; a registry refusal keeps its code.
        if isinstance(exc.__cause__, AuthenticationError):
            raise exc.__cause__ from None
        raise _refuse("signature_invalid", f"the request signature does not verify: {exc}") from exc
    except HTTPMessageSignaturesException as exc:
        raise _refuse("signature_invalid", f"the request signature is malformed: {exc}") from exc
    # The signature binds the digest, not the body: the library leaves this check to its caller.
    # With a body, validate_created_and_expires has made sure the plain component is covered;
    # looking it up directly is a third of the cost of ContentDigest.verify_components.
    signed_digest = result.covered_components.get('"content-digest"')
    try:
        if signed_digest is not None:
            ContentDigest.verify(signed_digest, body)
    except InvalidSignature as exc:
        raise _refuse("digest_mismatch", f"Content-Digest does not match the body: {exc}") from exc
    assert resolver.partner is not None
    params = result.parameters
    return Authenticated(
        partner=resolver.partner,
        kid=str(params["keyid"]),
        nonce=str(params["nonce"]),
        created=int(params["created"]),
    )


def combine_fields(lines: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Field lines with one name combined in order with ", " (RFC 9110 §5.3), names lower-cased;
    one pass, so a request with thousands of lines costs linear time, never quadratic."""
    combined: dict[str, list[str]] = {}
    for name, value in lines:
        combined.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(values) for name, values in combined.items()}


def _one_signature(fields: Mapping[str, str]) -> None:
    """Exactly one signature label, before any cryptography: a request carrying several (two
    Signature lines, say, that a proxy would combine) is ambiguous about who signed it."""
    labels = []
    for name in ("signature-input", "signature"):
        try:
            parsed = HTTPMessageVerifier._parse_signature_dictionary(fields[name])
        except Exception as exc:  # the structured-field parser's errors have no common root
            raise _refuse("signature_invalid", f"the {name} field is malformed") from exc
        labels.append(list(parsed))
    if len(labels[0]) != 1 or len(labels[1]) != 1:
        raise _refuse(
            "signature_ambiguous",
            f"send exactly one signature (got labels {labels[0]} in Signature-Input and "
            f"{labels[1]} in Signature)",
        )
    if labels[0] != labels[1]:
        raise _refuse(
            "signature_invalid",
            f"Signature-Input and Signature carry different labels ({labels[0]}, {labels[1]})",
        )


def nonce_ttl_s(replay_window_s: int) -> int:
    """How long a nonce is remembered: a signature stays acceptable for the window plus the
    allowed clock drift after its ``created``, and its nonce must outlive it."""
    return max(2 * replay_window_s, replay_window_s + MAX_FUTURE_S)


def replayed(auth: Authenticated) -> AuthenticationError:
    return _refuse(
        "replayed_request",
        f"nonce {auth.nonce!r} was already used by {auth.partner}; sign each request afresh",
    )
