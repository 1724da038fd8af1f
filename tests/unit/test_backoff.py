"""The reconnect backoff: exponential, capped, fully jittered, and never below the server's ask."""

from __future__ import annotations

import random

import pytest

from tearline.clients.backoff import Backoff
from tearline.clients.errors import InputError


def test_the_backoff_schedule_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(20260101))
    ceilings = []
    delays = []
    for _ in range(12):
        ceilings.append(backoff.ceiling_s())
        delays.append(backoff.next_delay_s())

    # Doubling from the base until the cap, then the cap.
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    # Full jitter: each delay lies anywhere from zero to its ceiling...
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    # ...so they are not the ceilings themselves, nor all alike once capped.
    assert delays != ceilings
    assert len(set(delays[6:])) == len(delays[6:])


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    def schedule(seed: int) -> list[float]:
        backoff = Backoff(rng=random.Random(seed))
        return [backoff.next_delay_s() for _ in range(8)]

    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)


def test_a_reset_starts_the_next_outage_from_the_base() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(1))
    for _ in range(10):
        backoff.next_delay_s()
    assert backoff.ceiling_s() == 30.0

    backoff.reset()

    assert backoff.ceiling_s() == 0.5
    assert backoff.next_delay_s() <= 0.5


def test_the_servers_minimum_wins_even_above_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=2.0, rng=random.Random(3))
    assert backoff.next_delay_s(at_least_s=1.0) >= 1.0
    assert backoff.next_delay_s(at_least_s=5.0) == 5.0  # Retry-After above the cap: honoured


def test_days_of_failures_do_not_overflow() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(5))
    backoff.failures = 100_000
    assert 0.0 <= backoff.next_delay_s() <= 30.0


@pytest.mark.parametrize(("base_s", "cap_s"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_base_that_is_not_positive_or_above_the_cap_is_refused(
    base_s: float, cap_s: float
) -> None:
    with pytest.raises(InputError) as refused:
        Backoff(base_s=base_s, cap_s=cap_s)
    assert refused.value.code == "invalid_backoff"
