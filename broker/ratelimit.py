"""Token buckets: per-partner request budgets and per-address budgets for failed signatures.

A request may cost more than one token (``cost``: the broker charges a signed request one,
plus one per ``request_bytes_per_token`` bytes of body), so requests whose work differs by orders
of magnitude are not budgeted alike. Pure: the caller passes the time in. Memory is bounded: at
most ``max_keys`` buckets are kept, and a bucket that has refilled to full carries no state worth
keeping, so it is the first to go.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class TokenBuckets:
    def __init__(self, *, rate_per_s: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str, now_s: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now_s)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)  # the least recently used
        else:
            elapsed = max(0.0, now_s - bucket.at_s)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
            bucket.at_s = now_s
        self._buckets.move_to_end(key)
        return bucket

    def retry_after_s(self, key: str, now_s: float, cost: float = 1.0) -> int | None:
        """None if ``key`` has ``cost`` tokens now; else whole seconds until it has them. A cost
        above the burst is charged as the burst: the request must be possible at all."""
        need = min(cost, float(self.burst))
        bucket = self._refilled(key, now_s)
        if bucket.tokens >= need:
            return None
        return max(1, math.ceil((need - bucket.tokens) / self.rate_per_s))

    def take(self, key: str, now_s: float, cost: float = 1.0) -> int | None:
        """Spend ``cost`` tokens of ``key``; None if it had them, else the seconds to wait."""
        wait = self.retry_after_s(key, now_s, cost)
        if wait is None:
            self._buckets[key].tokens -= min(cost, float(self.burst))
        return wait
