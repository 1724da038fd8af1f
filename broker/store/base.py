"""What every part of the store shares: the Redis connections and the registered scripts."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from tearline.broker.pipeline import Pipeline
from tearline.broker.store import lua


class StoreBase:
    """The connections and scripts the concerns (reports, inbox, …) work with; ``Store`` is
    all of them over one of these."""

    def __init__(
        self,
        redis: aioredis.Redis,
        blocking: aioredis.Redis | None = None,
        *,
        pipeline: Pipeline | None = None,
    ) -> None:
        # redis-py types replies as unions that ignore decode_responses; ours are always bytes.
        self.redis: Any = redis
        # Blocking reads only (broker.connections): they never hold a connection of `redis`.
        self.blocking: Any = blocking if blocking is not None else redis
        self._ingest = redis.register_script(lua.INGEST)
        self._pipeline = pipeline
        self._recall = redis.register_script(lua.RECALL)
        self._ack = redis.register_script(lua.ACK)
        self._trim = redis.register_script(lua.TRIM)
        self._replay = redis.register_script(lua.REPLAY)
        self._dead_letter = redis.register_script(lua.DEAD_LETTER)
        self._withhold = redis.register_script(lua.WITHHOLD)
        self._log_append = redis.register_script(lua.LOG_APPEND)
        self._audit_index = redis.register_script(lua.AUDIT_INDEX)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def memory(self) -> dict[str, Any]:
        """Redis's ``INFO memory``: used_memory, maxmemory (0: none), maxmemory_policy."""
        info: dict[str, Any] = await self.redis.info("memory")
        return info
