"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

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
