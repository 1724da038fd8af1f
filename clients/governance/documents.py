"""Signed governance documents: the root, the registry, agreements and their status. Pure.

A document is JSON ``{"signed": {...}, "signatures": [{"keyid": ..., "sig": ...}]}``. Each
signature is Ed25519 over DSSE's PAE of the canonical JSON of ``signed``, under a payload type
naming the document's type, so a signature over one type can never be replayed as another.

Parsing is strict and fails closed: an unknown field, a wrong type or a duplicate JSON key is
``bad_document``. Who must have signed what is decided in :mod:`clients.governance.trust`; here
a signature is only ever checked against keys the caller passes in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from tearline.clients.errors import IdentityError, TearlineError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import (
    EncodingError,
    b64d,
    b64e,
    canonical_json,
    dsse_pae,
    parse_time,
    strict_loads,
)
from tearline.clients.protocol.identity import Partner, Registry, check_partner_id

DocType = Literal["root", "registry", "agreement", "agreement-status"]
DOC_TYPES: Final[tuple[DocType, ...]] = ("root", "registry", "agreement", "agreement-status")
PAYLOAD_TYPES: Final[Mapping[str, bytes]] = {
    t: f"application/vnd.tearline.{t}+json;version=1".encode("ascii") for t in DOC_TYPES
}
StatusValue = Literal["suspended", "terminated"]

_MAX_INT: Final = 2**53 - 1  # what every JSON implementation reads exactly
_SIG_BYTES: Final = 64
_NAME: Final = re.compile(r"[A-Z][A-Z0-9_-]{0,31}", re.ASCII)  # level, caveat, policy name
_TOPIC: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}", re.ASCII)
_AGREEMENT_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,63}", re.ASCII)


class GovernanceError(TearlineError):
    """A governance document was refused; ``code`` says which rule (``bad_document``,
    ``root_threshold``, ``registry_rollback``, ...) and the message says, for a person, why."""

    code = "governance_error"


def _bad(message: str) -> GovernanceError:
    return GovernanceError(message, code="bad_document")


# --- keys ---------------------------------------------------------------------------------


def keyid_of(public: bytes) -> str:
    """A key's id: base64url of the first 16 bytes of SHA-256 of the raw public key. Always
    computed from the key, so a document cannot make one key pass for another."""
    return b64e(crypto.sha256(public)[:16])


def generate_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 governance key: (raw private key, raw public key)."""
    private = crypto.generate_private_key(crypto.ED25519)
    return private, crypto.public_key_of(crypto.ED25519, private)


@dataclass(frozen=True, slots=True)
class GovernanceKey:
    """A governance key of the root, held by one partner."""

    keyid: str
    public: bytes
    holder: str

    def to_dict(self) -> dict[str, Any]:
        return {"public": b64e(self.public), "holder": self.holder}


# --- field checks -------------------------------------------------------------------------


def _fields(
    obj: object, required: Iterable[str], what: str, optional: Iterable[str] = ()
) -> dict[str, Any]:
    required = tuple(required)
    if not isinstance(obj, dict):
        raise _bad(f"{what} must be an object")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise _bad(f"{what} has unknown field(s): {', '.join(unknown)}")
    missing = [f for f in required if f not in obj]
    if missing:
        raise _bad(f"{what} is missing field(s): {', '.join(missing)}")
    return obj


def _int(obj: Mapping[str, Any], name: str, what: str) -> int:
    value = obj[name]
    # type() rather than isinstance(): True is an int to Python, not a version to anyone.
    if type(value) is not int or not 1 <= value <= _MAX_INT:
        raise _bad(f"{what}.{name} must be an integer from 1 to {_MAX_INT}")
    return value


def _time(obj: Mapping[str, Any], name: str, what: str) -> datetime:
    try:
        return parse_time(obj[name])
    except EncodingError as exc:
        raise _bad(f"{what}.{name}: {exc}") from None


