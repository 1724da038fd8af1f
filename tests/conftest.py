"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tearline.broker.embedded import EmbeddedRedis

# --- a real redis-server, one per test session --------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real ``redis-server`` on a free loopback port, AOF on, for the whole session (§9).

    Nothing is flushed between tests: each test uses its own key prefix, or FLUSHALL itself.
    """
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


# --- rooms and time limits ------------------------------------------------------------------------

UNIT = Path(__file__).parent / "unit"
# A heavy run at CI's scale takes minutes by design; every other test gets pyproject's timeout.
HEAVY_TIMEOUT_S = 1800


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test outside tests/unit ``processes`` (it may start redis-server, uvicorn or
    ``tearline``; tests/unit/test_unit_room.py keeps tests/unit free of them), and give heavy
    runs a time limit of their own."""
    for item in items:
        if UNIT not in item.path.parents:
            item.add_marker(pytest.mark.processes)
        if item.get_closest_marker("heavy") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(HEAVY_TIMEOUT_S))
