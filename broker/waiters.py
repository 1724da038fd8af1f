"""Admission for blocking readers: long polls and SSE streams that wait on Redis (DESIGN §11).

Each admitted reader may hold one connection of the blocking pool, so admission is bounded
twice: per broker process (the pool's size) and per partner (its share). One partner opening
a hundred streams gets 429 on the ones past its share; the others keep theirs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from tearline.clients.errors import RateLimitedError, UnavailableError

# What a refused reader is told to wait before trying again.
RETRY_AFTER_S = 5


class Waiters:
    def __init__(self, *, total: int, per_partner: int) -> None:
        self.total = total
        self.per_partner = per_partner
        self._held: Counter[str] = Counter()

    @property
    def held(self) -> int:
        return sum(self._held.values())

    def held_by(self, partner: str) -> int:
        return self._held[partner]

    @contextmanager
    def admit(self, partner: str) -> Iterator[None]:
        """Hold a reader slot for ``partner`` for the block; refuse at once when none is free."""
        self.check(partner)
        self._held[partner] += 1
        try:
            yield
        finally:
            self._held[partner] -= 1
            if not self._held[partner]:
                del self._held[partner]

    def check(self, partner: str) -> None:
        """Raise what :meth:`admit` would raise now, without taking a slot."""
        if self._held[partner] >= self.per_partner:
            raise RateLimitedError(
                f"{partner} already has {self.per_partner} long polls or streams open on this "
                "broker; close one before opening another",
                code="too_many_waiters",
                retry_after_s=RETRY_AFTER_S,
            )
        if self.held >= self.total:
            raise UnavailableError(
                "this broker is serving as many waiting subscribers as it can; try again shortly "
                "or another broker",
                code="subscribers_full",
                retry_after_s=RETRY_AFTER_S,
            )
