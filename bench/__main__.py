"""`python -m bench [--quick] [--only NAME ...]`: every benchmark in one run, written to
``bench/results/<date>.json``, ``.md`` and ``.png`` (and a flame graph ``.svg``).

Each scenario starts what it needs as separate processes on loopback: a real redis-server
(AOF everysec), `tearline serve`, the ceiling app, medallion in its own virtual environment,
wrk or the bench's own open-loop publisher. Ratios compare figures measured in this run only.
``--quick`` is the size CI runs: every scenario, for a second or two each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness, report
from bench.scenarios import ingest as ingest_scenario
from bench.scenarios import scaling

RESULTS = Path(__file__).parent / "results"
SCENARIOS = (
    "decisions",
    "ingest",
    "profile",
    "scaling",
    "memory",
    "e2e",
    "delivery",
    "governance",
    "medallion",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the CI size: seconds per scenario")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    chosen = args.only or list(SCENARIOS)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "date": stamp,
        "size": "quick" if args.quick else "full",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "scenarios": chosen,
        "timings_s": {},
    }
    with tempfile.TemporaryDirectory(prefix="tearline-bench-") as name:
        tmp = Path(name)
        fleet = harness.Fleet(tmp / "policies", 25)
        with harness.bench_redis(tmp) as server:
            steps: dict[str, Callable[[], None]] = {
                "decisions": lambda: results.update(decisions=scaling.decisions(args.quick)),
                "ingest": lambda: results.update(
                    ingest=ingest_scenario.ingest(tmp, fleet, server.url, args.quick)
                ),
                "profile": lambda: results.update(
                    profile=_profile(tmp, fleet, server.url, args.out / f"{stamp}.svg", args)
                ),
                "scaling": lambda: results.update(
                    scaling_partners=scaling.partners(tmp, server.url, args.quick),
                    scaling_inbox=scaling.inbox_depth(tmp, fleet, server.url, args.quick),
                ),
                "memory": lambda: results.update(
                    memory=scaling.memory(tmp, fleet, server.url, args.quick)
                ),
                "e2e": lambda: results.update(e2e=_e2e(tmp, fleet, server.url, args.quick)),
                "delivery": lambda: results.update(
                    delivery=_delivery(tmp, fleet, server.url, args.quick)
                ),
                "governance": lambda: results.update(
                    governance=_governance(tmp, server.url, args.quick)
                ),
                "medallion": lambda: results.update(medallion=_medallion(args.quick)),
            }
            failed = []
            for step in chosen:
                started = time.monotonic()
                print(f"bench: {step} …", file=sys.stderr, flush=True)
                try:
                    steps[step]()
                except Exception as exc:  # a scenario that broke must not lose the others
                    failed.append(step)
                    results.setdefault("errors", {})[step] = f"{type(exc).__name__}: {exc}"
                    traceback.print_exc()
                results["timings_s"][step] = round(time.monotonic() - started, 1)
                # Written after every scenario: a long run that dies keeps what it measured.
                Path(f"{args.out / stamp}.partial.json").write_text(json.dumps(results, indent=2))
    Path(f"{args.out / stamp}.partial.json").unlink(missing_ok=True)
    results |= headline(results)
    results["verdicts"] = report.verdicts(results)
    base = args.out / stamp
    Path(f"{base}.json").write_text(json.dumps(results, indent=2) + "\n")
    Path(f"{base}.md").write_text(report.markdown(results))
    plotted = report.plot(results, Path(f"{base}.png"))
    print(report.markdown(results))
    print(f"written: {base}.json, {base}.md" + (f", {plotted}" if plotted else ""))
    if failed:
        print(f"bench: these scenarios failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _profile(
    tmp: Path, fleet: harness.Fleet, url: str, out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    svg = ingest_scenario.profile(tmp, fleet, url, out, 2.0 if args.quick else 6.0)
    return {"flamegraph": str(svg) if svg else None, "tool": "py-spy record, 200 Hz"}


def _e2e(tmp: Path, fleet: harness.Fleet, url: str, quick: bool) -> dict[str, Any]:
    from bench.scenarios.delivery import e2e_latency

    return e2e_latency(tmp, fleet, url, quick)


def _delivery(tmp: Path, fleet: harness.Fleet, url: str, quick: bool) -> dict[str, Any]:
    from bench.scenarios.delivery import delivery_throughput

    return delivery_throughput(tmp, fleet, url, quick)


def _governance(tmp: Path, url: str, quick: bool) -> dict[str, Any]:
    from bench.scenarios.governance import governance

    return governance(tmp, url, quick)


def _medallion(quick: bool) -> dict[str, Any]:
    from bench.peers.medallion import measure, stix_objects

    seconds = 2.0 if quick else 5.0
    objects = stix_objects(int(seconds * 400) + 200)
    cache = Path(__file__).parent / ".cache"
    return measure(
        objects, connections=ingest_scenario.CONNECTIONS, seconds=seconds, cache_dir=cache
    )


def _summary(results: dict[str, Any], kind: str, workers: int, recipients: int) -> dict[str, Any]:
    for row in results.get("ingest", {}).get("summary", []):
        if (row["kind"], row["workers"], row["recipients"]) == (kind, workers, recipients):
            return dict(row)
    return {}


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue names, at the top level of the results."""
    out: dict[str, Any] = {}
    single = _summary(results, "broker", 1, 5)
    batch = _summary(results, "batch", 1, 5)
    out["ingest_vs_ceiling"] = single.get("vs_ceiling")
    out["ingest_vs_ceiling_2_workers"] = _summary(results, "broker", 2, 5).get("vs_ceiling")
    out["batch_vs_ceiling"] = batch.get("vs_ceiling")
    out["batch_vs_ceiling_2_workers"] = _summary(results, "batch", 2, 5).get("vs_ceiling")
    medallion = results.get("medallion", {}).get("objects_per_s")
    if medallion and single:
        out["ingest_vs_medallion"] = round(single["reports_per_s"] / medallion, 1)
    if medallion and batch:
        out["batch_vs_medallion"] = round(batch["reports_per_s"] / medallion, 1)
    rates = [r for r in results.get("e2e", {}).get("rates", []) if r.get("latency_ms")]
    peak = (_summary(results, "broker", 1, 1) or single).get("reports_per_s")
    if rates:
        # "At half of peak load": the run nearest half the single-report ingest peak that
        # kept up with its offered rate (a saturated run's latency is its queue's).
        steady = [r for r in rates if not r.get("saturated")] or rates
        half = (peak or 0) / 2
        chosen = min(steady, key=lambda r: abs(r["achieved_per_s"] - half))
        out["e2e_p50_ms"] = chosen["latency_ms"]["p50"]
        out["e2e_p99_ms"] = chosen["latency_ms"]["p99"]
        out["e2e_at_reports_per_s"] = chosen["achieved_per_s"]
        out["e2e_peak_reports_per_s"] = peak
    decisions = results.get("decisions", {})
    if decisions:
        out["decision_us_at_500x1000"] = decisions["us_per_decision_at_1000"]
    return out


if __name__ == "__main__":
    sys.exit(main())
