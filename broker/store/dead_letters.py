"""Dead letters: inbox entries set aside for the operator (with the reason), listed, and
replayed into the inbox; each move audited, atomically."""

from __future__ import annotations

import json
from typing import Any

from tearline.broker.store.base import StoreBase
from tearline.broker.store.inbox import InboxEntry
from tearline.broker.store.keys import AUDIT_KEY, dead_key, inbox_key, quota_key


class DeadLetterStore(StoreBase):
    async def dead_letter(self, partner: str, entry: InboxEntry, reason: str) -> str | None:
        """Set an entry aside for the operator, with the reason; audited, atomically. Returns
        the dead letter's id, or None when the entry was no longer pending (another broker set
        it aside, or it was acked, first): an entry is never dead-lettered twice."""
        fields: list[Any] = [
            "entry", entry.entry_id, "report", entry.report_id, "originator", entry.originator,
            "kind", entry.kind, "reason", reason,
        ]  # fmt: skip
        if entry.kind == "gap":
            fields += ["lost", entry.lost, "before", entry.before]
        if entry.bytes:  # a replay queues it again, on the inbox quota again
            fields += ["bytes", entry.bytes]
        reply = await self._dead_letter(
            keys=[dead_key(partner), inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[entry.entry_id, partner, reason, entry.report_id, *fields],
        )
        return reply.decode() if reply else None

    async def dead_letters(
        self, partner: str, *, after: str | None, count: int
    ) -> list[tuple[str, dict[str, str]]]:
        """``partner``'s dead letters after ``after`` (exclusive), oldest first."""
        low = f"({after}" if after else "-"
        reply = await self.redis.xrange(dead_key(partner), min=low, max="+", count=count)
        return [(i.decode(), {k.decode(): v.decode() for k, v in f.items()}) for i, f in reply]

    async def dead_letter_entry(self, partner: str, dead_id: str) -> dict[str, str] | None:
        reply = await self.redis.xrange(dead_key(partner), min=dead_id, max=dead_id, count=1)
        if not reply:
            return None
        return {k.decode(): v.decode() for k, v in reply[0][1].items()}

    async def replay_dead_letter(self, partner: str, dead_id: str, operator: str) -> str | None:
        """Put a dead letter back in ``partner``'s inbox as a new entry (delivery re-checks the
        policy as for any entry), remove it from the dead letters, audit who did it. Returns
        the new entry id, or None when there is no such dead letter (already replayed)."""
        reply = await self._replay(
            keys=[dead_key(partner), inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[dead_id, _json({"partner": partner, "dead_letter": dead_id, "by": operator})],
        )
        return reply.decode() if reply else None


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
