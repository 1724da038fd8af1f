"""A bench subscriber: holds ``GET /v1/inbox/stream`` open for one or more partners, parses
the Server-Sent Events, notes when each report arrives and acks in batches.

It does not verify or decrypt (the SDK does both): what is measured is the broker's delivery,
not the partner's crypto. It runs in its own process (``run_subscriber``, multiprocessing
spawn) and talks to the parent through a pipe: ``("prepared",)`` once imported, ``("open",)``
once every stream has its 200, then ``("done", result)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

from bench.scenarios._publisher import cpu_s, read_head, read_response, signed_request

#: Ack once this many entries are waiting, or this long after the first of them came.
AckPolicy = tuple[int, float]
ACK_MAX = 1000  # the broker's limit per ack request


class Stream:
    """One partner's stream: arrivals (report id, time.time_ns()) and the acks behind them."""

    def __init__(
        self, port: int, partner: str, key: tuple[str, bytes], expect: int, acks: AckPolicy
    ) -> None:
        self.port, self.partner, self.key, self.expect = port, partner, key, expect
        self.ack_every, self.ack_after_s = acks
        self.seen: Counter[str] = Counter()
        self.arrivals: list[tuple[str, int]] = []
        self.pending: list[str] = []
        self.wake = asyncio.Event()
        self.finished = asyncio.Event()
        self.acked = self.ack_requests = self.redelivered = self.heartbeats = 0
        self.errors: list[str] = []
        self.first_ns = self.last_ns = 0
        self._ack_conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        # Signed just before it is sent: `created` must be within the broker's replay window.
        writer.write(signed_request(self.port, "GET", "/v1/inbox/stream", self.key, b"", ""))
        status, headers = await read_head(reader)
        if status != 200 or headers.get("transfer-encoding") != "chunked":
            raise RuntimeError(f"{self.partner}: stream answered {status} {headers}")
        return reader, writer

    async def read(self, reader: asyncio.StreamReader, keep_times: bool) -> None:
        raw, text = bytearray(), bytearray()
        while len(self.seen) < self.expect:
            data = await reader.read(1 << 16)
            if not data:
                self.errors.append("the broker ended the stream")
                return
            now = time.time_ns()  # one stamp per read: every event in it arrived by now
            had = len(self.pending)
            raw += data
            while (nl := raw.find(b"\r\n")) >= 0:  # de-chunk what is complete
                size = int(raw[:nl].split(b";")[0], 16)
                if size == 0 or len(raw) < nl + size + 4:
                    break
                text += raw[nl + 2 : nl + 2 + size]
                del raw[: nl + size + 4]
            while (end := text.find(b"\r\n\r\n")) >= 0:
                self._event(bytes(text[:end]), now, keep_times)
                del text[: end + 4]
            # Wake the acker for a first entry (it starts its clock) and for a full batch.
            if (not had and self.pending) or len(self.pending) >= self.ack_every:
                self.wake.set()

    def _event(self, block: bytes, now: int, keep_times: bool) -> None:
        kind, data = "message", b""
        for line in block.split(b"\r\n"):
            if line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b":"):
                self.heartbeats += 1
        if kind == "error":
            self.errors.append(data.decode())
        if not data or kind not in ("report", "recall", "gap"):
            return
        entry = json.loads(data)
        self.pending.append(entry["entry_id"])
        if kind != "report":
            return
        report_id = entry["report_id"]
        self.redelivered += entry["deliveries"] > 1
        self.seen[report_id] += 1
        if self.seen[report_id] == 1:
            self.first_ns = self.first_ns or now
            self.last_ns = now
            if keep_times:
                self.arrivals.append((report_id, now))

    async def ack_loop(self) -> None:
        # Acks go on their own keep-alive connection, one request in flight: while one is out
        # the next batch grows, so acking never holds up reading the stream.
        # An idle acker waits on the reader, with no timer, so a quiet stream costs nothing.
        while True:
            if not self.pending:
                if self.finished.is_set():
                    return
                await self.wake.wait()
                self.wake.clear()
                continue
            if len(self.pending) < self.ack_every and not self.finished.is_set():
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.ack_after_s)
            batch, self.pending = self.pending[:ACK_MAX], self.pending[ACK_MAX:]
            self.acked += await self._ack(batch)

    async def _ack(self, ids: list[str]) -> int:
        body = json.dumps({"ids": ids}).encode()
        for _attempt in range(2):  # the broker closes idle keep-alive connections: reopen once
            if self._ack_conn is None:
                self._ack_conn = await asyncio.open_connection("127.0.0.1", self.port)
            reader, writer = self._ack_conn
            request = signed_request(
                self.port, "POST", "/v1/inbox/ack", self.key, body, "application/json"
            )
            try:
                writer.write(request)
                status, answer, keep = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError):
                writer.close()
                self._ack_conn = None
                continue
            if not keep:
                writer.close()
                self._ack_conn = None
            self.ack_requests += 1
            if status != 200:
                self.errors.append(f"ack answered {status}: {answer[:200]!r}")
                return 0
            return int(json.loads(answer)["acked"])
        self.errors.append("ack failed twice")
        return 0

    def result(self, keep_times: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "partner": self.partner, "distinct": len(self.seen),
            "duplicates": sum(self.seen.values()) - len(self.seen), "redelivered": self.redelivered,
            "acked": self.acked, "ack_requests": self.ack_requests, "first_ns": self.first_ns,
            "last_ns": self.last_ns, "errors": self.errors[:5],
        }  # fmt: skip
        if keep_times:
            out["arrivals"] = self.arrivals
        return out


