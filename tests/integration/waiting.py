"""Bounded waits for integration tests: poll a condition, fail (never hang) past a bound.

Bounds are generous so a slow machine never fails a test; they are never timing assertions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

DEFAULT_BOUND_S = 10.0


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    bound_s: float = DEFAULT_BOUND_S,
) -> T:
    """Run ``probe`` until ``done`` holds for its result; fail after ``bound_s`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > deadline:
            pytest.fail(f"condition not reached within {bound_s} s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def until(
    check: Callable[[], T], done: Callable[[T], bool] = bool, *, bound_s: float = DEFAULT_BOUND_S
) -> T:
    """:func:`eventually` for a probe that does not need to await."""

    async def probe() -> T:
        return check()

    return await eventually(probe, done, bound_s=bound_s)
