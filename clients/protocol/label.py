"""Security labels (§3) and the marking scheme they are checked against.

A label is parsed in two steps: :meth:`Label.from_dict` checks its shape (fields, types,
formats) and :meth:`Scheme.check` checks its meaning (known level, known caveats, the TLP rule
for groups). Both raise :class:`~clients.errors.LabelError` with a sentence naming the field.

A label is bounded (:data:`LIST_LIMITS`; every string is bounded by its pattern): a list past
its limit is refused with :class:`~clients.errors.LabelTooLargeError` (``label_too_large``)
before any of its items is looked at, so a hostile label costs the broker (which parses one at
every preview, post and delivery) no more than a legitimate one. The SDK parses with the same
code, so it refuses such a label before sealing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from tearline.clients.errors import LabelError, LabelTooLargeError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import (
    EncodingError,
    canonical_json,
    format_time,
    parse_time,
)
from tearline.clients.protocol.identity import PARTNER_ID

TLP_LEVELS: Final = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
TOPIC: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}", re.ASCII)
MARKING: Final = re.compile(r"[A-Z][A-Z0-9_-]{0,31}", re.ASCII)  # levels, caveats, policy names

_FIELDS: Final = (
    "policy",
    "classification",
    "releasable_to",
    "caveats",
    "topics",
    "tlp",
    "expires",
)
_REQUIRED: Final = ("classification", "releasable_to", "tlp")
# The most entries each list may hold. Far above any real label (a report names a few partners
# and topics) and far below the 86,000 topics a partner once sent to stall the broker.
LIST_LIMITS: Final = {"releasable_to": 64, "caveats": 32, "topics": 64}
# The largest label these limits admit is about 7 KB of JSON; this bounds a label's bytes
# wherever they arrive alone (the preview's body is bounded by the broker's max_preview_bytes).
MAX_LABEL_BYTES: Final = 16 * 1024


def _string_list(
    obj: Mapping[str, Any], name: str, pattern: re.Pattern[str], what: str
) -> tuple[str, ...]:
    value = obj.get(name, [])
    if not isinstance(value, list | tuple):
        raise LabelError(f"label.{name} must be a list of {what}")
    limit = LIST_LIMITS[name]
    if len(value) > limit:
        raise LabelTooLargeError(
            f"label.{name} has {len(value)} entries; a label holds at most {limit}: "
            "split the report, or use a group or a broader topic",
            details={"field": f"label.{name}", "count": len(value), "limit": limit},
        )
    for item in value:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise LabelError(f"label.{name} holds {item!r}, which is not a valid {what}")
    if len(set(value)) != len(value):
        raise LabelError(f"label.{name} lists the same value twice")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Label:
    """The cleartext security label every report carries, bound to its ciphertext."""

    classification: str
    releasable_to: tuple[str, ...]
    tlp: str
    caveats: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    policy: str | None = None
    expires: datetime | None = None

    def __init__(
        self,
        classification: str,
        releasable_to: Iterable[str],
        tlp: str,
        caveats: Iterable[str] = (),
        topics: Iterable[str] = (),
        policy: str | None = None,
        expires: datetime | None = None,
    ) -> None:
        # Construction from Python goes through the same checks as parsing from the wire.
        for name, value in (
            ("releasable_to", releasable_to),
            ("caveats", caveats),
            ("topics", topics),
        ):
            if isinstance(value, str | bytes):
                raise LabelError(f"label.{name} must be a list, not the string {value!r}")
        if expires is not None and (not isinstance(expires, datetime) or expires.tzinfo is None):
            raise LabelError("label.expires must be a datetime with a time zone")
        checked = Label.from_dict(
            _without_none(
                {
                    "policy": policy,
                    "classification": classification,
                    "releasable_to": list(releasable_to),
                    "caveats": list(caveats),
                    "topics": list(topics),
                    "tlp": tlp,
                    "expires": format_time(expires) if expires is not None else None,
                }
            )
        )
        for name in _FIELDS:
            object.__setattr__(self, name, getattr(checked, name))

    @classmethod
    def from_dict(cls, obj: object) -> Label:
        if not isinstance(obj, dict):
            raise LabelError("a label must be a JSON object")
        unknown = sorted(set(obj) - set(_FIELDS))
        if unknown:
            raise LabelError(f"label has unknown field(s): {', '.join(unknown)}")
        missing = [f for f in _REQUIRED if f not in obj]
        if missing:
            raise LabelError(f"label is missing required field(s): {', '.join(missing)}")
        classification = obj["classification"]
        if not isinstance(classification, str) or not MARKING.fullmatch(classification):
            raise LabelError(f"label.classification {classification!r} is not a valid level name")
        policy = obj.get("policy")
        if policy is not None and (not isinstance(policy, str) or not MARKING.fullmatch(policy)):
            raise LabelError(f"label.policy {policy!r} is not a valid scheme name")
        tlp = obj["tlp"]
        if tlp not in TLP_LEVELS:
            raise LabelError(f"label.tlp {tlp!r} is not one of {', '.join(TLP_LEVELS)}")
        releasable_to = _string_list(obj, "releasable_to", PARTNER_ID, "partner id or group")
        if not releasable_to:
            raise LabelError("label.releasable_to must name at least one partner or group")
        expires = None
        if obj.get("expires") is not None:
            try:
                expires = parse_time(obj["expires"])
            except EncodingError as exc:
                raise LabelError(f"label.expires: {exc}") from exc
        label = object.__new__(cls)
        values = {
            "policy": policy,
            "classification": classification,
            "releasable_to": releasable_to,
            "caveats": _string_list(obj, "caveats", MARKING, "caveat"),
            "topics": _string_list(obj, "topics", TOPIC, "topic"),
            "tlp": tlp,
            "expires": expires,
        }
        for name, value in values.items():
            object.__setattr__(label, name, value)
        return label

    def to_dict(self) -> dict[str, Any]:
        """The label as it goes on the wire; empty optional fields are left out."""
        out: dict[str, Any] = {}
        if self.policy is not None:
            out["policy"] = self.policy
        out["classification"] = self.classification
        out["releasable_to"] = list(self.releasable_to)
        if self.caveats:
            out["caveats"] = list(self.caveats)
        if self.topics:
            out["topics"] = list(self.topics)
        out["tlp"] = self.tlp
        if self.expires is not None:
            out["expires"] = format_time(self.expires)
        return out

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


def _without_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def label_digest(label_json: Mapping[str, Any]) -> bytes:
    """SHA-256 of the label's canonical JSON, exactly as the header carries it."""
    return crypto.sha256(canonical_json(label_json))


