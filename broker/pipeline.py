"""One Redis connection shared by every request in flight, for the ingest path's script calls.

redis-py's asyncio client checks a connection out of its pool, wraps the call in its retry and
timeout machinery and parses the reply in Python: about 110 µs of broker CPU for a PING and 400
for an ingest script on this machine (bench/, ``Store.ingest``), a quarter of a post's cost.
RESP answers in order on a connection, so many requests can share one: each writes its
command (packed by hiredis) and awaits its turn in a FIFO of futures, while one reader task
parses replies with hiredis and hands them out. That is what pipelining clients do; here it is
the ~20 µs the hot path needs.

Failures keep redis-py's exception types, so the broker's outage handling (503 with
``Retry-After``) is the same whichever client failed:

- the connection cannot be made within ``connect_timeout_s``: ``redis.ConnectionError``;
- it breaks: every request in flight fails with ``redis.ConnectionError`` and the next request
  connects afresh (a Redis restart needs no broker restart);
- a reply takes longer than ``reply_timeout_s``: ``redis.TimeoutError``, and the connection is
  dropped, since the replies still owed on it can no longer be matched to their requests.

Nothing is retried here: a script that may have run must not run twice unasked (its nonce
would then refuse the request as a replay); the caller's 503 makes the client retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Link:
    """One open connection: its writer, the futures owed a reply, and the task reading them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.closed = False
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(replyError=ResponseError)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = self.waiting.popleft()
                    if not future.done():
                        future.set_result(reply)
        except (OSError, hiredis.ProtocolError, IndexError, RedisConnectionError) as exc:
            self.fail(RedisConnectionError(f"the Redis connection broke: {exc!r}"))
        except asyncio.CancelledError:
            self.fail(RedisConnectionError("the Redis connection was closed"))
            raise

    def fail(self, exc: Exception) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        self.writer.close()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class Pipeline:
    """``await pipeline.execute("EVALSHA", sha, …)``: one command, one reply, on a shared link."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        password: str | None = None,
        username: str | None = None,
        connect_timeout_s: float,
        reply_timeout_s: float,
    ) -> None:
        self._host, self._port, self._db = host, port, db
        self._auth = [a for a in (username, password) if a]
        self.connect_timeout_s = connect_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self._link: _Link | None = None
        self._connecting = asyncio.Lock()

    async def _connected(self) -> _Link:
        link = self._link
        if link is not None and not link.closed:
            return link
        async with self._connecting:
            if self._link is not None and not self._link.closed:
                return self._link
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self._host, self._port)
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from None
            link = _Link(reader, writer)
            self._link = link
            if self._auth:
                await self._send(link, ("AUTH", *self._auth))
            if self._db:
                await self._send(link, ("SELECT", self._db))
            return link

    async def execute(self, *args: Any) -> Any:
        return await self._send(await self._connected(), args)

    async def _send(self, link: _Link, args: tuple[Any, ...]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.waiting.append(future)
        link.writer.write(hiredis.pack_command(args))
        try:
            async with asyncio.timeout(self.reply_timeout_s):
                reply = await future
        except TimeoutError:
            link.fail(RedisConnectionError("the Redis connection was dropped after a timeout"))
            raise RedisTimeoutError(
                f"no reply from Redis within {self.reply_timeout_s} s"
            ) from None
        if isinstance(reply, ResponseError):
            if str(reply).startswith("NOSCRIPT"):
                raise NoScriptError(str(reply))
            raise reply
        return reply

    async def aclose(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None
