"""Delivery: how long a report takes from its post to a subscriber's Server-Sent Events stream
under an open-loop offered load, and how fast the broker drains full inboxes to 1 and to 20
subscribers.

Publisher and subscribers are separate OS processes (multiprocessing, spawn) talking raw
HTTP/1.1 (``_publisher``, ``_sse``), so their costs are theirs and are reported. Subscribers
only parse events and ack in batches; they never verify or decrypt. Each measurement runs a
real ``tearline serve`` (1 worker) on a flushed Redis with AOF everysec.

    PYTHONPATH=. .venv/bin/python -m bench.scenarios.delivery
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import secrets
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    ORIGINATOR,
    Fleet,
    Server,
    bench_redis,
    broker_env,
    flush,
    redis_info,
    start_broker,
    write_requests,
    wrk,
)
from bench.scenarios._publisher import run_publisher
from bench.scenarios._sse import run_subscriber
from tearline.broker.runner import free_port
from tearline.clients.httpsig import sign_request, signing_key_of
from tearline.clients.protocol.encoding import b64d

TOOL = (
    "asyncio raw HTTP/1.1 in processes of their own: an open-loop publisher, SSE subscribers "
    "that parse events and ack in batches (no verification, no decryption)"
)
CTX = multiprocessing.get_context("spawn")  # fork would copy the parent's loaded fleet and Redis
CONNECTIONS = 64  # publisher keep-alive connections: a slow answer must not delay the schedule
DRAIN_GRACE_S = 10.0  # after the last post, how long the tail may take to arrive
BATCH = 100  # envelopes per POST /v1/reports:batch (the broker's default limit)
#: (entries, seconds): ack when that many wait, or that long after the first. A live subscriber
#: acks soon; one draining a backlog acks in bigger batches (each ack is a signed request).
LATENCY_ACKS, DRAIN_ACKS = (50, 0.02), (200, 0.1)
#: The 20 subscribers share one asyncio process: as 20 processes on 2 cores they took a third
#: of the CPU and starved the broker (one quick run each: the broker at 68 % of a core and
#: 1,240 entries/s, against 98 % and 2,190 entries/s with one process).
SEPARATE_PROCESSES = False


def _key(fleet: Fleet, partner: str) -> tuple[str, bytes]:
    return signing_key_of(fleet.identities[partner], datetime.now(UTC))


def _spawn(target: Any, *args: Any) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    receiver, sender = CTX.Pipe(duplex=False)
    process = CTX.Process(target=target, args=(*args, sender), daemon=True)
    process.start()
    sender.close()  # so a child that dies shows up as EOF, not as a wait forever
    return process, receiver


def _expect(pipe: Connection, tag: str, timeout_s: float) -> Any:
    if not pipe.poll(timeout_s):
        raise RuntimeError(f"a bench child sent no {tag!r} within {timeout_s:.0f} s")
    try:
        message = pipe.recv()
    except EOFError:
        raise RuntimeError(f"a bench child exited before sending {tag!r}") from None
    if message[0] != tag:
        raise RuntimeError(f"a bench child sent {message[0]!r}, expected {tag!r}")
    return message[1] if len(message) > 1 else None


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1)."""
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2) if ordered else math.nan


def _report_id(envelope: bytes) -> str:
    return str(json.loads(b64d(json.loads(envelope)["header"]))["id"])


