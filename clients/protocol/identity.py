"""Partners, their public keys, the registry of them, and a partner's own private identity (§2).

Pure: dictionaries and bytes in, models out. Reading and writing identity files is in
``clients.keyfile``; the broker builds a :class:`Registry` from ``policies/partners.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from tearline.clients.errors import IdentityError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import EncodingError, b64d, b64e, format_time, parse_time

PARTNER_ID: Final = re.compile(r"[A-Z][A-Z0-9-]{1,31}", re.ASCII)
KEY_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)

Suite = Literal["classic", "pq-hybrid"]
SUITES: Final[tuple[Suite, ...]] = ("classic", "pq-hybrid")
#: The signatures a suite requires (all must verify) and the KEM its recipients' keys use.
SUITE_SIGNATURES: Final[Mapping[str, frozenset[str]]] = {
    "classic": frozenset({crypto.ED25519}),
    "pq-hybrid": frozenset({crypto.ED25519, crypto.ML_DSA_65}),
}
SUITE_KEM: Final[Mapping[str, str]] = {
    "classic": crypto.X25519,
    "pq-hybrid": crypto.ML_KEM_768_X25519,
}
_USE_OF_ALG: Final = {
    crypto.ED25519: "sig",
    crypto.ML_DSA_65: "sig",
    crypto.X25519: "enc",
    crypto.ML_KEM_768_X25519: "enc",
}
# Key ids that `keygen` gives each algorithm, after the partner id.
_KID_SUFFIX: Final = {
    crypto.ED25519: "sig-1",
    crypto.ML_DSA_65: "sig-pq-1",
    crypto.X25519: "enc-1",
    crypto.ML_KEM_768_X25519: "enc-pq-1",
}
_KEY_FIELDS: Final = ("kid", "use", "alg", "public", "not_before", "not_after", "revoked")
_PARTNER_FIELDS: Final = ("id", "name", "status", "keys")


def check_partner_id(value: object, what: str = "partner id") -> str:
    if not isinstance(value, str) or not PARTNER_ID.fullmatch(value):
        raise IdentityError(f"{what} {value!r} must match [A-Z][A-Z0-9-]{{1,31}}")
    return value


def check_suite(value: object) -> Suite:
    if value == "classic":
        return "classic"
    if value == "pq-hybrid":
        return "pq-hybrid"
    raise IdentityError(f"unknown suite {value!r}; expected 'classic' or 'pq-hybrid'")


def _only_fields(
    obj: object, allowed: Iterable[str], required: Iterable[str], what: str
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise IdentityError(f"{what} must be an object")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise IdentityError(f"{what} has unknown field(s): {', '.join(unknown)}")
    missing = [f for f in required if f not in obj]
    if missing:
        raise IdentityError(f"{what} is missing field(s): {', '.join(missing)}")
    return obj


def _time_field(obj: Mapping[str, Any], name: str, what: str) -> datetime:
    value = obj[name]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise IdentityError(f"{what}.{name} must carry a time zone", details={"field": name})
        return value
    try:
        return parse_time(value)
    except EncodingError as exc:
        raise IdentityError(f"{what}.{name}: {exc}", details={"field": name}) from exc


def _bytes_field(obj: Mapping[str, Any], name: str, what: str) -> bytes:
    try:
        return b64d(obj[name])
    except EncodingError as exc:
        raise IdentityError(
            f"{what}.{name} must be unpadded base64url", details={"field": name}
        ) from exc


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One public key of a partner, as the registry holds it."""

    kid: str
    use: Literal["sig", "enc"]
    alg: str
    public: bytes
    not_before: datetime
    not_after: datetime
    revoked: bool = False

    def valid_at(self, now: datetime) -> bool:
        return not self.revoked and self.not_before <= now < self.not_after

    @classmethod
    def from_dict(cls, obj: object, what: str = "key") -> KeyRecord:
        entry = _only_fields(obj, _KEY_FIELDS, _KEY_FIELDS[:-1], what)
        kid = entry["kid"]
        if not isinstance(kid, str) or not KEY_ID.fullmatch(kid):
            raise IdentityError(
                f"{what}.kid {kid!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,63}}",
                details={"field": "kid"},
            )
        alg = entry["alg"]
        if alg not in _USE_OF_ALG:
            raise IdentityError(
                f"{what}.alg {alg!r} is not one of {', '.join(sorted(_USE_OF_ALG))}",
                details={"field": "alg"},
            )
        use = entry["use"]
        if use != _USE_OF_ALG[alg]:
            raise IdentityError(
                f"{what}.use must be {_USE_OF_ALG[alg]!r} for {alg}", details={"field": "use"}
            )
        public = _bytes_field(entry, "public", what)
        if len(public) != crypto.PUBLIC_KEY_BYTES[alg]:
            raise IdentityError(
                f"{what}.public must be {crypto.PUBLIC_KEY_BYTES[alg]} bytes for {alg}",
                details={"field": "public"},
            )
        not_before = _time_field(entry, "not_before", what)
        not_after = _time_field(entry, "not_after", what)
        if not not_before < not_after:
            raise IdentityError(
                f"{what}: not_before must be earlier than not_after",
                details={"field": "not_after"},
            )
        revoked = entry.get("revoked", False)
        if not isinstance(revoked, bool):
            raise IdentityError(
                f"{what}.revoked must be true or false", details={"field": "revoked"}
            )
        return cls(kid, use, alg, public, not_before, not_after, revoked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "use": self.use,
            "alg": self.alg,
            "public": b64e(self.public),
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "revoked": self.revoked,
        }


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    name: str
    status: Literal["active", "suspended"]
    keys: tuple[KeyRecord, ...]

    @property
    def active(self) -> bool:
        return self.status == "active"

    def enc_key(self, suite: str, now: datetime) -> KeyRecord | None:
        """The key a sender should wrap to for ``suite`` at ``now``: the newest valid one."""
        alg = SUITE_KEM[suite]
        valid = [k for k in self.keys if k.alg == alg and k.valid_at(now)]
        return max(valid, key=lambda k: (k.not_before, k.kid), default=None)

    @classmethod
    def from_dict(cls, obj: object, what: str = "partner") -> Partner:
        entry = _only_fields(obj, _PARTNER_FIELDS, ("id", "name", "keys"), what)
        pid = check_partner_id(entry["id"], f"{what}.id")
        name = entry["name"]
        if not isinstance(name, str) or not name.strip():
            raise IdentityError(f"{what}.name must be a non-empty string")
        status = entry.get("status", "active")
        if status not in ("active", "suspended"):
            raise IdentityError(f"{what}.status must be 'active' or 'suspended'")
        raw_keys = entry["keys"]
        if not isinstance(raw_keys, list):
            raise IdentityError(f"{what}.keys must be a list")
        keys = tuple(KeyRecord.from_dict(k, f"{what}.keys[{i}]") for i, k in enumerate(raw_keys))
        return cls(pid, name, status, keys)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "keys": [k.to_dict() for k in self.keys],
        }