def _string(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _bad(f"{what} {value!r} must match {pattern.pattern}")
    return value


def _partner_id(value: object, what: str) -> str:
    try:
        return check_partner_id(value, what)
    except IdentityError as exc:
        raise _bad(exc.message) from None


def _unique_list(
    value: object, check: Callable[[Any, str], object], what: str, *, non_empty: bool = False
) -> list[Any]:
    if not isinstance(value, list) or (non_empty and not value):
        raise _bad(f"{what} must be a {'non-empty ' if non_empty else ''}list")
    for i, item in enumerate(value):
        check(item, f"{what}[{i}]")
    if len(set(value)) != len(value):
        raise _bad(f"{what} has duplicate entries")
    return value


def _name(value: object, what: str) -> str:
    return _string(value, _NAME, what)


# --- the envelope -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed document: its type, ``signed`` as parsed, its signatures, and ``message``, the
    exact bytes each signature covers. Treat ``signed`` as read-only."""

    doc_type: DocType
    signed: Mapping[str, Any]
    signatures: tuple[Signature, ...]
    message: bytes


def _message(doc_type: DocType, signed: Mapping[str, Any]) -> bytes:
    return dsse_pae(PAYLOAD_TYPES[doc_type], canonical_json(signed))


def parse_envelope(data: bytes, expected: DocType | None = None) -> Envelope:
    """Parse a document's outer layer; ``expected`` refuses a document of another type."""
    try:
        obj = strict_loads(data)
    except EncodingError as exc:
        raise _bad(f"not a governance document: {exc}") from None
    doc = _fields(obj, ("signed", "signatures"), "document")
    signed = doc["signed"]
    # Each type's parser checks every other field of ``signed``.
    if not isinstance(signed, dict) or "type" not in signed:
        raise _bad("signed must be an object with a type")
    doc_type = signed["type"]
    if doc_type not in DOC_TYPES:
        raise _bad(f"signed.type {doc_type!r} is not one of {', '.join(DOC_TYPES)}")
    if expected is not None and doc_type != expected:
        raise _bad(f"expected a {expected} document, got a {doc_type} document")
    raw_sigs = doc["signatures"]
    if not isinstance(raw_sigs, list):
        raise _bad("signatures must be a list")
    signatures = []
    for i, raw in enumerate(raw_sigs):
        entry = _fields(raw, ("keyid", "sig"), f"signatures[{i}]")
        try:
            sig = b64d(entry["sig"])
        except EncodingError:
            raise _bad(f"signatures[{i}].sig must be unpadded base64url") from None
        if not isinstance(entry["keyid"], str) or len(sig) != _SIG_BYTES:
            raise _bad(f"signatures[{i}] must hold a keyid string and a 64-byte Ed25519 sig")
        signatures.append(Signature(entry["keyid"], sig))
    try:
        message = _message(doc_type, signed)
    except TypeError:  # an integer too large for canonical JSON
        raise _bad("signed holds a value canonical JSON cannot encode") from None
    return Envelope(doc_type, signed, tuple(signatures), message)


def signers(envelope: Envelope, keys: Iterable[GovernanceKey]) -> frozenset[GovernanceKey]:
    """The keys among ``keys`` with a valid signature on the document. A set: a signature
    repeated, or listed under the same keyid twice, still names its key once."""
    by_id = {k.keyid: k for k in keys}
    valid: set[GovernanceKey] = set()
    for signature in envelope.signatures:
        key = by_id.get(signature.keyid)
        if key is None or key in valid:
            continue
        try:
            crypto.VerifyKey(crypto.ED25519, key.public).verify(signature.sig, envelope.message)
        except crypto.CryptoFailure:
            continue  # a bad signature is a missing one, as in TUF: the threshold decides
        valid.add(key)
    return frozenset(valid)


# --- writing (offline signing tools) ------------------------------------------------------


def sign(signed: Mapping[str, Any], doc_type: DocType, private_key_raw: bytes) -> dict[str, str]:
    """A signature entry ``{"keyid", "sig"}`` over ``signed`` as a ``doc_type`` document."""
    if signed.get("type") != doc_type:
        raise _bad(f"signed.type is {signed.get('type')!r}, not {doc_type!r}")
    key = crypto.SigningKey(crypto.ED25519, private_key_raw)
    public = crypto.public_key_of(crypto.ED25519, private_key_raw)
    return {"keyid": keyid_of(public), "sig": b64e(key.sign(_message(doc_type, signed)))}


def _serialise(signed: Mapping[str, Any], signatures: Iterable[Mapping[str, str]]) -> bytes:
    # Canonical, signatures sorted by keyid: the same content signed by the same keys is the
    # same bytes whatever order the signers came in (update_registry compares bytes).
    ordered = sorted(signatures, key=lambda s: s["keyid"])
    return canonical_json({"signed": signed, "signatures": ordered})


def new_document(signed: Mapping[str, Any]) -> bytes:
    """An unsigned document holding ``signed``, refused (bad_document) if it would not parse."""
    data = _serialise(signed, ())
    parse(data)
    return data


def add_signature(document_bytes: bytes, private_key_raw: bytes) -> bytes:
    """The document with one more signature; signing again with the same key replaces it."""
    envelope = parse_envelope(document_bytes)
    entry = sign(envelope.signed, envelope.doc_type, private_key_raw)
    kept = [
        {"keyid": s.keyid, "sig": b64e(s.sig)}
        for s in envelope.signatures
        if s.keyid != entry["keyid"]
    ]
    return _serialise(envelope.signed, [*kept, entry])


# --- the four documents -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Root:
    """The governance keys held by partners, and how many partners must sign root and registry
    versions."""

    version: int
    expires: datetime
    threshold: int
    keys: tuple[GovernanceKey, ...]
    envelope: Envelope

    @property
    def holders(self) -> frozenset[str]:
        return frozenset(k.holder for k in self.keys)

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


@dataclass(frozen=True, slots=True)
class RegistryVersion:
    version: int
    expires: datetime
    partners: tuple[Partner, ...]
    scheme: Mapping[str, Any]
    envelope: Envelope

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


@dataclass(frozen=True, slots=True)
class SignedAgreement:
    id: str
    parties: frozenset[str]
    agreement: Mapping[str, Any]
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class AgreementStatus:
    agreement: str
    status: StatusValue
    issued: datetime
    envelope: Envelope


def parse_root(data: bytes) -> Root:
    envelope = parse_envelope(data, "root")
    what = "root"
    signed = _fields(envelope.signed, ("type", "version", "expires", "threshold", "keys"), what)
    raw_keys = signed["keys"]
    if not isinstance(raw_keys, list) or not raw_keys:
        raise _bad("root.keys must be a non-empty list")
    keys: dict[str, GovernanceKey] = {}
    for i, raw in enumerate(raw_keys):
        entry = _fields(raw, ("public", "holder"), f"root.keys[{i}]")
        try:
            public = b64d(entry["public"])
            crypto.VerifyKey(crypto.ED25519, public)
        except (EncodingError, crypto.CryptoFailure):
            raise _bad(f"root.keys[{i}].public must be a base64url Ed25519 key") from None
        key = GovernanceKey(keyid_of(public), public, _partner_id(entry["holder"], "holder"))
        if key.keyid in keys:
            # Listed twice (perhaps under two holders): ambiguous, so refused rather than
            # guessed at; counting it twice would let one signature count double.
            raise _bad(f"root.keys[{i}] lists key {key.keyid} a second time")
        keys[key.keyid] = key
    root = Root(
        _int(signed, "version", what),
        _time(signed, "expires", what),
        _int(signed, "threshold", what),
        tuple(keys.values()),
        envelope,
    )
    if root.threshold > len(root.holders):
        # A threshold is counted in partners; one nobody can reach would freeze governance.
        raise _bad(
            f"root.threshold {root.threshold} is more than the {len(root.holders)} partner(s) "
            "holding keys"
        )
    return root


def parse_registry(data: bytes) -> RegistryVersion:
    envelope = parse_envelope(data, "registry")
    what = "registry"
    signed = _fields(envelope.signed, ("type", "version", "expires", "partners", "scheme"), what)
    entries = signed["partners"]
    if not isinstance(entries, list):
        raise _bad("registry.partners must be a list")
    try:
        partners = tuple(Partner.from_dict(e, f"partners[{i}]") for i, e in enumerate(entries))
        Registry(partners)  # duplicate partner and key ids
    except IdentityError as exc:
        raise _bad(f"registry: {exc.message}") from None
    return RegistryVersion(
        _int(signed, "version", what),
        _time(signed, "expires", what),
        partners,
        _scheme(signed["scheme"]),
        envelope,
    )


def _scheme(obj: object) -> dict[str, Any]:
    """The marking scheme, checked as policies/scheme.yaml's schema checks it."""
    what = "registry.scheme"
    scheme = _fields(obj, ("policy", "levels"), what, optional=("caveats", "groups"))
    _name(scheme["policy"], f"{what}.policy")
    _unique_list(scheme["levels"], _name, f"{what}.levels", non_empty=True)
    _unique_list(scheme.get("caveats", []), _name, f"{what}.caveats")
    groups = scheme.get("groups", {})
    if not isinstance(groups, dict):
        raise _bad(f"{what}.groups must be an object")
    for group, members in groups.items():
        _partner_id(group, f"{what}.groups name")
        _unique_list(members, _partner_id, f"{what}.groups.{group}", non_empty=True)
    return scheme


_AGREEMENT_REQUIRED: Final = (
    "id",
    "title",
    "valid_from",
    "valid_until",
    "ceiling",
    "topics",
    "parties",
)


def parse_agreement(data: bytes) -> SignedAgreement:
    envelope = parse_envelope(data, "agreement")
    _fields(envelope.signed, ("type", "agreement"), "signed")
    what = "agreement"
    agreement = _fields(
        envelope.signed["agreement"],
        _AGREEMENT_REQUIRED,
        what,
        optional=("suspended", "require_pq_from"),
    )
    # The shape policies/agreements/*.yaml's schema requires; whether levels and parties exist
    # is checked where the scheme and registry are known (the broker's policy loader).
    aid = _string(agreement["id"], _AGREEMENT_ID, "agreement.id")
    if not isinstance(agreement["title"], str) or not agreement["title"]:
        raise _bad("agreement.title must be a non-empty string")
    if not _time(agreement, "valid_from", what) < _time(agreement, "valid_until", what):
        raise _bad("agreement.valid_from must be earlier than valid_until")
    _name(agreement["ceiling"], "agreement.ceiling")
    if "require_pq_from" in agreement:
        _name(agreement["require_pq_from"], "agreement.require_pq_from")
    if not isinstance(agreement.get("suspended", False), bool):
        raise _bad("agreement.suspended must be true or false")
    if agreement["topics"] != ["*"]:
        _unique_list(
            agreement["topics"],
            lambda v, w: _string(v, _TOPIC, w),
            "agreement.topics",
            non_empty=True,
        )
    parties = agreement["parties"]
    if not isinstance(parties, dict) or len(parties) < 2:
        raise _bad("agreement.parties must be an object naming at least two parties")
    for party, terms in parties.items():
        _partner_id(party, "agreement party")
        if terms is not None:
            at = f"agreement.parties.{party}"
            _fields(terms, (), at, optional=("clearance", "caveats"))
            if "clearance" in terms:
                _name(terms["clearance"], f"{at}.clearance")
            _unique_list(terms.get("caveats", []), _name, f"{at}.caveats")
    return SignedAgreement(aid, frozenset(parties), agreement, envelope)


def parse_status(data: bytes) -> AgreementStatus:
    envelope = parse_envelope(data, "agreement-status")
    what = "agreement-status"
    signed = _fields(envelope.signed, ("type", "agreement", "status", "issued"), what)
    status = signed["status"]
    if status not in ("suspended", "terminated"):
        raise _bad(f"{what}.status must be 'suspended' or 'terminated'")
    return AgreementStatus(
        _string(signed["agreement"], _AGREEMENT_ID, f"{what}.agreement"),
        "suspended" if status == "suspended" else "terminated",
        _time(signed, "issued", what),
        envelope,
    )


Document = Root | RegistryVersion | SignedAgreement | AgreementStatus


def parse(data: bytes) -> Document:
    """Any governance document, by its type."""
    doc_type = parse_envelope(data).doc_type
    if doc_type == "root":
        return parse_root(data)
    if doc_type == "registry":
        return parse_registry(data)
    if doc_type == "agreement":
        return parse_agreement(data)
    return parse_status(data)
