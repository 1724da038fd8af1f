"""The results of one `python -m bench` run as JSON, a Markdown table and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {
    "ingest_vs_ceiling": (">=", 0.60),
    "ingest_vs_ceiling_2_workers": (">=", 0.60),
    "batch_vs_ceiling": (">=", 3.0),
    "e2e_p50_ms": ("<=", 2.0),
    "e2e_p99_ms": ("<=", 15.0),
    "decision_us_at_500x1000": ("<=", 20.0),
    "ingest_vs_medallion": (">=", 50.0),
}


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, (op, target) in TARGETS.items():
        value = results.get(key)
        if not isinstance(value, int | float):
            out[key] = "not measured"
            continue
        met = value >= target if op == ">=" else value <= target
        out[key] = "met" if met else f"missed ({value:g} against {op} {target:g})"
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Tearline benchmark, {results['date']} ({results['size']})", ""]
    lines += [f"Machine: {results['machine']}", ""]
    lines += ["| figure | value | target | verdict |", "| --- | --- | --- | --- |"]
    for key, (op, target) in TARGETS.items():
        value = results.get(key)
        shown = "—" if value is None else f"{value:g}"
        lines.append(f"| `{key}` | {shown} | {op} {target:g} | {results['verdicts'][key]} |")
    lines += ["", "## Ingest (medians; ratio to the ceiling measured alternately in the same run)"]
    lines += [
        "",
        "| kind | workers | recipients | reports/s | vs ceiling | p50 ms | p99 ms | "
        "server CPU µs/request |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results.get("ingest", {}).get("summary", []):
        ratio = "—" if row["vs_ceiling"] is None else f"{row['vs_ceiling']:.2f}"
        lines.append(
            f"| {row['kind']} | {row['workers']} | {row['recipients']} | "
            f"{row['reports_per_s']:,.0f} | {ratio} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['server_cpu_us_per_request']:,.0f} |"
        )
    e2e = results.get("e2e", {}).get("rates", [])
    if e2e:
        lines += ["", "## Post → SSE delivery latency (open-loop publisher, one subscriber)", ""]
        lines.append(
            "| offered/s | achieved/s | posted | delivered | p50 ms | p95 ms | p99 ms | max ms "
            "| broker CPU µs/report | saturated |"
        )
        lines += ["| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in e2e:
            q = row.get("latency_ms") or {}
            lines.append(
                f"| {row.get('offered_per_s')} | {row.get('achieved_per_s', 0):,.0f} | "
                f"{row.get('posted')} | {row.get('delivered')} | {q.get('p50', 0):.2f} | "
                f"{q.get('p95', 0):.2f} | {q.get('p99', 0):.2f} | {q.get('max', 0):.2f} | "
                f"{row.get('broker_cpu_us_per_report', 0):,} | {row.get('saturated')} |"
            )
    for title, key in (
        ("Delivery throughput", "delivery"),
        ("Scaling with partners", "scaling_partners"),
        ("Scaling with inbox depth", "scaling_inbox"),
        ("Redis memory per queued report", "memory"),
        ("Policy decision time", "decisions"),
        ("Governance: a node verifying the broker, on against off", "governance"),
        ("Peer: medallion (TAXII 2.1 reference server)", "medallion"),
    ):
        if key in results:
            lines += ["", f"## {title}", "", "```json", json.dumps(results[key], indent=1), "```"]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Throughput per system (left) and delivery latency against offered load (right)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bars: list[tuple[str, float]] = []
    for row in results.get("ingest", {}).get("summary", []):
        if row["recipients"] == 5:
            bars.append((f"{row['kind']}\n{row['workers']}w", row["reports_per_s"]))
    medallion = results.get("medallion", {}).get("objects_per_s")
    if isinstance(medallion, int | float):
        bars.append(("medallion\n(objects)", medallion))
    if bars:
        names, values = zip(*bars, strict=True)
        left.bar(names, values, color="#4c72b0")
        left.set_yscale("log")
        left.set_ylabel("reports (or objects) per second, log scale")
        left.set_title("Ingest, 5 recipients, 64 connections")
    e2e = [r for r in results.get("e2e", {}).get("rates", []) if r.get("latency_ms")]
    if e2e:
        achieved = [r["achieved_per_s"] for r in e2e]
        for q in ("p50", "p95", "p99"):
            right.plot(achieved, [r["latency_ms"][q] for r in e2e], marker="o", label=q)
        right.set_xlabel("achieved publish rate (reports/s)")
        right.set_ylabel("post → SSE latency (ms)")
        right.set_yscale("log")
        right.legend()
        right.set_title("Delivery latency, 1 worker, 1 subscriber")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