@dataclass(frozen=True, slots=True)
class KeyOwner:
    partner: str
    record: KeyRecord


class Registry:
    """Every partner and public key the broker knows; maps ``kid`` to key, algorithm and owner.

    Parsed key objects are cached, so a verification never re-parses a public key.
    """

    def __init__(self, partners: Iterable[Partner]) -> None:
        self._partners: dict[str, Partner] = {}
        self._keys: dict[str, KeyOwner] = {}
        self._verify_keys: dict[str, crypto.VerifyKey] = {}
        self._kem_keys: dict[str, crypto.KemPublicKey] = {}
        for partner in partners:
            if partner.id in self._partners:
                raise IdentityError(f"duplicate partner id {partner.id!r}")
            self._partners[partner.id] = partner
            for key in partner.keys:
                if key.kid in self._keys:
                    raise IdentityError(f"duplicate key id {key.kid!r}")
                self._keys[key.kid] = KeyOwner(partner.id, key)

    @classmethod
    def from_dicts(cls, entries: Iterable[object]) -> Registry:
        return cls(Partner.from_dict(e, f"partners[{i}]") for i, e in enumerate(entries))

    def __contains__(self, partner_id: object) -> bool:
        return partner_id in self._partners

    def __iter__(self) -> Iterator[Partner]:
        return iter(self._partners.values())

    def __len__(self) -> int:
        return len(self._partners)

    @property
    def ids(self) -> list[str]:
        return sorted(self._partners)

    def get(self, partner_id: str) -> Partner | None:
        return self._partners.get(partner_id)

    def key(self, kid: str) -> KeyOwner | None:
        return self._keys.get(kid)

    def verify_key(self, kid: str) -> crypto.VerifyKey:
        handle = self._verify_keys.get(kid)
        if handle is None:
            owner = self._keys[kid]
            handle = crypto.VerifyKey(owner.record.alg, owner.record.public)
            self._verify_keys[kid] = handle
        return handle

    def kem_key(self, kid: str) -> crypto.KemPublicKey:
        handle = self._kem_keys.get(kid)
        if handle is None:
            owner = self._keys[kid]
            handle = crypto.KemPublicKey(owner.record.alg, owner.record.public)
            self._kem_keys[kid] = handle
        return handle


