"""Reports: ingest (the ingest script: envelope, inbox entries, idempotency record, audit entry
and quota counts, all or nothing), what delivery and receipts read of a stored report, recall."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from tearline.broker.pipeline import Pipeline
from tearline.broker.store.base import StoreBase
from tearline.broker.store.keys import (
    AUDIT_KEY,
    NO_NONCE_KEY,
    inbox_key,
    quota_key,
    report_key,
)
from tearline.broker.store.quotas import Quotas


@dataclass(frozen=True, slots=True)
class NewReport:
    """What the ingest script stores of one accepted report."""

    report_id: str
    envelope: bytes
    digest: bytes
    originator: str
    accepted_ms: int
    label: bytes
    suite: str
    grants: bytes
    recipients: Sequence[str]
    audit: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of an ingest: created, duplicate (same bytes) or conflict (other bytes)."""

    outcome: str
    accepted_ms: int = 0
    positions: tuple[str, ...] = ()
    grants: bytes = b""
    # For "over_quota": which quota ("inbox", "originator"), whose, and when it may fit.
    quota: str = ""
    partner: str = ""
    retry_after_s: int = 0


@dataclass(frozen=True, slots=True)
class Recalled:
    withdrawn: tuple[str, ...]  # recipients that never received it: their copy is gone
    notified: tuple[str, ...]  # recipients that had it: they get a recall notice


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """What delivery needs to re-run the engine without re-parsing the envelope."""

    envelope: bytes
    originator: str
    label: bytes
    suite: str
    recalled: bool


class ReportStore(StoreBase):
    async def ingest(
        self,
        reports: Sequence[NewReport],
        *,
        retention_ms: int,
        nonce_key: str = "",
        nonce_ttl_s: int = 0,
        quotas: Quotas | None = None,
    ) -> list[Stored] | None:
        """Store each report all-or-nothing, in one round trip; the outcome of each in order.

        With ``nonce_key``, the request's nonce is recorded first, in the same step, and None
        is returned, with nothing stored, when it was seen before. A report that would take
        its originator or a recipient past ``quotas`` is not stored (outcome ``over_quota``)."""
        q = quotas or Quotas()
        keys = [AUDIT_KEY, nonce_key or NO_NONCE_KEY]
        args: list[Any] = [
            nonce_ttl_s if nonce_key else 0, retention_ms, len(reports),
            q.inbox_reports, q.inbox_bytes, q.originator_reports, q.originator_bytes,
        ]  # fmt: skip
        for r in reports:
            keys += [
                report_key(r.report_id),
                quota_key(r.originator),
                *(inbox_key(p) for p in r.recipients),
                *(quota_key(p) for p in r.recipients),
            ]
            args += [
                r.report_id, r.envelope, r.digest, r.originator, r.accepted_ms, r.label,
                r.suite, r.grants, r.audit, len(r.recipients), *r.recipients,
            ]  # fmt: skip
        if self._pipeline is None:
            result = await self._ingest(keys=keys, args=args)
        else:
            result = await self._run_on_pipeline(self._pipeline, keys, args)
        if result == [b"replayed"]:
            return None
        out = []
        for i in range(0, len(result), 4):
            outcome = result[i].decode()
            if outcome == "conflict":
                out.append(Stored("conflict"))
                continue
            if outcome == "over_quota":
                quota, partner = result[i + 1].decode(), result[i + 2].decode()
                out.append(Stored(outcome, quota=quota, partner=partner,
                                  retry_after_s=int(result[i + 3])))  # fmt: skip
                continue
            positions = tuple(result[i + 2].decode().split(","))
            out.append(Stored(outcome, int(result[i + 1]), positions, result[i + 3]))
        return out

    async def _run_on_pipeline(self, pipeline: Pipeline, keys: list[str], args: list[Any]) -> Any:
        script = self._ingest
        try:
            return await pipeline.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed Redis forgot the script: EVAL loads and runs it.
            return await pipeline.execute("EVAL", script.script, len(keys), *keys, *args)

    async def report_facts(self, report_ids: Sequence[str]) -> dict[str, ReportFacts]:
        """What delivery needs of each report, in one round trip; expired ones are absent."""
        fields = ["envelope", "originator", "label", "suite", "recalled"]
        if self._pipeline is not None:
            pipeline = self._pipeline
            replies = await asyncio.gather(
                *(pipeline.execute("HMGET", report_key(r), *fields) for r in report_ids)
            )
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for report_id in report_ids:
                    pipe.hmget(report_key(report_id), fields)
                replies = await pipe.execute()
        return {
            report_id: ReportFacts(
                envelope=values[0],
                originator=values[1].decode(),
                label=values[2],
                suite=values[3].decode(),
                recalled=values[4] is not None,
            )
            for report_id, values in zip(report_ids, replies, strict=True)
            if values[0] is not None
        }

    async def receipt_inputs(self, report_id: str) -> dict[str, bytes] | None:
        values = await self.redis.hgetall(report_key(report_id))
        if not values:
            return None
        return {k.decode(): v for k, v in values.items() if k != b"envelope"}

    async def report_routing(self, report_id: str) -> tuple[str, list[str]] | None:
        """The originator and the recipients of a stored report."""
        originator, recipients = await self.redis.hmget(
            report_key(report_id), ["originator", "recipients"]
        )
        if originator is None:
            return None
        return originator.decode(), recipients.decode().split(",")

    async def recall(self, report_id: str, originator: str, recipients: Sequence[str]) -> Recalled:
        """Withdraw undelivered copies and notify recipients that had it; idempotent."""
        keys = [
            report_key(report_id), AUDIT_KEY,
            *(inbox_key(p) for p in recipients), *(quota_key(p) for p in recipients),
        ]  # fmt: skip
        result = await self._recall(keys=keys, args=[report_id, originator, *recipients])
        withdrawn, _, notified = result.decode().partition(";")
        return Recalled(
            tuple(p for p in withdrawn.split(",") if p), tuple(p for p in notified.split(",") if p)
        )
