"""How cost grows: ingest rate at 10, 100 and 500 partners; ingest into an empty inbox and into one
a million entries deep; Redis memory per queued report against the envelope's size; and the
engine's decision time at 500 partners and up to 1,000 agreements."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

import redis

from bench.harness import Fleet, broker_env, flush, redis_info, start_broker, write_requests, wrk
from tearline.broker.runner import free_port
from tearline.broker.store import inbox_key

CONNECTIONS = 64

# Fills an inbox with entries that look like the broker's (report id, originator) in chunks,
# server-side: a million XADDs from the client would take minutes of round trips.
_FILL_LUA = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'report', ARGV[2], 'originator', 'P000')
end
return redis.call('XLEN', KEYS[1])
"""


def _ingest_rate(
    tmp: Path, fleet: Fleet, redis_url: str, seconds: float, *, flush_first: bool = True
) -> dict[str, Any]:
    if flush_first:
        flush(redis_url)
    port = free_port()
    server = start_broker(broker_env(fleet, redis_url, tmp / "data", port), port, 1)
    try:
        bodies = fleet.envelopes(5, 8_000 if seconds > 3 else 4_000)
        path = write_requests(tmp / "scale.requests", fleet, f"{server.url}/v1/reports", bodies)
        cpu = server.cpu_s()
        load = wrk(server.port, path, len(bodies), seconds, CONNECTIONS)
        used = server.cpu_s() - cpu
    finally:
        server.stop()
    return {
        "reports_per_s": round(load.ok_per_s, 1),
        "p99_ms": load.latency_ms.get("p99"),
        "server_cpu_us_per_request": round(used / max(1, load.sent) * 1e6),
        "non_2xx": load.non_2xx,
        "exhausted": load.exhausted,
    }


def partners(tmp: Path, redis_url: str, quick: bool) -> list[dict[str, Any]]:
    seconds = 2.0 if quick else 4.0
    rows = []
    for n in (10, 100, 500):
        fleet = Fleet(tmp / f"policies-{n}", n)
        rows.append({"partners": n, "agreements": n} | _ingest_rate(tmp, fleet, redis_url, seconds))
    return rows


def inbox_depth(tmp: Path, fleet: Fleet, redis_url: str, quick: bool) -> list[dict[str, Any]]:
    seconds = 2.0 if quick else 4.0
    deep = 100_000 if quick else 1_000_000
    rows = [{"inbox_entries": 0} | _ingest_rate(tmp, fleet, redis_url, seconds)]
    flush(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        fill = client.register_script(_FILL_LUA)
        key = inbox_key(fleet.recipients(1)[0])  # the first recipient of every report
        client.xgroup_create(key, "tl", id="0", mkstream=True)
        filled = 0
        while filled < deep:
            filled = int(fill(keys=[key], args=[min(100_000, deep - filled), "0" * 36]))
    finally:
        client.close()
    rows.append(
        {"inbox_entries": filled} | _ingest_rate(tmp, fleet, redis_url, seconds, flush_first=False)
    )
    return rows


def memory(tmp: Path, fleet: Fleet, redis_url: str, quick: bool) -> dict[str, Any]:
    """Redis memory per queued report (5 recipients), from ``used_memory`` before and after."""
    reports = 2_000 if quick else 10_000
    bodies = fleet.envelopes(5, reports)
    flush(redis_url)
    port = free_port()
    server = start_broker(broker_env(fleet, redis_url, tmp / "data", port), port, 1)
    try:
        time.sleep(0.5)
        before = int(redis_info(redis_url, "memory")["used_memory"])
        path = write_requests(tmp / "memory.requests", fleet, f"{server.url}/v1/reports", bodies)
        # Long enough to send them all at the slowest rate seen; wrk then resends the last
        # request, which is refused as a replay and stores nothing.
        wrk(server.port, path, len(bodies), len(bodies) / 250 + 2, CONNECTIONS)
        after = int(redis_info(redis_url, "memory")["used_memory"])
        client = redis.Redis.from_url(redis_url)
        stored = sum(1 for _ in client.scan_iter("tl:report:*", count=1000))
        client.close()
    finally:
        server.stop()
    envelope = statistics.mean(len(b) for b in bodies)
    per_report = (after - before) / stored
    return {
        "reports": stored,
        "recipients": 5,
        "envelope_bytes": round(envelope),
        "redis_bytes_per_report": round(per_report),
        "redis_bytes_vs_envelope": round(per_report / envelope, 2),
        "includes": "envelope hash, 5 inbox entries, audit entry, request nonce",
    }


def decisions(quick: bool) -> dict[str, Any]:
    """The engine alone: microseconds per decision for one recipient at 500 partners, as the
    agreements grow from 10 to 1,000 (bench/bench_engine.py's policies)."""
    from bench.bench_engine import NOW, build
    from tearline.clients.protocol.label import Label

    rng = random.Random(7)
    label = Label("RESTRICTED", ["ALL"], "AMBER", topics=["apt"])  # the group of all 500
    rows = []
    for agreements in (10, 100, 1000):
        policy = build(500, agreements, rng)
        originators = [f"P{i:04d}" for i in range(20)]
        for o in originators:
            policy.decide(label, o, "classic", NOW)
        samples = []
        for _ in range(3 if quick else 7):
            start = time.perf_counter()
            calls = 0
            while (elapsed := time.perf_counter() - start) < (0.05 if quick else 0.2):
                policy.decide(label, originators[calls % 20], "classic", NOW)
                calls += 1
            samples.append(elapsed / (calls * 500) * 1e6)
        median_us = round(statistics.median(samples), 3)
        rows.append({"partners": 500, "agreements": agreements, "us_per_decision": median_us})
    return {"rows": rows, "us_per_decision_at_1000": rows[-1]["us_per_decision"]}
