"""Inboxes: one stream per recipient, read through the consumer group; delivery counts, acks
(audited as received), entries held back from a page, and entries withheld by the policy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from tearline.broker.store.base import StoreBase
from tearline.broker.store.keys import AUDIT_KEY, GROUP, inbox_key, quota_key


@dataclass(frozen=True, slots=True)
class InboxEntry:
    entry_id: str
    report_id: str
    originator: str
    deliveries: int
    kind: str = "report"  # "recall": the originator withdrew a report this partner had;
    # "gap": retention dropped entries this partner never acknowledged
    lost: int = 0
    before: str = ""
    bytes: int = 0  # the envelope's size, for a report entry written since quotas are counted


class InboxStore(StoreBase):
    async def ensure_inboxes(self, partners: Sequence[str]) -> None:
        """Create each partner's inbox and consumer group, so a subscriber can wait on it."""
        for partner in partners:
            try:
                await self.redis.xgroup_create(inbox_key(partner), GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_inbox(
        self, partner: str, consumer: str, *, count: int, block_ms: int | None, after: str = ">"
    ) -> list[InboxEntry]:
        """New entries (``after=">"``) or this consumer's pending ones after an entry id.

        A read that blocks (``block_ms`` > 0) goes through the blocking client."""
        client = self.blocking if block_ms else self.redis
        streams = {inbox_key(partner): after}
        try:
            reply = await client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        except ResponseError as exc:
            if not _no_group(exc):
                raise
            # A Redis that lost its data (no AOF, a flush) lost the groups too: make it again.
            await self.ensure_inboxes([partner])
            reply = await client.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        return _entries(reply)

    async def claim_stale(
        self, partner: str, consumer: str, *, idle_ms: int, count: int
    ) -> list[InboxEntry]:
        """Entries delivered to some consumer and not acked within the visibility timeout."""
        try:
            reply = await self.redis.xautoclaim(
                inbox_key(partner), GROUP, consumer, min_idle_time=idle_ms, start_id="0-0",
                count=count,
            )  # fmt: skip
        except ResponseError as exc:
            if not _no_group(exc):
                raise
            await self.ensure_inboxes([partner])
            return []
        return _entries([[inbox_key(partner).encode(), reply[1]]])

    async def delivery_counts(self, partner: str, entry_ids: Sequence[str]) -> dict[str, int]:
        """How often each entry has been delivered, asked entry by entry in one round trip."""
        if not entry_ids:
            return {}
        key = inbox_key(partner)
        if self._pipeline is not None:
            pipeline = self._pipeline
            raw = await asyncio.gather(
                *(pipeline.execute("XPENDING", key, GROUP, e, e, 1) for e in entry_ids)
            )
            # XPENDING's extended form: [id, consumer, idle ms, times delivered] per entry.
            return {p[0].decode(): int(p[3]) for reply in raw for p in reply}
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(key, GROUP, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {
            p["message_id"].decode(): int(p["times_delivered"]) for reply in replies for p in reply
        }

    async def ack(self, partner: str, entry_ids: Sequence[str]) -> int:
        """Acknowledge entries of ``partner``'s inbox; each report acked is audited as received."""
        if not entry_ids:
            return 0
        keys = [inbox_key(partner), AUDIT_KEY, quota_key(partner)]
        return int(await self._ack(keys=keys, args=[partner, *entry_ids]))

    async def withhold(self, partner: str, entry: InboxEntry, data: bytes) -> None:
        """Drop an entry the engine now refuses (policy changed), and say so in the audit."""
        await self._withhold(
            keys=[inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[entry.entry_id, entry.report_id, data],
        )

    async def hold_back(
        self, partner: str, consumer: str, entries: Sequence[tuple[str, int]], *, idle_ms: int
    ) -> None:
        """Hand entries read but left out of a page (its byte budget) straight back: they stay
        pending, made idle for ``idle_ms`` (the visibility timeout) so the next read claims them
        at once. Each is ``(entry id, delivery count to set)``: the count before this read, so
        being held back never brings an entry closer to the dead letters."""
        if not entries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, count in entries:
                pipe.xclaim(
                    inbox_key(partner), GROUP, consumer, 0, [entry_id],
                    idle=idle_ms, retrycount=max(0, count), justid=True,
                )  # fmt: skip
            await pipe.execute()


def _no_group(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


def _entries(reply: Any) -> list[InboxEntry]:
    out = []
    for _stream, messages in reply or ():
        for entry_id, fields in messages:
            if not fields:  # deleted while pending: nothing left to deliver
                continue
            out.append(
                InboxEntry(
                    entry_id=entry_id.decode(),
                    report_id=fields.get(b"report", b"").decode(),
                    originator=fields.get(b"originator", b"").decode(),
                    deliveries=1,
                    kind=fields.get(b"kind", b"report").decode(),
                    lost=int(fields.get(b"lost", 0)),
                    before=fields.get(b"before", b"").decode(),
                    bytes=int(fields.get(b"bytes", 0)),
                )
            )
    return out
