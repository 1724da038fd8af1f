"""The transparency log's leaves (broker.translog): the governance documents' bytes, each
appended once, in order."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tearline.broker.store.base import StoreBase
from tearline.broker.store.keys import LOG_INDEX_KEY, LOG_KEY


class LogStore(StoreBase):
    async def log_append(self, documents: Sequence[bytes]) -> int:
        """Append the documents the log does not hold yet (atomically: two workers reloading
        at once append each document once); the log's size after."""
        args: list[bytes | str] = []
        for doc in documents:
            args += [hashlib.sha256(doc).hexdigest(), doc]
        return int(await self._log_append(keys=[LOG_KEY, LOG_INDEX_KEY], args=args))

    async def log_leaves(self, start: int = 0) -> list[bytes]:
        """The log's leaves from index ``start`` on."""
        leaves: list[bytes] = await self.redis.lrange(LOG_KEY, start, -1)
        return leaves