def _redis_cpu(url: str) -> float:
    info = redis_info(url, "cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _start(tmp: Path, fleet: Fleet, redis_url: str, name: str) -> Server:
    flush(redis_url)
    port = free_port()
    (tmp / name).mkdir(exist_ok=True)  # the broker's log goes beside its data folder
    return start_broker(broker_env(fleet, redis_url, tmp / name / "data", port), port, 1)


# --- 1. post → SSE latency -----------------------------------------------------------------


def e2e_latency(tmp: Path, fleet: Fleet, redis_url: str, quick: bool) -> dict[str, Any]:
    rates = [100, 300] if quick else [100, 250, 500, 750, 1000, 1500]
    seconds, warm = (2.0, 0.5) if quick else (5.0, 1.0)
    counts = [int(r * (warm + seconds)) for r in rates]
    # Distinct envelopes for every rate: a re-post is idempotent and would never be delivered.
    envelopes = fleet.envelopes(1, sum(counts))
    server = _start(tmp, fleet, redis_url, "e2e")
    rows, offset = [], 0
    try:
        for rate, n in zip(rates, counts, strict=True):
            bodies = envelopes[offset : offset + n]
            offset += n
            rows.append(_latency_run(server, fleet, redis_url, bodies, rate, warm))
    finally:
        server.stop()
    return {
        "tool": TOOL, "recipients": 1, "subscriber": "P001", "broker_workers": 1,
        "publisher_connections": CONNECTIONS, "seconds": seconds, "warmup_s": warm,
        "ack_batch": {"entries": LATENCY_ACKS[0], "after_ms": LATENCY_ACKS[1] * 1000},
        "rates": rows,
        "exactly_once": all(r["missing"] == 0 and r["duplicates"] == 0 for r in rows),
    }  # fmt: skip


def _latency_run(
    server: Server, fleet: Fleet, redis_url: str, bodies: list[bytes], rate: int, warm: float
) -> dict[str, Any]:
    go, stop = CTX.Event(), CTX.Event()
    go.set()  # one subscriber: it opens its stream as soon as it is up
    keys = {"P001": _key(fleet, "P001")}
    args = (server.port, keys, len(bodies), True, LATENCY_ACKS, go, stop)
    sub, sub_pipe = _spawn(run_subscriber, *args)
    _expect(sub_pipe, "prepared", 60)
    _expect(sub_pipe, "open", 30)
    broker0, redis0 = server.cpu_s(), _redis_cpu(redis_url)
    key = _key(fleet, ORIGINATOR)
    pub, pub_pipe = _spawn(run_publisher, server.port, key, bodies, float(rate), CONNECTIONS)
    sent = _expect(pub_pipe, "done", 120 + len(bodies) / rate)
    if not sub_pipe.poll(DRAIN_GRACE_S):
        stop.set()  # some never came: stop waiting for them, and count them missing
    got = _expect(sub_pipe, "done", 30)
    broker_cpu, redis_cpu = server.cpu_s() - broker0, _redis_cpu(redis_url) - redis0
    pub.join(10)
    sub.join(10)

    stream = got["streams"][0]
    arrived = dict(stream["arrivals"])
    ids = [_report_id(b) for b in bodies]
    posted = [i for i, s in enumerate(sent["status"]) if s == 201]
    posted_ids = {ids[i] for i in posted}
    since = sent["t0_ns"] + int(warm * 1e9)  # the warm-up is delivered and checked, not timed
    latency = [
        (arrived[ids[i]] - sent["send_ns"][i]) / 1e6
        for i in posted
        if ids[i] in arrived and sent["send_ns"][i] >= since
    ]
    elapsed = (sent["end_ns"] - sent["t0_ns"]) / 1e9
    achieved = len(posted) / elapsed if elapsed > 0 else 0.0
    delivered = len(posted_ids & arrived.keys())
    return {
        "offered_per_s": rate, "achieved_per_s": round(achieved, 1), "sent": len(bodies),
        "posted": len(posted), "non_2xx": len(bodies) - len(posted), "delivered": delivered,
        "missing": len(posted) - delivered, "duplicates": stream["duplicates"],
        "unexpected": len(arrived.keys() - posted_ids), "redelivered": stream["redelivered"],
        "timed": len(latency),
        "latency_ms": {"p50": _pct(latency, 0.50), "p95": _pct(latency, 0.95),
                       "p99": _pct(latency, 0.99), "max": _pct(latency, 1.0)},
        "late_sends": sent["late_sends"], "max_schedule_lag_ms": sent["max_lag_ms"],
        "receipt_id_ok": sent["first_receipt_id"] in posted_ids,
        "publisher_cpu_s": round(sent["cpu_s"], 2), "publisher_sign_cpu_s": sent["sign_cpu_s"],
        "subscriber_cpu_s": got["cpu_s"], "acks": stream["ack_requests"],
        "acked": stream["acked"], "broker_cpu_s": round(broker_cpu, 2),
        "broker_cpu_us_per_report": round(broker_cpu / max(1, len(posted)) * 1e6),
        "redis_cpu_s": round(redis_cpu, 2), "errors": stream["errors"],
        "saturated": achieved < 0.95 * rate or delivered < len(posted),
    }  # fmt: skip


# --- 2. draining full inboxes ---------------------------------------------------------------


def delivery_throughput(tmp: Path, fleet: Fleet, redis_url: str, quick: bool) -> dict[str, Any]:
    m = 2_000 if quick else 20_000
    envelopes = fleet.envelopes(20, m)
    recipients = fleet.recipients(20)
    many = [[p] for p in recipients] if SEPARATE_PROCESSES else [recipients]
    return {
        "tool": TOOL, "reports": m, "recipients_per_report": 20, "broker_workers": 1,
        "subscriber_processes": len(many), "streams_per_process": len(many[0]),
        "ack_batch": {"entries": DRAIN_ACKS[0], "after_ms": DRAIN_ACKS[1] * 1000},
        "note": "each run on a flushed Redis and a fresh broker, inboxes of P001..P020 "
                "pre-loaded with the same reports; one SSE stream per partner"
                + ("" if SEPARATE_PROCESSES else "; the 20 streams share one asyncio process "
                   "(20 processes on 2 cores starve the broker)"),
        "one_subscriber": _drain(tmp, fleet, redis_url, envelopes, [["P001"]], "drain-1"),
        "twenty_subscribers": _drain(tmp, fleet, redis_url, envelopes, many, "drain-20"),
    }  # fmt: skip


def _drain(
    tmp: Path, fleet: Fleet, redis_url: str, envelopes: list[bytes], groups: list[list[str]],
    name: str, acks: tuple[int, float] = DRAIN_ACKS,
) -> dict[str, Any]:  # fmt: skip
    m = len(envelopes)
    server = _start(tmp, fleet, redis_url, name)
    try:
        preload = _preload(server, fleet, envelopes, tmp / name)
        go, stop = CTX.Event(), CTX.Event()
        keys = [{p: _key(fleet, p) for p in group} for group in groups]
        children = [_spawn(run_subscriber, server.port, k, m, False, acks, go, stop) for k in keys]
        for _process, pipe in children:  # every child imported and waiting: start together
            _expect(pipe, "prepared", 120)
        broker0, redis0 = server.cpu_s(), _redis_cpu(redis_url)
        go_ns = time.time_ns()
        go.set()
        for _process, pipe in children:
            _expect(pipe, "open", 60)
        deadline = time.monotonic() + 60 + m * sum(map(len, groups)) / 500
        results = []
        for _process, pipe in children:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                stop.set()  # too slow: stop everyone, report what came
            results.append(_expect(pipe, "done", 30))
        broker_cpu, redis_cpu = server.cpu_s() - broker0, _redis_cpu(redis_url) - redis0
        for process, _pipe in children:
            process.join(10)
    finally:
        server.stop()

    streams = [s for r in results for s in r["streams"]]
    drain_s = (max(s["last_ns"] for s in streams) - go_ns) / 1e9
    total = sum(s["distinct"] for s in streams)
    per = [s["distinct"] / ((s["last_ns"] - go_ns) / 1e9) for s in streams if s["last_ns"]]
    return {
        "subscribers": len(streams), "entries": total, "drain_s": round(drain_s, 2),
        "entries_per_s": round(total / drain_s, 1),
        "per_subscriber_entries_per_s": {"min": round(min(per), 1), "max": round(max(per), 1),
                                         "mean": round(sum(per) / len(per), 1)},
        "missing": m * len(streams) - total, "duplicates": sum(s["duplicates"] for s in streams),
        "redelivered": sum(s["redelivered"] for s in streams),
        "acked": sum(s["acked"] for s in streams),
        "ack_requests": sum(s["ack_requests"] for s in streams),
        "broker_cpu_s": round(broker_cpu, 2),
        "broker_cpu_us_per_entry": round(broker_cpu / max(1, total) * 1e6),
        "redis_cpu_s": round(redis_cpu, 2),
        "subscribers_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "preload": preload, "errors": [e for s in streams for e in s["errors"]][:5],
    }  # fmt: skip


def _preload(server: Server, fleet: Fleet, envelopes: list[bytes], folder: Path) -> dict[str, Any]:
    start = time.monotonic()
    ok = asyncio.run(_post_batches(server.port, _key(fleet, ORIGINATOR), envelopes))
    how = "POST /v1/reports:batch"
    if ok is None:  # no batch endpoint on this broker: single posts, driven by wrk
        how = "POST /v1/reports (wrk)"
        requests = write_requests(folder / "preload.req", fleet, server.url + "/v1/reports",
                                  envelopes)  # fmt: skip
        load = wrk(server.port, requests, len(envelopes), 2 + len(envelopes) / 300)
        ok = int(load.ok_per_s * load.seconds)
    seconds = time.monotonic() - start
    return {"how": how, "accepted": ok, "seconds": round(seconds, 2),
            "reports_per_s": round(len(envelopes) / seconds, 1)}  # fmt: skip


async def _post_batches(port: int, key: tuple[str, bytes], envelopes: list[bytes]) -> int | None:
    """Reports accepted, posted BATCH at a time on 2 connections; None without a batch route."""
    url = f"http://127.0.0.1:{port}/v1/reports:batch"
    batches = [
        b"\n".join(envelopes[i : i + BATCH]) + b"\n" for i in range(0, len(envelopes), BATCH)
    ]
    accepted, missing_route = 0, False

    async def worker(client: httpx.AsyncClient, mine: list[bytes]) -> None:
        nonlocal accepted, missing_route
        for body in mine:
            headers = sign_request(
                "POST", url, {}, body, key_id=key[0], private_key=key[1],
                created=int(time.time()), nonce=secrets.token_urlsafe(16),
            )  # fmt: skip
            headers["Content-Type"] = "application/x-ndjson"
            answer = await client.post(url, content=body, headers=headers)
            if answer.status_code in (404, 405):
                missing_route = True
                return
            answer.raise_for_status()
            accepted += sum(r["status"] == 201 for r in answer.json()["results"])

    async with httpx.AsyncClient(timeout=60) as client:
        await worker(client, batches[:1])  # a first one alone: does the route exist?
        if not missing_route:
            await asyncio.gather(*(worker(client, batches[1 + i :: 2]) for i in range(2)))
    return None if missing_route else accepted


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        fleet = Fleet(tmp / "policies", 25)
        with bench_redis(tmp) as redis_server:
            out = {
                "e2e_latency": e2e_latency(tmp, fleet, redis_server.url, True),
                "delivery_throughput": delivery_throughput(tmp, fleet, redis_server.url, True),
            }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
