"""The broker's two Redis clients, every setting chosen here on purpose (DESIGN §7, §11).

- ``commands``: everything that does not block (ingest, acks, nonces, claims). A bounded pool
  whose requests wait a short while for a free connection, then fail as an outage (503).
- ``pipeline``: the ingest script only, on one connection shared by every request in flight
  (``broker.pipeline``): redis-py's per-call overhead was a quarter of a post's CPU.
- ``blocking``: only ``XREADGROUP … BLOCK``. Its own bounded pool, sized to the number of
  blocking readers the broker admits (:class:`broker.waiters.Waiters`), with a socket timeout
  longer than the longest block it issues, so a quiet inbox is never mistaken for a dead link.

redis-py's defaults are not inherited: a release once made ``socket_timeout`` 5 s, which cut
every long poll that blocked longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tearline.broker.pipeline import Pipeline
from tearline.broker.settings import Settings

# A blocking read is issued in slices of at most this long: short enough that a reader
# notices shutdown, claims entries whose visibility timeout ran out and re-checks its caller's
# standing within seconds; long enough that an idle subscriber costs Redis almost nothing.
BLOCK_SLICE_MAX_MS: Final = 5_000


@dataclass(frozen=True)
class RedisClients:
    commands: aioredis.Redis
    blocking: aioredis.Redis
    #: The ingest script's shared connection (broker.pipeline); None for a URL it cannot
    #: serve (TLS, a Unix socket), where ingest uses ``commands``.
    pipeline: Pipeline | None = None

    async def aclose(self) -> None:
        # The pools were made here, not by the clients: they must be told to close them.
        await self.commands.aclose(close_connection_pool=True)
        await self.blocking.aclose(close_connection_pool=True)
        if self.pipeline is not None:
            await self.pipeline.aclose()


def block_slice_ms(settings: Settings) -> int:
    """How long one blocking read may block: a quarter of the visibility timeout, capped."""
    return max(100, min(settings.visibility_timeout_ms // 4, BLOCK_SLICE_MAX_MS))


def connect(settings: Settings) -> RedisClients:
    """Both clients for ``settings.redis_url``. Connections are made lazily, so a broker can
    start while Redis is away and serves as soon as it is back, without a restart."""
    assert settings.redis_url is not None
    # One quick retry on a broken connection (a Redis restart left it dead); never on a
    # timeout, which could run a script twice. Every command the broker sends is safe to repeat.
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 1, (RedisConnectionError,))
    common: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_keepalive": True,
        # A connection idle this long is PINGed before use, so one that a Redis restart left
        # dead is replaced instead of failing the request that picked it.
        "health_check_interval": settings.redis_health_check_s,
        "decode_responses": False,
    }
    commands_pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_pool_size,
        timeout=settings.redis_pool_wait_s,
        socket_timeout=settings.redis_socket_timeout_s,
        retry=retry,
        **common,
    )
    blocking_pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.blocking_readers_max,
        timeout=settings.redis_pool_wait_s,
        socket_timeout=block_slice_ms(settings) / 1000 + settings.redis_socket_timeout_s,
        retry=retry,
        **common,
    )
    return RedisClients(
        commands=aioredis.Redis(connection_pool=commands_pool),
        blocking=aioredis.Redis(connection_pool=blocking_pool),
        pipeline=_pipeline(settings),
    )


def _pipeline(settings: Settings) -> Pipeline | None:
    assert settings.redis_url is not None
    url = urlsplit(settings.redis_url)
    if url.scheme != "redis" or not url.hostname:
        return None
    db = url.path.strip("/") or "0"
    return Pipeline(
        url.hostname,
        url.port or 6379,
        db=int(db) if db.isdigit() else 0,
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        connect_timeout_s=settings.redis_connect_timeout_s,
        reply_timeout_s=settings.redis_socket_timeout_s,
    )
