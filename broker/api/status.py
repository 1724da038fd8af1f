"""The broker's status, for operators: the policy in force and the last reload refused, in full.

``/readyz`` is unauthenticated, so it says only *that* a reload was refused; why (file, line,
field, and the values that broke it, agreement terms included) is for operators, here and in the
broker's log. Signed with an operator key from ``policies/operators.yaml``; a partner key is
refused (401).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tearline.broker.api.deps import Operator, State
from tearline.broker.api.reports import errors
from tearline.broker.policy.fingerprint import Changes
from tearline.broker.policy.record import Refusal
from tearline.clients.protocol.encoding import format_time

router = APIRouter(prefix="/v1", tags=["operators"])


class PolicyInForce(BaseModel):
    digest: str | None = Field(
        description="SHA-256 (hex) of the folder's fingerprint: of the `sha256sum` lines of its "
        "files, sorted by path; `tearline policy check` prints the same for a folder"
    )
    files: dict[str, str] = Field(description="each file loaded, with the SHA-256 (hex) of it")
    loaded_at: str | None = Field(json_schema_extra={"format": "date-time"})
    scheme: str = Field(description="the marking scheme's name (scheme.yaml `policy`)")
    partners: int
    agreements: int
    operators: int
    governance: dict[str, Any] | None = Field(
        default=None,
        description="in a governed folder: the root and registry versions in force, their "
        "expiry, the signed agreements, and each document there that is not in force, with why; "
        "null when partners and agreements are the operator's files",
    )


class Rename(BaseModel):
    from_: str = Field(alias="from")
    to: str


class FileChanges(BaseModel):
    added: list[str]
    removed: list[str]
    changed: list[str]
    renamed: list[Rename] = Field(description="a file whose bytes reappeared under another name")

    @classmethod
    def of(cls, changes: Changes) -> FileChanges:
        return cls(
            added=list(changes.added),
            removed=list(changes.removed),
            changed=list(changes.changed),
            renamed=[
                Rename.model_validate({"from": old, "to": new}) for old, new in changes.renamed
            ],
        )


class RefusedReload(BaseModel):
    digest: str = Field(description="the refused folder's fingerprint digest")
    at: str = Field(json_schema_extra={"format": "date-time"})
    outstanding: bool = Field(
        description="true while the folder still holds what was refused, so the policy in "
        "force is not what the folder says"
    )
    changes: FileChanges = Field(description="what differed from the policy in force then")
    error: str = Field(description="every problem, in one line")
    problems: list[str] = Field(description="every problem: file:line: message (field ...)")

    @classmethod
    def of(cls, refusal: Refusal, *, outstanding: bool) -> RefusedReload:
        return cls(
            digest=refusal.fingerprint.digest,
            at=format_time(refusal.at),
            outstanding=outstanding,
            changes=FileChanges.of(refusal.changes),
            error=refusal.message,
            problems=list(refusal.problems),
        )


class StoreStatus(BaseModel):
    used_bytes: int = Field(description="Redis used_memory, as last read")
    max_bytes: int = Field(description="Redis maxmemory; 0 when none is set (a warning is logged)")
    high_water_fraction: float = Field(
        description="above this fraction of max_bytes, new reports are refused (503 store_full)"
    )
    policy: str = Field(description="Redis maxmemory-policy; noeviction never drops data")
    full: bool = Field(description="true while new reports are refused")


class Status(BaseModel):
    policy: PolicyInForce
    store: StoreStatus = Field(description="Redis's memory, and whether reports are refused")
    last_refused_reload: RefusedReload | None = Field(
        description="the latest reload refused since the broker started; null if none was"
    )


@router.get(
    "/status",
    summary="The policy in force and the last reload refused, with its error (operators only)",
    responses=errors(401, 429, 503),
)
async def status(state: State, operator: Operator) -> Status:
    record = state.reloads
    summary = state.policy.summary()
    fingerprint = record.fingerprint
    policy = PolicyInForce(
        digest=fingerprint.digest if fingerprint else None,
        files=dict(fingerprint.files) if fingerprint else {},
        loaded_at=format_time(record.loaded_at) if record.loaded_at else None,
        scheme=summary["policy"],
        partners=summary["partners"],
        agreements=summary["agreements"],
        operators=summary["operators"],
        governance=state.policy.governance.summary() if state.policy.governance else None,
    )
    refused = record.refused
    return Status(
        policy=policy,
        store=StoreStatus(**state.memory.to_dict()),
        last_refused_reload=(
            RefusedReload.of(refused, outstanding=record.outstanding) if refused else None
        ),
    )