async def _subscribe(
    streams: list[Stream], keep_times: bool, go: Event, stop: Event, pipe: Connection
) -> dict[str, Any]:
    while not go.is_set():  # the parent starts every subscriber process at once
        await asyncio.sleep(0.005)
    opened = await asyncio.gather(*(s.open() for s in streams))
    pipe.send(("open",))
    cpu0, start_ns = cpu_s(), time.time_ns()
    pairs = list(zip(streams, opened, strict=True))
    readers = [asyncio.create_task(s.read(r, keep_times)) for s, (r, _w) in pairs]
    ackers = [asyncio.create_task(s.ack_loop()) for s in streams]
    # One watcher per process for the parent's stop (a multiprocessing Event cannot be awaited).
    while not all(r.done() for r in readers) and not stop.is_set():
        await asyncio.wait(readers, timeout=0.1)
    for reader in readers:
        reader.cancel()  # told to stop before every expected report came: count what did
    outcomes = await asyncio.gather(*readers, return_exceptions=True)
    for stream, outcome in zip(streams, outcomes, strict=True):
        if isinstance(outcome, Exception):
            stream.errors.append(f"{type(outcome).__name__}: {outcome}")
        stream.finished.set()
        stream.wake.set()
    await asyncio.gather(*ackers)  # the last batches are acked before the numbers are final
    for _r, writer in opened:
        writer.close()
    return {
        "cpu_s": round(cpu_s() - cpu0, 3), "start_ns": start_ns, "end_ns": time.time_ns(),
        "streams": [s.result(keep_times) for s in streams],
    }  # fmt: skip


def run_subscriber(
    port: int, keys: dict[str, tuple[str, bytes]], expect: int, keep_times: bool, acks: AckPolicy,
    go: Event, stop: Event, pipe: Connection,
) -> None:  # fmt: skip
    """Child process: one stream per partner of ``keys`` (partner → signing kid and key), each
    read until ``expect`` distinct reports came or ``stop`` is set."""
    pipe.send(("prepared",))

    async def main() -> dict[str, Any]:
        streams = [Stream(port, p, k, expect, acks) for p, k in keys.items()]
        return await _subscribe(streams, keep_times, go, stop, pipe)

    pipe.send(("done", asyncio.run(main())))
    pipe.close()
