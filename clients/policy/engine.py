"""The releasability engine (§4): label × originator × suite × policy × now → who may receive.

Pure: no I/O and no clock; ``now`` is passed in. Deny by default: a partner is granted only when
every rule holds, and every denial carries the first failing check as a stable reason code.
The broker extends :class:`Policy` with what only it holds (its operators, its governed
folder: ``broker.policy.engine``); a partner node builds one from the governance documents it
verified (:func:`clients.governance.policy.node_policy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tearline.clients.errors import InputError
from tearline.clients.policy.agreement import Agreement
from tearline.clients.protocol.identity import Registry
from tearline.clients.protocol.label import Label, Scheme


class Reason(StrEnum):
    """Why a partner is denied, in the order the checks run (§4)."""

    ORIGINATOR = "ORIGINATOR"
    EXPIRED = "EXPIRED"
    RECALLED = "RECALLED"
    PARTNER_SUSPENDED = "PARTNER_SUSPENDED"
    NO_ENCRYPTION_KEY = "NO_ENCRYPTION_KEY"
    NOT_RELEASABLE_TO = "NOT_RELEASABLE_TO"
    NO_AGREEMENT = "NO_AGREEMENT"
    AGREEMENT_NOT_IN_FORCE = "AGREEMENT_NOT_IN_FORCE"
    CLASSIFICATION_ABOVE_CEILING = "CLASSIFICATION_ABOVE_CEILING"
    CLASSIFICATION_ABOVE_CLEARANCE = "CLASSIFICATION_ABOVE_CLEARANCE"
    TOPIC_OUT_OF_SCOPE = "TOPIC_OUT_OF_SCOPE"
    CAVEAT_NOT_ACCREDITED = "CAVEAT_NOT_ACCREDITED"
    SUITE_TOO_WEAK = "SUITE_TOO_WEAK"


# Rule 4's checks per agreement, in order; a grant got past all of them.
_AGREEMENT_CHECKS = (
    Reason.AGREEMENT_NOT_IN_FORCE,
    Reason.CLASSIFICATION_ABOVE_CEILING,
    Reason.CLASSIFICATION_ABOVE_CLEARANCE,
    Reason.TOPIC_OUT_OF_SCOPE,
    Reason.CAVEAT_NOT_ACCREDITED,
    Reason.SUITE_TOO_WEAK,
)
_GRANTED = len(_AGREEMENT_CHECKS)


@dataclass(frozen=True, slots=True)
class Decision:
    partner: str
    agreement: str | None = None  # the granting agreement
    reason: Reason | None = None  # the denial

    @property
    def granted(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, str]:
        if self.reason is None:
            assert self.agreement is not None
            return {"decision": "grant", "agreement": self.agreement}
        return {"decision": "deny", "reason": self.reason.value}


@dataclass(frozen=True, slots=True)
class _Terms:
    """One agreement compiled for one recipient party: ranks instead of level names."""

    id: str
    agreement: Agreement
    ceiling: int
    clearance: int
    caveats: frozenset[str]
    topics: frozenset[str] | None
    pq_from: int | None


@dataclass(frozen=True, slots=True)
class _Request:
    label: Label
    originator: str
    suite: str
    now: datetime
    recalled: bool
    rank: int
    releasable_to: frozenset[str]
    topics: frozenset[str]
    caveats: frozenset[str]


class Policy:
    """A loaded policy set (scheme, registry, agreements) with an index for fast decisions.

    Agreements are indexed by (originator, recipient), built lazily per originator, so one
    decision looks only at the agreements the two partners share, however many exist.
    """

    def __init__(
        self,
        scheme: Scheme,
        registry: Registry,
        agreements: Iterable[Agreement],
    ):
        self.scheme = scheme
        self.registry = registry
        self.agreements: Mapping[str, Agreement] = {
            a.id: a for a in sorted(agreements, key=lambda a: a.id)
        }
        self._by_party: dict[str, list[Agreement]] = {}
        for agreement in self.agreements.values():  # sorted by id, so each list is too
            for party in agreement.parties:
                self._by_party.setdefault(party, []).append(agreement)
        self._pairs: dict[str, dict[str, tuple[_Terms, ...]]] = {}

    def agreements_of(self, partner: str) -> list[Agreement]:
        return list(self._by_party.get(partner, ()))

    def _shared(self, originator: str) -> dict[str, tuple[_Terms, ...]]:
        pairs = self._pairs.get(originator)
        if pairs is None:
            building: dict[str, list[_Terms]] = {}
            rank = self.scheme.rank
            for a in self._by_party.get(originator, ()):
                ceiling = rank(a.ceiling)
                pq_from = rank(a.require_pq_from) if a.require_pq_from else None
                for pid, party in a.parties.items():
                    if pid == originator:
                        continue
                    clearance = rank(party.clearance) if party.clearance else ceiling
                    building.setdefault(pid, []).append(
                        _Terms(a.id, a, ceiling, clearance, party.caveats, a.topics, pq_from)
                    )
            pairs = {pid: tuple(terms) for pid, terms in building.items()}
            self._pairs[originator] = pairs
        return pairs

    def _request(
        self, label: Label, originator: str, suite: str, now: datetime, recalled: bool
    ) -> _Request:
        self.scheme.check(label)
        if suite not in ("classic", "pq-hybrid"):
            raise InputError(f"unknown suite {suite!r}", code="invalid_suite")
        return _Request(
            label=label,
            originator=originator,
            suite=suite,
            now=now,
            recalled=recalled,
            rank=self.scheme.rank(label.classification),
            releasable_to=self.scheme.expand(label.releasable_to),
            topics=frozenset(label.topics),
            caveats=frozenset(label.caveats),
        )

    def decide(
        self,
        label: Label,
        originator: str,
        suite: str,
        now: datetime,
        *,
        recalled: bool = False,
        partners: Iterable[str] | None = None,
    ) -> dict[str, Decision]:
        """A decision for every partner in the registry (or only ``partners``), keyed by id."""
        req = self._request(label, originator, suite, now, recalled)
        shared = self._shared(originator)
        ids = self.registry.ids if partners is None else partners
        return {pid: self._decide(req, pid, shared.get(pid, ())) for pid in ids}

    def deciding_agreement(
        self, label: Label, originator: str, suite: str, now: datetime, partner: str
    ) -> Agreement | None:
        """The agreement ``decide`` turned on for ``partner``: the granting one, or for a denial
        by rule 4 the one that got furthest (ties: the smallest id), whose terms say what to
        change; None when no agreement was looked at. Every agreement it names has the
        originator as a party, so telling the originator its terms discloses nothing (§4)."""
        req = self._request(label, originator, suite, now, recalled=False)
        terms = self._shared(originator).get(partner, ())
        decision = self._decide(req, partner, terms)
        if decision.granted:
            return self.agreements[decision.agreement] if decision.agreement else None
        if decision.reason not in _AGREEMENT_CHECKS:
            return None
        furthest, chosen = -1, None
        for t in terms:  # sorted by agreement id, as in _decide
            reached = _reach(req, t)
            if reached > furthest:
                furthest, chosen = reached, t.agreement
        return chosen

    def _decide(self, req: _Request, pid: str, terms: tuple[_Terms, ...]) -> Decision:
        if pid == req.originator:
            return Decision(pid, reason=Reason.ORIGINATOR)
        if req.label.expired(req.now):
            return Decision(pid, reason=Reason.EXPIRED)
        if req.recalled:
            return Decision(pid, reason=Reason.RECALLED)
        partner = self.registry.get(pid)
        if partner is None:
            raise InputError(f"{pid!r} is not a registered partner", code="unknown_partner")
        if not partner.active:
            return Decision(pid, reason=Reason.PARTNER_SUSPENDED)
        if partner.enc_key(req.suite, req.now) is None:
            return Decision(pid, reason=Reason.NO_ENCRYPTION_KEY)
        if pid not in req.releasable_to:
            return Decision(pid, reason=Reason.NOT_RELEASABLE_TO)
        if not terms:
            return Decision(pid, reason=Reason.NO_AGREEMENT)
        furthest = -1
        for t in terms:  # sorted by agreement id: the first grant and the first furthest win
            reached = _reach(req, t)
            if reached == _GRANTED:
                return Decision(pid, agreement=t.id)
            if reached > furthest:
                furthest = reached
        return Decision(pid, reason=_AGREEMENT_CHECKS[furthest])

    def explain(self, decisions: Mapping[str, Decision]) -> dict[str, dict[str, str]]:
        return {pid: decisions[pid].to_dict() for pid in sorted(decisions)}


def _reach(req: _Request, t: _Terms) -> int:
    """How many of rule 4's checks ``t`` passes before the first that fails."""
    if not t.agreement.in_force(req.now):
        return 0
    if req.rank > t.ceiling:
        return 1
    if req.rank > t.clearance:
        return 2
    if t.topics is not None and not req.topics <= t.topics:
        return 3
    if not req.caveats <= t.caveats:
        return 4
    if t.pq_from is not None and req.rank >= t.pq_from and req.suite != "pq-hybrid":
        return 5
    return _GRANTED
