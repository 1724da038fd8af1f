"""The sealed envelope, wire format v1 (§5): :func:`seal`, :func:`verify`, :func:`open`.

``seal`` runs on the originator's node, ``verify`` on the broker (public keys only) and
``open`` on a recipient's node (``verify`` first, then decrypt). Every way an envelope can fail
raises the one opaque :class:`~clients.errors.EnvelopeError`; its ``reason`` says why, for logs.

Byte layout, for implementers in other languages (``bind`` is a DSSE-style length-prefixed
encoding: ``purpose`` then, for each field, ``SP len(field) SP field`` with decimal lengths)::

    signature      = Sign(PAE(header_bytes))   PAE = "DSSEv1" SP len(type) SP type SP len(h) SP h
    label_digest   = SHA-256(canonical JSON of header.label)
    ciphertext     = nonce(12) ‖ AES-256-GCM(content_key, nonce, payload,
                         aad = bind("tearline-v1 content", id, originator, label_digest))
    wrapped_key    = HPKE-Seal(recipient_pk, content_key,
                         info = bind("tearline-v1 wrap", id, originator, recipient, label_digest))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from tearline.clients.errors import EnvelopeError, IdentityError, InputError, LabelError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import STIX_CONTENT_TYPE as STIX_CONTENT_TYPE
from tearline.clients.protocol.encoding import (
    EncodingError,
    b64d,
    b64e,
    compact_json,
    format_time,
    is_uuid7,
    new_uuid7,
    parse_time,
    strict_loads,
)
from tearline.clients.protocol.identity import (
    SUITE_KEM,
    SUITE_SIGNATURES,
    Identity,
    KeyRecord,
    Registry,
    check_partner_id,
)
from tearline.clients.protocol.label import Label, Scheme, label_digest

VERSION: Final = 1
PAYLOAD_TYPE: Final = b"application/vnd.tearline.header+json;version=1"
_ENVELOPE_FIELDS: Final = frozenset({"header", "signatures", "ciphertext"})
_HEADER_FIELDS: Final = frozenset(
    {"v", "id", "originator", "created", "suite", "content_type", "label",
     "ciphertext_sha256", "recipients"}
)  # fmt: skip
_SLOT_FIELDS: Final = frozenset({"partner", "kid", "wrapped_key"})
_SIG_FIELDS: Final = frozenset({"kid", "sig"})
# HPKE output: encapsulated key + 32-byte content key + 16-byte tag.
_WRAPPED_KEY_BYTES: Final = {crypto.X25519: 32 + 48, crypto.ML_KEM_768_X25519: 1120 + 48}


def pae(header_bytes: bytes) -> bytes:
    """DSSE pre-authentication encoding of the header: what every signature covers."""
    return b"DSSEv1 %d %s %d %s" % (
        len(PAYLOAD_TYPE),
        PAYLOAD_TYPE,
        len(header_bytes),
        header_bytes,
    )


def bind(purpose: bytes, *fields: bytes) -> bytes:
    return purpose + b"".join(b" %d %s" % (len(f), f) for f in fields)


def content_aad(envelope_id: str, originator: str, digest: bytes) -> bytes:
    return bind(b"tearline-v1 content", envelope_id.encode(), originator.encode(), digest)


def wrap_info(envelope_id: str, originator: str, recipient: str, digest: bytes) -> bytes:
    return bind(
        b"tearline-v1 wrap", envelope_id.encode(), originator.encode(), recipient.encode(), digest
    )


@dataclass(frozen=True, slots=True)
class RecipientSlot:
    partner: str
    kid: str
    wrapped_key: bytes


@dataclass(frozen=True, slots=True)
class Header:
    id: str
    originator: str
    created: datetime
    suite: str
    content_type: str
    label: Label
    label_digest: bytes
    ciphertext_sha256: bytes
    recipients: tuple[RecipientSlot, ...]

    @property
    def recipient_ids(self) -> list[str]:
        return [slot.partner for slot in self.recipients]


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    """An envelope whose signatures checked out; everything here was parsed from signed bytes."""

    header: Header
    header_bytes: bytes
    ciphertext: bytes
    signer_kids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OpenedReport:
    id: str
    originator: str
    created: datetime
    label: Label
    content_type: str
    payload: bytes
    suite: str = "classic"


# --- seal -----------------------------------------------------------------------------------


def seal(
    payload: bytes,
    label: Label,
    recipients: Sequence[tuple[str, KeyRecord]],
    identity: Identity,
    *,
    now: datetime,
    suite: str = "classic",
    content_type: str = STIX_CONTENT_TYPE,
    envelope_id: str | None = None,
) -> bytes:
    """Sign and encrypt ``payload`` under ``label`` for exactly ``recipients``.

    ``recipients`` pairs each partner id with the ``enc`` key to wrap to (from the broker's
    preview or the registry). Raises :class:`~clients.errors.InputError` for bad arguments.
    """
    return _seal(
        payload,
        label,
        recipients,
        identity,
        now=now,
        suite=suite,
        content_type=content_type,
        envelope_id=new_uuid7(now) if envelope_id is None else envelope_id,
        content_key=crypto.random_bytes(crypto.CONTENT_KEY_BYTES),
        nonce=crypto.random_bytes(crypto.NONCE_BYTES),
    )


def _seal(
    payload: bytes,
    label: Label,
    recipients: Sequence[tuple[str, KeyRecord]],
    identity: Identity,
    *,
    now: datetime,
    suite: str,
    content_type: str,
    envelope_id: str,
    content_key: bytes,
    nonce: bytes,
) -> bytes:
    # Kept apart from `seal` so fixed test vectors can pin the content key and nonce.
    if suite not in SUITE_KEM:
        raise InputError(f"unknown suite {suite!r}", code="invalid_suite")
    if not recipients:
        raise InputError("a report needs at least one recipient", code="no_recipients")
    if not is_uuid7(envelope_id):
        raise InputError("envelope id must be a UUIDv7", code="invalid_id")
    _check_content_type(content_type, InputError)
    label_json = label.to_dict()
    digest = label_digest(label_json)
    originator = identity.partner
    ciphertext = crypto.aead_seal(
        content_key, nonce, payload, content_aad(envelope_id, originator, digest)
    )
    slots = []
    seen: set[str] = set()
    for partner, key in recipients:
        check_partner_id(partner, "recipient")
        if partner in seen:
            raise InputError(f"recipient {partner} is listed twice", code="duplicate_recipient")
        seen.add(partner)
        if key.use != "enc" or key.alg != SUITE_KEM[suite]:
            raise IdentityError(f"key {key.kid} of {partner} is not a {SUITE_KEM[suite]} key")
        wrapped = crypto.KemPublicKey(key.alg, key.public).wrap(
            content_key, wrap_info(envelope_id, originator, partner, digest)
        )
        slots.append({"partner": partner, "kid": key.kid, "wrapped_key": b64e(wrapped)})
    header = {
        "v": VERSION,
        "id": envelope_id,
        "originator": originator,
        "created": format_time(now),
        "suite": suite,
        "content_type": content_type,
        "label": label_json,
        "ciphertext_sha256": b64e(crypto.sha256(ciphertext)),
        "recipients": slots,
    }
    header_bytes = compact_json(header)
    to_sign = pae(header_bytes)
    signatures = [
        {"kid": kid, "sig": b64e(key.sign(to_sign))}
        for kid, key in identity.signing_keys(suite, now)
    ]
    return compact_json(
        {"header": b64e(header_bytes), "signatures": signatures, "ciphertext": b64e(ciphertext)}
    )


def _check_content_type(value: object, error: type[InputError]) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 255 or not value.isprintable():
        raise error("content_type must be 1 to 255 printable characters")
    return value


# --- verify ---------------------------------------------------------------------------------


class _Reject(Exception):
    """Internal: the precise reason an envelope is refused, before it is made opaque."""


def _require(condition: bool, reason: str, *args: object) -> None:
    # The reason is %-formatted only on failure: verify runs on the broker's hot path.
    if not condition:
        raise _Reject(reason % args if args else reason)


def _object(value: object, fields: frozenset[str], what: str, *args: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Reject(f"{what % args} is not an object")
    if value.keys() != fields:
        raise _Reject(f"{what % args} has fields {sorted(value)}, expected {sorted(fields)}")
    return value


def _bytes(value: object, what: str, *args: object) -> bytes:
    try:
        return b64d(value)  # type: ignore[arg-type]
    except EncodingError as exc:
        raise _Reject(f"{what % args}: {exc}") from None


def verify(
    envelope: bytes,
    registry: Registry,
    scheme: Scheme,
    *,
    now: datetime,
    max_age: timedelta | None = None,
    max_skew: timedelta = timedelta(minutes=5),
) -> VerifiedEnvelope:
    """Check an envelope with public keys only: signatures first, then the strict header.

    With ``max_age``, ``created`` must also lie within ``[now - max_age, now + max_skew]``.
    """
    try:
        return _verify(envelope, registry, scheme, now, max_age, max_skew)
    except _Reject as exc:
        raise EnvelopeError(str(exc)) from None
    except (LabelError, IdentityError, crypto.CryptoFailure, EncodingError) as exc:
        raise EnvelopeError(f"{type(exc).__name__}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        # A shape no check above anticipated: still the one opaque error, never a crash.
        raise EnvelopeError(f"malformed envelope ({type(exc).__name__}: {exc})") from None


def _verify(
    envelope: bytes,
    registry: Registry,
    scheme: Scheme,
    now: datetime,
    max_age: timedelta | None,
    max_skew: timedelta,
) -> VerifiedEnvelope:
    outer = _object(strict_loads(envelope), _ENVELOPE_FIELDS, "envelope")
    header_bytes = _bytes(outer["header"], "header")
    ciphertext = _bytes(outer["ciphertext"], "ciphertext")
    signatures = outer["signatures"]
    _require(isinstance(signatures, list) and 0 < len(signatures) <= 2, "signatures: 1 or 2")

    # 1. Signatures, before any byte of the header is parsed.
    to_verify = pae(header_bytes)
    signer: str | None = None
    algs: set[str] = set()
    kids = []
    for i, entry in enumerate(signatures):
        sig = _object(entry, _SIG_FIELDS, "signatures[%d]", i)
        kid = sig["kid"]
        owner = registry.key(kid) if isinstance(kid, str) else None
        _require(owner is not None, "signatures[%d]: unknown kid %r", i, kid)
        assert owner is not None
        record = owner.record
        _require(record.use == "sig", "signatures[%d]: %s is not a signing key", i, kid)
        _require(record.valid_at(now), "signatures[%d]: %s is revoked or not valid now", i, kid)
        _require(signer in (None, owner.partner), "signatures by more than one partner")
        _require(record.alg not in algs, "two %s signatures", record.alg)
        registry.verify_key(kid).verify(_bytes(sig["sig"], "signatures[%d].sig", i), to_verify)
        signer = owner.partner
        algs.add(record.alg)
        kids.append(kid)

    # 2. The header, parsed strictly from the verified bytes only.
    raw = _object(strict_loads(header_bytes), _HEADER_FIELDS, "header")
    _require(type(raw["v"]) is int and raw["v"] == VERSION, "header.v is not 1")
    _require(is_uuid7(raw["id"]), "header.id is not a UUIDv7")
    _require(raw["originator"] == signer, "header.originator is not the signer")
    suite = raw["suite"]
    _require(isinstance(suite, str) and suite in SUITE_SIGNATURES, "header.suite %r unknown", suite)
    _require(algs == SUITE_SIGNATURES[suite], "signatures %s do not match %s", algs, suite)
    created = parse_time(raw["created"])
    _require(created <= now + max_skew, "header.created is in the future")
    _require(max_age is None or created >= now - max_age, "header.created is too old")
    content_type = _check_content_type(raw["content_type"], LabelError)
    label = scheme.check(Label.from_dict(raw["label"]))
    digest = label_digest(raw["label"])
    expected_sha = _bytes(raw["ciphertext_sha256"], "header.ciphertext_sha256")
    _require(expected_sha == crypto.sha256(ciphertext), "ciphertext does not match its digest")

    kem_alg = SUITE_KEM[suite]
    slots_raw = raw["recipients"]
    _require(isinstance(slots_raw, list) and len(slots_raw) > 0, "header.recipients is empty")
    slots = []
    seen: set[str] = set()
    for i, entry in enumerate(slots_raw):
        slot = _object(entry, _SLOT_FIELDS, "recipients[%d]", i)
        partner, kid = slot["partner"], slot["kid"]
        _require(isinstance(partner, str), "recipients[%d]: partner is not a string", i)
        _require(partner not in seen, "recipients[%d]: duplicate", i)
        seen.add(partner)
        owner = registry.key(kid) if isinstance(kid, str) else None
        _require(
            owner is not None and owner.partner == partner,
            "recipients[%d]: %r is not a key of %r",
            i,
            kid,
            partner,
        )
        assert owner is not None
        _require(owner.record.alg == kem_alg, "recipients[%d]: %s is not a %s key", i, kid, kem_alg)
        wrapped = _bytes(slot["wrapped_key"], "recipients[%d].wrapped_key", i)
        _require(len(wrapped) == _WRAPPED_KEY_BYTES[kem_alg], "recipients[%d]: bad length", i)
        slots.append(RecipientSlot(partner, kid, wrapped))

    header = Header(
        id=raw["id"],
        originator=raw["originator"],
        created=created,
        suite=suite,
        content_type=content_type,
        label=label,
        label_digest=digest,
        ciphertext_sha256=expected_sha,
        recipients=tuple(slots),
    )
    return VerifiedEnvelope(header, header_bytes, ciphertext, tuple(kids))


# --- open -----------------------------------------------------------------------------------


def open(
    envelope: bytes | VerifiedEnvelope,
    identity: Identity,
    registry: Registry,
    scheme: Scheme,
    *,
    now: datetime,
) -> OpenedReport:
    """Verify an envelope and decrypt it with ``identity``'s private key."""
    verified = (
        envelope
        if isinstance(envelope, VerifiedEnvelope)
        else verify(envelope, registry, scheme, now=now)
    )
    header = verified.header
    try:
        slot = next((s for s in header.recipients if s.partner == identity.partner), None)
        _require(slot is not None, "%s has no recipient slot", identity.partner)
        assert slot is not None
        private = identity.kem_private_key(slot.kid)
        _require(private is not None, "identity has no private key for %s", slot.kid)
        assert private is not None
        info = wrap_info(header.id, header.originator, identity.partner, header.label_digest)
        content_key = private.unwrap(slot.wrapped_key, info)
        aad = content_aad(header.id, header.originator, header.label_digest)
        payload = crypto.aead_open(content_key, verified.ciphertext, aad)
    except _Reject as exc:
        raise EnvelopeError(str(exc)) from None
    except crypto.CryptoFailure as exc:
        raise EnvelopeError(f"CryptoFailure: {exc}") from None
    return OpenedReport(
        header.id,
        header.originator,
        header.created,
        header.label,
        header.content_type,
        payload,
        header.suite,
    )
