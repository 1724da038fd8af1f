"""How long a client waits before trying again: capped exponential backoff with full jitter.

Full jitter (a delay drawn uniformly from zero to the exponential ceiling) spreads the partners
that a broker restart disconnected all at once, so they do not come back all at once either.
Pure: the random source is passed in, and nothing here sleeps.
"""

from __future__ import annotations

import random

from tearline.clients.errors import InputError

# 2**60 × any sane base is far past any cap; stopping the exponent there keeps the arithmetic
# from overflowing on a client that has been failing for days.
_MAX_EXPONENT = 60


class Backoff:
    """Delays for consecutive failed attempts: the n-th (from 0) is drawn uniformly from
    ``[0, min(cap_s, base_s × 2**n)]``, and never shorter than what the server asked for.

    Call :meth:`reset` once an attempt worked, so the next outage starts again from ``base_s``.
    """

    def __init__(
        self, *, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise InputError(
                f"backoff needs 0 < base_s <= cap_s (got {base_s} and {cap_s})",
                code="invalid_backoff",
            )
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def ceiling_s(self) -> float:
        """The longest delay the next attempt can draw (before any server minimum)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.failures, _MAX_EXPONENT))

    def next_delay_s(self, at_least_s: float = 0.0) -> float:
        """The delay before the next attempt, counting one more failure. ``at_least_s`` is the
        server's own minimum (``Retry-After``, an SSE ``retry:`` field): it is honoured even
        above the cap, since trying earlier would only be refused again."""
        delay = self._rng.uniform(0.0, self.ceiling_s())
        self.failures += 1
        return max(at_least_s, delay)

    def reset(self) -> None:
        self.failures = 0
