"""Watching Redis's memory, so it is never full by surprise (DESIGN §11, issue 16).

Redis runs with ``maxmemory`` and the ``noeviction`` policy (the embedded redis-server and the
compose file set both): a full Redis refuses writes, it never drops a report silently. Before it
is full, the broker acts: every ``store_memory_check_s`` it reads ``INFO memory``, and above
``store_high_water_fraction`` of ``maxmemory`` it

- refuses new reports with 503 ``store_full`` and ``Retry-After`` (acks, reads, recalls and
  dead-letter work go on, and they are what frees room);
- logs one ERROR line when the mark is crossed (one INFO line when it is back under), and shows
  it in ``/metrics`` (``tearline_store_memory_used_bytes``, ``…_max_bytes``,
  ``tearline_store_full``), ``/readyz`` (``"store": "full"``) and ``GET /v1/status``.

A Redis with no ``maxmemory``, or one that evicts, is named in a WARNING at start: the broker
cannot tell how close to full it is, or Redis may drop reports to make room.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import Gauge
from redis.exceptions import RedisError

from tearline.broker.metrics import REGISTRY

log = logging.getLogger("tearline.broker")

# How long a refused sender is told to wait: memory comes back as partners acknowledge and
# retention trims, which takes minutes, not seconds.
STORE_FULL_RETRY_AFTER_S: Final = 60

USED = Gauge(
    "tearline_store_memory_used_bytes",
    "Redis used_memory, as last read",
    registry=REGISTRY,
    multiprocess_mode="max",
)
MAX = Gauge(
    "tearline_store_memory_max_bytes",
    "Redis maxmemory (0: none set)",
    registry=REGISTRY,
    multiprocess_mode="max",
)
FULL = Gauge(
    "tearline_store_full",
    "1 while Redis is above the high-water mark and new reports are refused (store_full)",
    registry=REGISTRY,
    multiprocess_mode="max",
)


@dataclass
class StoreMemory:
    """What the broker last read of Redis's memory."""

    high_water_fraction: float
    used_bytes: int = 0
    max_bytes: int = 0  # 0: Redis has no maxmemory
    policy: str = ""
    full: bool = False
    checked: bool = False

    def update(self, info: dict[str, Any]) -> None:
        used, most = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        policy = str(info.get("maxmemory_policy", ""))
        if not self.checked:
            if not most:
                log.warning(
                    "Redis has no maxmemory: it grows until the host runs out; set maxmemory "
                    "with maxmemory-policy noeviction (the embedded Redis does)"
                )
            if policy and policy != "noeviction":
                log.warning(
                    "Redis's maxmemory-policy is %s: it may evict reports to make room; "
                    "set noeviction",
                    policy,
                )
        full = bool(most) and used >= self.high_water_fraction * most
        if full and not self.full:
            log.error(
                "Redis is %.0f%% full (%d of %d bytes, past the high-water mark of %.0f%%): new "
                "reports are refused (503 store_full) until partners acknowledge or retention "
                "trims; raise maxmemory or lower the retention",
                100 * used / most, used, most, 100 * self.high_water_fraction,
            )  # fmt: skip
        elif self.full and not full:
            log.info("Redis is below the high-water mark again: reports are accepted")
        self.used_bytes, self.max_bytes, self.policy = used, most, policy
        self.full, self.checked = full, True
        USED.set(used)
        MAX.set(most)
        FULL.set(1 if full else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "used_bytes": self.used_bytes,
            "max_bytes": self.max_bytes,
            "high_water_fraction": self.high_water_fraction,
            "policy": self.policy,
            "full": self.full,
        }


async def watch(state: Any, interval_s: float) -> None:
    """Read Redis's memory every ``interval_s`` into ``state.memory``, for as long as the
    broker runs; while Redis is away the last reading stands (writes fail as an outage)."""
    while True:
        try:
            state.memory.update(await state.store.memory())
        except (RedisError, OSError) as exc:
            log.debug("Redis memory not read: %s", exc)
        await asyncio.sleep(interval_s)