@dataclass(frozen=True, slots=True)
class PrivateKey:
    record: KeyRecord
    private: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """A partner's own keys, private halves included. Lives only on that partner's node."""

    partner: str
    keys: tuple[PrivateKey, ...]

    @classmethod
    def generate(
        cls, partner: str, suite: Suite, now: datetime, valid_for: timedelta = timedelta(days=730)
    ) -> Identity:
        """Fresh keys for ``suite``. A pq-hybrid node also gets the classic keys, so it can still
        receive and send classic reports."""
        check_partner_id(partner)
        check_suite(suite)
        algs = [crypto.ED25519, crypto.X25519]
        if suite == "pq-hybrid":
            algs += [crypto.ML_DSA_65, crypto.ML_KEM_768_X25519]
        keys = []
        for alg in algs:
            private = crypto.generate_private_key(alg)
            record = KeyRecord(
                kid=f"{partner}-{_KID_SUFFIX[alg]}",
                use="sig" if _USE_OF_ALG[alg] == "sig" else "enc",
                alg=alg,
                public=crypto.public_key_of(alg, private),
                not_before=now,
                not_after=now + valid_for,
            )
            keys.append(PrivateKey(record, private))
        return cls(partner, tuple(keys))

    def public_entry(self, name: str | None = None, status: str = "active") -> dict[str, Any]:
        """The registry entry for this identity: what goes into ``policies/partners.yaml``."""
        return Partner(
            self.partner,
            name or self.partner,
            "active" if status == "active" else "suspended",
            tuple(k.record for k in self.keys),
        ).to_dict()

    def signing_keys(self, suite: str, now: datetime) -> list[tuple[str, crypto.SigningKey]]:
        """One valid signing key per algorithm the suite requires, as (kid, key)."""
        chosen: list[tuple[str, crypto.SigningKey]] = []
        for alg in sorted(SUITE_SIGNATURES[suite]):
            valid = [k for k in self.keys if k.record.alg == alg and k.record.valid_at(now)]
            if not valid:
                raise IdentityError(
                    f"identity {self.partner} has no valid {alg} signing key for suite {suite}"
                )
            best = max(valid, key=lambda k: (k.record.not_before, k.record.kid))
            chosen.append((best.record.kid, crypto.SigningKey(alg, best.private)))
        return chosen

    def kem_private_key(self, kid: str) -> crypto.KemPrivateKey | None:
        for key in self.keys:
            if key.record.kid == kid and key.record.use == "enc":
                return crypto.KemPrivateKey(key.record.alg, key.private)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner": self.partner,
            "keys": [{**k.record.to_dict(), "private": b64e(k.private)} for k in self.keys],
        }

    @classmethod
    def from_dict(cls, obj: object) -> Identity:
        entry = _only_fields(obj, ("partner", "keys"), ("partner", "keys"), "identity")
        partner = check_partner_id(entry["partner"])
        if not isinstance(entry["keys"], list) or not entry["keys"]:
            raise IdentityError("identity.keys must be a non-empty list")
        keys = []
        for i, raw in enumerate(entry["keys"]):
            what = f"identity.keys[{i}]"
            if not isinstance(raw, dict) or "private" not in raw:
                raise IdentityError(f"{what} must be an object with a private key")
            public_part = {k: v for k, v in raw.items() if k != "private"}
            record = KeyRecord.from_dict(public_part, what)
            private = _bytes_field(raw, "private", what)
            try:
                derived = crypto.public_key_of(record.alg, private)
            except crypto.CryptoFailure as exc:
                raise IdentityError(f"{what}.private: {exc}") from exc
            if derived != record.public:
                raise IdentityError(f"{what}: private key does not match its public key")
            keys.append(PrivateKey(record, private))
        return cls(partner, tuple(keys))
