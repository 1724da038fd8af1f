"""The audit trail, for operators: who received what, when, under which agreement, and who was
refused why (DESIGN §6). Signed with an operator key from ``policies/operators.yaml``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tearline.broker import audit
from tearline.broker.api.deps import Operator, State
from tearline.broker.api.reports import UUID_PATTERN, errors
from tearline.broker.audit import as_rows

router = APIRouter(prefix="/v1", tags=["operators"])


class AuditPage(BaseModel):
    entries: list[dict[str, Any]] = Field(
        description="newest first: event (accepted, received, withheld, recalled, gap, "
        "dead_lettered, replayed), report, data"
    )
    checkpoint: dict[str, Any] | None = Field(
        description="the latest signed checkpoint of the hash chain (body, kid, sig)"
    )


@router.get(
    "/audit",
    summary="Read the audit trail (operators only)",
    description="Without `report_id`, the newest `limit` entries; with it, the newest `limit` "
    "entries about that report, however old (the broker keeps a list of each report's entries).",
    responses=errors(401, 422),
)
async def read_audit(
    state: State,
    operator: Operator,
    report_id: Annotated[str | None, Query(pattern=UUID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    if report_id is None:
        rows = await state.store.audit_entries(None, count=limit)
    else:
        # From the report's own list of entries, however old: never a scan of the newest
        # entries, which a partner posting enough other reports could push it out of.
        await audit.index(state)
        rows = await state.store.audit_trail(report_id, limit)
    entries = as_rows((row.pop("entry"), row) for row in rows)
    return AuditPage(entries=entries, checkpoint=await state.store.last_checkpoint())
