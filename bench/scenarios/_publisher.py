"""An open-loop publisher of pre-signed ``POST /v1/reports`` over raw asyncio streams, and the
bits of HTTP/1.1 the delivery scenarios share with their subscriber (``_sse``).

Raw sockets rather than httpx so the load generator costs a few microseconds per request: on a
2-core machine every cycle it spends is taken from the broker it measures. It runs in its own
process (``run_publisher``, started with multiprocessing's spawn) and sends its result back
through a pipe.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from multiprocessing.connection import Connection
from typing import Any

from tearline.clients.httpsig import sign_request


def cpu_s() -> float:
    """This process's CPU seconds (user + system)."""
    times = os.times()
    return times.user + times.system


def signed_request(
    port: int, method: str, path: str, key: tuple[str, bytes], body: bytes, content_type: str
) -> bytes:
    """The bytes of one request, signed now with a fresh nonce. The URL signed is the one the
    broker reconstructs (``TEARLINE_PUBLIC_URL`` is ``http://127.0.0.1:{port}``)."""
    url = f"http://127.0.0.1:{port}{path}"
    headers = sign_request(
        method, url, {}, body, key_id=key[0], private_key=key[1],
        created=int(time.time()), nonce=secrets.token_urlsafe(16),
    )  # fmt: skip
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if body:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    else:
        lines.append("Accept: text/event-stream")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """A response's status and (lower-cased) headers."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ", 2)[1]), headers


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server keeps the connection open. The broker's answers to
    posts and acks carry Content-Length (they are not streamed)."""
    status, headers = await read_head(reader)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() != "close"


class _Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _publish(
    port: int, requests: list[bytes], rate: float, connections: int, out: dict[str, Any]
) -> None:
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    conns = [_Conn(port) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in conns))
    for c in conns:
        idle.put_nowait(c)
    n = len(requests)
    send_ns, status, done_ns = [0] * n, [0] * n, [0] * n
    late, max_lag = 0, 0.0
    first_body: list[bytes] = []

    async def finish(conn: _Conn, i: int) -> None:
        # One request in flight per connection: read its answer, then hand the connection back.
        try:
            assert conn.reader is not None
            status[i], body, keep = await read_response(conn.reader)
            done_ns[i] = time.time_ns()
            if not first_body and status[i] == 201:
                first_body.append(body)
            if not keep:
                conn.close()
                await conn.open()
        except (OSError, asyncio.IncompleteReadError):
            status[i] = -1  # the connection broke: counted as a non-2xx answer
            conn.close()
            await conn.open()
        idle.put_nowait(conn)

    tasks: set[asyncio.Task[None]] = set()
    cpu0 = cpu_s()
    t0_ns = time.time_ns()
    t0 = loop.time()
    for i, request in enumerate(requests):
        # Open loop: request i is due at t0 + i/rate whatever happened to the earlier ones.
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            conn = idle.get_nowait()
        except asyncio.QueueEmpty:
            conn = await idle.get()  # every connection is busy: the schedule slips, say so
        lag = loop.time() - due
        if lag > 0.005:
            late += 1
        max_lag = max(max_lag, lag)
        assert conn.writer is not None
        send_ns[i] = time.time_ns()
        conn.writer.write(request)
        task = asyncio.create_task(finish(conn, i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    out.update(
        t0_ns=t0_ns, end_ns=max(done_ns, default=t0_ns), cpu_s=cpu_s() - cpu0,
        send_ns=send_ns, status=status, done_ns=done_ns, late_sends=late,
        max_lag_ms=round(max_lag * 1000, 1), connections=connections,
        first_receipt_id=json.loads(first_body[0])["receipt"]["id"] if first_body else None,
    )  # fmt: skip
    for c in conns:
        c.close()


def run_publisher(
    port: int, key: tuple[str, bytes], bodies: list[bytes], rate: float, connections: int,
    pipe: Connection,
) -> None:  # fmt: skip
    """Child process: sign every post now (the replay window is 60 s), then send them at
    ``rate`` per second on ``connections`` keep-alive connections; the result goes to ``pipe``."""
    cpu0 = cpu_s()
    requests = [
        signed_request(port, "POST", "/v1/reports", key, b, "application/json") for b in bodies
    ]
    out: dict[str, Any] = {"sign_cpu_s": round(cpu_s() - cpu0, 2)}
    asyncio.run(_publish(port, requests, rate, connections, out))
    pipe.send(("done", out))
    pipe.close()
