"""The audit trail in Redis: the stream (written by the scripts and :meth:`AuditStore.audit`),
read oldest or newest first, its per-report index, and its signed checkpoints. (The hash chain
and the signing are broker.audit's.)"""

from __future__ import annotations

from typing import Any

from tearline.broker.store.base import StoreBase
from tearline.broker.store.keys import (
    AUDIT_INDEXED_KEY,
    AUDIT_KEY,
    CHECKPOINTS_KEY,
    audit_index_key,
)


class AuditStore(StoreBase):
    async def audit(self, event: str, report_id: str, data: bytes) -> None:
        await self.redis.xadd(AUDIT_KEY, {"event": event, "report": report_id, "data": data})

    async def audit_after(self, after: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Audit entries after ``after`` (exclusive), oldest first."""
        reply = await self.redis.xrange(AUDIT_KEY, min=f"({after}", max="+", count=count)
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for entry_id, fields in reply
        ]

    async def last_checkpoint(self) -> dict[str, str] | None:
        reply = await self.redis.xrevrange(CHECKPOINTS_KEY, count=1)
        if not reply:
            return None
        return {k.decode(): v.decode() for k, v in reply[0][1].items()}

    async def add_checkpoint(self, fields: dict[str, str]) -> None:
        await self.redis.xadd(CHECKPOINTS_KEY, fields)

    async def audit_entries(self, report_id: str | None, count: int = 1000) -> list[dict[str, str]]:
        reply = await self.redis.xrevrange(AUDIT_KEY, count=count)
        out = []
        for entry_id, fields in reply:
            row = {k.decode(): v.decode() for k, v in fields.items()}
            if report_id is None or row.get("report") == report_id:
                out.append({"entry": entry_id.decode(), **row})
        return out

    async def index_audit(self, chunk: int) -> int:
        """Add the audit entries after the index's cursor (at most ``chunk``) to their reports'
        lists, and move the cursor past them, atomically; how many entries were read (0: the
        index is complete). Brokers may run it at once: each chunk is applied once.

        The lists are derived from the stream, so no writer of audit entries has to know of
        them, and a trail written before the index existed is indexed on the first run."""
        cursor = (await self.redis.get(AUDIT_INDEXED_KEY) or b"0-0").decode()
        reply = await self.redis.xrange(AUDIT_KEY, min=f"({cursor}", max="+", count=chunk)
        if not reply:
            return 0
        by_report: dict[str, list[str]] = {}
        for entry_id, fields in reply:
            report_id = fields.get(b"report", b"").decode()
            if report_id:  # a gap notice concerns no report
                by_report.setdefault(report_id, []).append(entry_id.decode())
        keys = [AUDIT_INDEXED_KEY]
        args: list[Any] = [cursor, reply[-1][0].decode()]
        for report_id, ids in by_report.items():
            keys.append(audit_index_key(report_id))
            args += [len(ids), *ids]
        await self._audit_index(keys=keys, args=args)
        return len(reply)

    async def audit_trail(self, report_id: str, count: int) -> list[dict[str, str]]:
        """The newest ``count`` audit entries about ``report_id``, newest first, however old,
        from its list (as far as :meth:`index_audit` has gone)."""
        ids = await self.redis.lrange(audit_index_key(report_id), -count, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in reversed(ids):
                pipe.xrange(AUDIT_KEY, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return [
            {"entry": entry_id.decode(), **{k.decode(): v.decode() for k, v in fields.items()}}
            for reply in replies
            for entry_id, fields in reply
        ]
