"""Dead letters, for operators (DESIGN §7): list, inspect and replay a partner's set-aside entries.

An inbox entry goes to the partner's dead-letter stream when it was delivered more than
``max_deliveries`` times without an ack, or when it cannot be delivered for a reason of its own
(a *poison* entry: its label no longer parses under today's scheme, say). The operator looks at
why, fixes the cause, and replays it: it goes back into the inbox as a new entry, and delivery
re-checks the policy as for any entry. Every replay is audited with the operator who signed it.

Signed with an operator key from ``policies/operators.yaml``; a partner key is refused (401).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, BaseModel, Field

from tearline.broker.api.deps import Operator, State
from tearline.broker.api.inbox import ENTRY_ID, GapInfo, check_after_id, check_stream_id
from tearline.broker.api.reports import errors
from tearline.broker.state import BrokerState
from tearline.broker.store import ReportFacts
from tearline.clients.errors import NotFoundError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import b64e, format_time
from tearline.clients.protocol.identity import PARTNER_ID

router = APIRouter(prefix="/v1/dead-letters", tags=["operators"])

PARTNER_PATTERN = f"^{PARTNER_ID.pattern}$"


def _optional_after_id(value: str | None) -> str | None:
    return None if value is None else check_after_id(value)


_DEAD_ID_DOC = "a dead letter's id, as listed"
PartnerPath = Annotated[str, Path(pattern=PARTNER_PATTERN, description="a partner id")]
DeadIdPath = Annotated[
    str, Path(pattern=ENTRY_ID, description=_DEAD_ID_DOC), AfterValidator(check_stream_id)
]


class DeadLetter(BaseModel):
    id: str = Field(description="the dead letter's id in the partner's dead-letter stream")
    entry_id: str = Field(description="the inbox entry it was set aside from")
    kind: Literal["report", "recall", "gap"] = Field(description="what that entry was")
    report_id: str = Field(description="the report (empty for a gap notice)")
    originator: str
    reason: str = Field(description="why it was set aside")
    dead_at: str = Field(json_schema_extra={"format": "date-time"})
    gap: GapInfo | None = Field(default=None, description="for a gap notice: what it reported")


class DeadLetterPage(BaseModel):
    partner: str
    dead_letters: list[DeadLetter] = Field(description="oldest first")
    next: str | None = Field(description="pass as `after` for the next page; null at the end")


class ReportKnown(BaseModel):
    """What the broker holds of a report: its routing facts, never its content."""

    exists: bool = Field(description="false once the report outlived retention")
    originator: str | None = None
    label: dict[str, Any] | None = Field(
        default=None, description="the label as accepted (it may not parse under today's scheme)"
    )
    suite: str | None = None
    recalled: bool | None = None
    envelope_bytes: int | None = None
    envelope_sha256: str | None = Field(default=None, description="base64url, as in the receipt")


class DeadLetterDetail(BaseModel):
    partner: str
    dead_letter: DeadLetter
    report: ReportKnown | None = Field(description="null for a gap notice: it has no report")


class Replayed(BaseModel):
    partner: str
    dead_letter: str = Field(description="the dead letter replayed; it is gone from the list")
    entry_id: str = Field(description="the new inbox entry (delivery re-checks the policy)")


def _dead_letter(dead_id: str, fields: dict[str, str]) -> DeadLetter:
    kind = fields.get("kind", "report")
    gap = None
    if kind == "gap":
        gap = GapInfo(lost=int(fields.get("lost") or 0), before=fields.get("before", ""))
    ms = int(dead_id.partition("-")[0])
    return DeadLetter(
        id=dead_id,
        entry_id=fields.get("entry", ""),
        kind=kind,  # type: ignore[arg-type]  # only the store writes it, from an inbox entry
        report_id=fields.get("report", ""),
        originator=fields.get("originator", ""),
        reason=fields.get("reason", ""),
        dead_at=format_time(datetime.fromtimestamp(ms / 1000, UTC)),
        gap=gap,
    )


def _label(raw: bytes) -> dict[str, Any] | None:
    # A poison entry may be one whose stored label is unreadable: show the rest regardless.
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _report_known(facts: ReportFacts | None) -> ReportKnown:
    if facts is None:
        return ReportKnown(exists=False)
    return ReportKnown(
        exists=True,
        originator=facts.originator,
        label=_label(facts.label),
        suite=facts.suite,
        recalled=facts.recalled,
        envelope_bytes=len(facts.envelope),
        envelope_sha256=b64e(crypto.sha256(facts.envelope)),
    )


def _no_such_partner(partner: str) -> NotFoundError:
    return NotFoundError(
        f"{partner} is not a partner of this broker and has no dead letters",
        code="no_such_partner",
    )


async def _known(state: BrokerState, partner: str) -> bool:
    """In the registry, or removed from it with dead letters left: those stay readable."""
    if state.policy.registry.get(partner) is not None:
        return True
    return bool(await state.store.dead_letters(partner, after=None, count=1))


@router.get(
    "",
    summary="List a partner's dead letters (operators only)",
    responses=errors(400, 401, 404, 422, 503),
)
async def list_dead_letters(
    state: State,
    operator: Operator,
    partner: Annotated[str, Query(pattern=PARTNER_PATTERN, description="a partner id")],
    after: Annotated[
        str | None,
        Query(pattern=ENTRY_ID, description="list the dead letters after this id"),
        AfterValidator(_optional_after_id),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterPage:
    # One more than asked for, so `next` is null on the last page rather than on the page after.
    rows = await state.store.dead_letters(partner, after=after, count=limit + 1)
    if not rows and not await _known(state, partner):
        raise _no_such_partner(partner)
    page = rows[:limit]
    return DeadLetterPage(
        partner=partner,
        dead_letters=[_dead_letter(i, f) for i, f in page],
        next=page[-1][0] if len(rows) > limit else None,
    )


@router.get(
    "/{partner}/{dead_id}",
    summary="One dead letter and what the broker knows of its report (operators only)",
    responses=errors(400, 401, 404, 422, 503),
)
async def show_dead_letter(
    state: State, operator: Operator, partner: PartnerPath, dead_id: DeadIdPath
) -> DeadLetterDetail:
    fields = await state.store.dead_letter_entry(partner, dead_id)
    if fields is None:
        if not await _known(state, partner):
            raise _no_such_partner(partner)
        raise NotFoundError(f"{partner} has no dead letter {dead_id}", code="no_such_dead_letter")
    letter = _dead_letter(dead_id, fields)
    report = None
    if letter.kind != "gap":
        facts = await state.store.report_facts([letter.report_id])
        report = _report_known(facts.get(letter.report_id))
    return DeadLetterDetail(partner=partner, dead_letter=letter, report=report)


@router.post(
    "/{partner}/{dead_id}/replay",
    summary="Put a dead letter back in the partner's inbox, as a new entry (operators only)",
    description="Delivery re-checks the policy as for any entry. Audited as `replayed`, with the "
    "operator who signed the request. A dead letter is replayed once: again, it is a 404.",
    responses=errors(400, 401, 404, 422, 503),
)
async def replay_dead_letter(
    state: State, operator: Operator, partner: PartnerPath, dead_id: DeadIdPath
) -> Replayed:
    if state.policy.registry.get(partner) is None:
        # Its inbox has no reader any more: the dead letters of a removed partner stay readable
        # (list, show), but are not replayed into the void.
        raise NotFoundError(f"{partner} is not a partner of this broker", code="no_such_partner")
    entry_id = await state.store.replay_dead_letter(partner, dead_id, operator.partner)
    if entry_id is None:
        raise NotFoundError(
            f"{partner} has no dead letter {dead_id} (already replayed?)",
            code="no_such_dead_letter",
        )
    return Replayed(partner=partner, dead_letter=dead_id, entry_id=entry_id)