@dataclass(frozen=True, slots=True)
class Scheme:
    """The marking scheme (``policies/scheme.yaml``): ordered levels, caveats, named groups."""

    policy: str
    levels: tuple[str, ...]
    caveats: frozenset[str] = frozenset()
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    _rank: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.levels:
            raise LabelError("a scheme needs at least one classification level")
        if len(set(self.levels)) != len(self.levels):
            raise LabelError("scheme levels must be unique")
        object.__setattr__(self, "_rank", {lvl: i for i, lvl in enumerate(self.levels)})

    def rank(self, level: str) -> int:
        try:
            return self._rank[level]
        except KeyError:
            raise LabelError(
                f"classification {level!r} is not a level of scheme {self.policy} "
                f"({', '.join(self.levels)})"
            ) from None

    def has_level(self, level: str) -> bool:
        return level in self._rank

    def check(self, label: Label) -> Label:
        """Refuse a label that is well-formed but means nothing (or something forbidden) here."""
        if label.policy is not None and label.policy != self.policy:
            raise LabelError(
                f"label.policy {label.policy!r} is not this broker's scheme {self.policy!r}"
            )
        self.rank(label.classification)
        unknown = sorted(set(label.caveats) - self.caveats)
        if unknown:
            raise LabelError(f"label.caveats: unknown caveat(s) {', '.join(unknown)}")
        if label.tlp == "RED":
            groups = sorted(g for g in label.releasable_to if g in self.groups)
            if groups:
                raise LabelError(
                    f"label.releasable_to: TLP RED forbids groups ({', '.join(groups)}); "
                    "name each partner"
                )
        return label

    def expand(self, releasable_to: Iterable[str]) -> frozenset[str]:
        """REL TO with every group replaced by its members."""
        out: set[str] = set()
        for name in releasable_to:
            members = self.groups.get(name)
            if members is None:
                out.add(name)
            else:
                out |= members
        return frozenset(out)
