"""Each decision of the engine in words: the agreement it turned on and the term that failed.

Pure: the policy, the label and the decision in, one sentence out. ``tearline policy explain``
prints it beside each partner, for the person who has to change the label or the agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tearline.broker.policy.engine import Policy
from tearline.clients.policy.agreement import Agreement
from tearline.clients.policy.engine import Decision, Reason
from tearline.clients.protocol.encoding import format_time
from tearline.clients.protocol.label import Label


@dataclass(frozen=True, slots=True)
class Explained:
    partner: str
    decision: Decision
    agreement: str | None  # granting, or the one that got furthest for a rule-4 denial
    term: str  # what failed, in words; for a grant, the terms it was granted under


def explain_all(
    policy: Policy,
    label: Label,
    originator: str,
    suite: str,
    now: datetime,
    decisions: dict[str, Decision],
) -> list[Explained]:
    """One line per decision, sorted by partner id."""
    out = []
    for pid in sorted(decisions):
        decision = decisions[pid]
        agreement = policy.deciding_agreement(label, originator, suite, now, pid)
        out.append(
            Explained(
                pid,
                decision,
                agreement.id if agreement else None,
                _term(policy, label, originator, suite, now, decision, agreement),
            )
        )
    return out


def _term(
    policy: Policy,
    label: Label,
    originator: str,
    suite: str,
    now: datetime,
    decision: Decision,
    agreement: Agreement | None,
) -> str:
    pid, level = decision.partner, label.classification
    if decision.granted:
        assert agreement is not None
        return f"{pid} cleared up to {_clearance(agreement, pid)} under it"
    reason = decision.reason
    if reason is Reason.ORIGINATOR:
        return f"{originator} sends it"
    if reason is Reason.EXPIRED:
        return f"the label expired at {format_time(label.expires)}" if label.expires else ""
    if reason is Reason.RECALLED:
        return "recalled"
    if reason is Reason.PARTNER_SUSPENDED:
        return f"{pid} is suspended in partners.yaml"
    if reason is Reason.NO_ENCRYPTION_KEY:
        return f"{pid} has no {suite} encryption key valid at {format_time(now)}"
    if reason is Reason.NOT_RELEASABLE_TO:
        return f"not in REL TO {', '.join(label.releasable_to)}"
    if reason is Reason.NO_AGREEMENT or agreement is None:
        return f"no agreement has both {originator} and {pid} as parties" + _unsigned(
            policy, originator, pid
        )
    trusted_until = policy.governance.expires if policy.governance else None
    return _agreement_term(reason, agreement, label, pid, level, suite, now, trusted_until)


def _unsigned(policy: Policy, originator: str, pid: str) -> str:
    """In a governed folder, the agreements between the two that are there but not in force
    because a party has not signed them (docs/protocol.md §11): an operator looking for why
    should not have to guess."""
    governance = policy.governance
    if governance is None:
        return ""
    notes = []
    for aid, (parties, why) in sorted(governance.unsigned.items()):
        if {originator, pid} <= parties:
            notes.append(f"; {aid} is not in force, counted as absent: {why}")
    return "".join(notes)


def _agreement_term(
    reason: Reason | None,
    agreement: Agreement,
    label: Label,
    pid: str,
    level: str,
    suite: str,
    now: datetime,
    trusted_until: datetime | None,
) -> str:
    if reason is Reason.AGREEMENT_NOT_IN_FORCE:
        if agreement.suspended:
            return "the agreement is suspended"
        if agreement.valid_until == trusted_until and (
            now >= trusted_until or agreement.valid_from >= trusted_until
        ):  # cut short by the governed documents' expiry (broker.policy.governed)
            ended = "expired" if now >= trusted_until else "expires"
            return (
                f"the signed registry it rests on {ended} at {format_time(trusted_until)}: "
                "its holders must sign a new version"
            )
        if now < agreement.valid_from:
            return f"in force from {format_time(agreement.valid_from)}"
        return f"ended {format_time(agreement.valid_until)}"
    if reason is Reason.CLASSIFICATION_ABOVE_CEILING:
        return f"{level} is above the ceiling {agreement.ceiling}"
    if reason is Reason.CLASSIFICATION_ABOVE_CLEARANCE:
        return f"{level} is above {pid}'s clearance {_clearance(agreement, pid)}"
    if reason is Reason.TOPIC_OUT_OF_SCOPE:
        scope = sorted(agreement.topics or ())
        outside = sorted(set(label.topics) - set(scope))
        return f"topic {', '.join(outside)} is outside its topics ({', '.join(scope)})"
    if reason is Reason.CAVEAT_NOT_ACCREDITED:
        accredited = agreement.parties[pid].caveats
        missing = sorted(set(label.caveats) - accredited)
        return f"{pid} is not accredited for caveat {', '.join(missing)}"
    if reason is Reason.SUITE_TOO_WEAK:
        return (
            f"{level} needs --suite pq-hybrid (from {agreement.require_pq_from}); this is {suite}"
        )
    return ""


def _clearance(agreement: Agreement, pid: str) -> str:
    party = agreement.parties.get(pid)
    return (party.clearance if party else None) or agreement.ceiling
