"""Ingest against its ceiling: single reports at 1, 5 and 20 recipients and batches, with 1 and 2
workers, each broker run alternated with a ceiling run of the same size so drift hits both.

The broker does everything it does in production on each report: the request signature, the
envelope signature, the engine's decision for every slot, the atomic store with its audit
entry, the signed receipt, the JSON access log line. AOF is on (everysec).
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import (
    Fleet,
    Load,
    Server,
    broker_env,
    flush,
    start_broker,
    start_ceiling,
    write_requests,
    wrk,
)
from tearline.broker.runner import free_port

BATCH_SIZE = 50
CONNECTIONS = 64


def _run(server: Server, requests: Path, count: int, seconds: float) -> dict[str, Any]:
    cpu = server.cpu_s()
    load: Load = wrk(server.port, requests, count, seconds, CONNECTIONS)
    used = server.cpu_s() - cpu
    row = load.to_dict()
    row["server_cpu_s"] = round(used, 2)
    row["server_cpu_us_per_request"] = round(used / max(1, load.sent) * 1e6)
    return row


def _batches(bodies: list[bytes], size: int) -> list[bytes]:
    return [b"\n".join(bodies[i : i + size]) + b"\n" for i in range(0, len(bodies), size)]


def ingest(tmp: Path, fleet: Fleet, redis_url: str, quick: bool) -> dict[str, Any]:
    seconds = 2.0 if quick else 5.0
    repeats = 1 if quick else 3
    recipient_counts = (5,) if quick else (1, 5, 20)
    # Enough distinct reports that the broker never runs out in a run; the ceiling, which
    # does not look inside, may (it then resends the last one, the same work for it).
    counts = {1: 12_000, 5: 16_000, 20: 6_000} if not quick else {5: 5_000}
    port = free_port()
    env = broker_env(fleet, redis_url, tmp / "data", port)
    url = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    for workers in (1, 2):
        for recipients in recipient_counts:
            bodies = fleet.envelopes(recipients, counts[recipients])
            batch_bodies = _batches(bodies, BATCH_SIZE)
            for repeat in range(repeats):
                for kind in ("ceiling", "broker", "batch"):
                    if kind == "batch" and recipients != 5:
                        continue
                    flush(redis_url)
                    start = start_ceiling if kind == "ceiling" else start_broker
                    server = start(env, port, workers)
                    try:
                        path = tmp / f"{kind}.requests"
                        if kind == "batch":
                            write_requests(
                                path, fleet, f"{url}/v1/reports:batch", batch_bodies,
                                "application/x-ndjson",
                            )  # fmt: skip
                            row = _run(server, path, len(batch_bodies), seconds)
                            row["reports_per_s"] = round(row["ok_per_s"] * BATCH_SIZE, 1)
                        else:
                            write_requests(path, fleet, f"{url}/v1/reports", bodies)
                            row = _run(server, path, len(bodies), seconds)
                            row["reports_per_s"] = row["ok_per_s"]
                    finally:
                        server.stop()
                    row |= {"kind": kind, "workers": workers, "recipients": recipients}
                    row["repeat"] = repeat
                    if kind == "ceiling":
                        row["requests_exhausted"] = False  # the ceiling may resend: see above
                    rows.append(row)
    return {"runs": rows, "summary": summarise(rows), "batch_size": BATCH_SIZE}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (kind, workers, recipients), each with its ratio to the same-run ceiling."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["kind"], row["workers"], row["recipients"]), []).append(row)
    out = []
    for (kind, workers, recipients), runs in sorted(groups.items()):
        ceiling = groups.get(("ceiling", workers, recipients))
        median = statistics.median(r["reports_per_s"] for r in runs)
        base = statistics.median(r["reports_per_s"] for r in ceiling) if ceiling else None
        out.append(
            {
                "kind": kind,
                "workers": workers,
                "recipients": recipients,
                "reports_per_s": round(median, 1),
                "vs_ceiling": round(median / base, 3) if base else None,
                "p50_ms": statistics.median(r["latency_ms"].get("p50", 0) for r in runs),
                "p99_ms": statistics.median(r["latency_ms"].get("p99", 0) for r in runs),
                "server_cpu_us_per_request": statistics.median(
                    r["server_cpu_us_per_request"] for r in runs
                ),
                "non_2xx": sum(r["non_2xx"] for r in runs),
                "exhausted": any(r["requests_exhausted"] for r in runs),
                "runs": len(runs),
            }
        )
    return out


def profile(tmp: Path, fleet: Fleet, redis_url: str, out: Path, seconds: float) -> Path | None:
    """A py-spy flame graph (SVG) of one broker worker taking single reports at full load."""
    import shutil
    import sys

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    flush(redis_url)
    port = free_port()
    env = broker_env(fleet, redis_url, tmp / "data", port)
    bodies = fleet.envelopes(5, 16_000 if seconds > 3 else 5_000)
    server = start_broker(env, port, 1)
    try:
        path = write_requests(tmp / "profile.requests", fleet, f"{server.url}/v1/reports", bodies)
        duration = str(max(1, round(seconds)))
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(server.process.pid), "--output", str(out),
             "--format", "flamegraph", "--duration", duration, "--rate", "200", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wrk(server.port, path, len(bodies), seconds + 1, CONNECTIONS)
        recorder.wait(60)
    finally:
        server.stop()
    return out if out.exists() else None
