"""Storage quotas (DESIGN §11): the limits the ingest script enforces, and what counts against
them now. The counts are kept by the scripts that change what they count (the package's
docstring says which); nothing here writes them."""

from __future__ import annotations

from dataclasses import dataclass

from tearline.broker.store.base import StoreBase
from tearline.broker.store.keys import quota_key


@dataclass(frozen=True, slots=True)
class Quotas:
    """The storage quotas the ingest script enforces (broker.settings; see the module doc)."""

    inbox_reports: int = 10_000
    inbox_bytes: int = 256 * 1024 * 1024
    originator_reports: int = 100_000
    originator_bytes: int = 512 * 1024 * 1024


class QuotaStore(StoreBase):
    async def quota_usage(self, partner: str) -> dict[str, int]:
        """What counts against ``partner``'s quotas now: ``queued_reports``, ``queued_bytes``
        (its inbox), ``stored_reports``, ``stored_bytes`` (as originator)."""
        names = ("queued_reports", "queued_bytes", "stored_reports", "stored_bytes")
        values = await self.redis.hmget(quota_key(partner), names)
        return {n: int(v or 0) for n, v in zip(names, values, strict=True)}
