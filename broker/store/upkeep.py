"""Upkeep: the retention run's trim of an inbox (a loss leaves a gap notice; the inbox quota is
recounted), and the leases that let one broker process at a time run a periodic task."""

from __future__ import annotations

from tearline.broker.store.base import StoreBase
from tearline.broker.store.keys import AUDIT_KEY, inbox_key, lease_key, quota_key


class UpkeepStore(StoreBase):
    async def take_lease(self, task: str, holder: str, lease_ms: int) -> bool:
        """One broker process runs ``task`` at a time; the lease lapses if its holder dies."""
        key = lease_key(task)
        if await self.redis.set(key, holder, nx=True, px=lease_ms):
            return True
        if await self.redis.get(key) == holder.encode():
            await self.redis.pexpire(key, lease_ms)
            return True
        return False

    async def trim_inbox(self, partner: str, cutoff_ms: int) -> tuple[int, int]:
        """Drop ``partner``'s entries older than ``cutoff_ms``; returns (trimmed, lost), where
        lost counts the ones never acknowledged. A loss leaves the partner a gap notice."""
        reply = await self._trim(
            keys=[inbox_key(partner), AUDIT_KEY, quota_key(partner)],
            args=[f"{cutoff_ms}-0", partner],
        )
        return int(reply[0]), int(reply[1])
