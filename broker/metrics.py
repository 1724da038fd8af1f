"""Prometheus metrics, correct with several worker processes.

With one process the counters live in memory. ``tearline serve --workers N`` (N > 1) sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: prometheus-client then keeps every
worker's values in files there, and ``/metrics`` sums them, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)
REPORTS = Counter(
    "tearline_reports_total", "Reports posted, by outcome", ["outcome"], registry=REGISTRY
)
DELIVERIES = Counter(
    "tearline_deliveries_total", "Inbox entries handed to subscribers", registry=REGISTRY
)
WITHHELD = Counter(
    "tearline_withheld_total",
    "Entries withheld at delivery because policy changed",
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "tearline_dead_lettered_total",
    "Entries set aside for the operator, by cause",
    ["cause"],
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "tearline_auth_failures_total",
    "Requests refused as unauthenticated, by code",
    ["code"],
    registry=REGISTRY,
)

# Per broker process: with --workers N, each worker reloads (and counts) on its own.
POLICY_RELOADS = Counter(
    "tearline_policy_reloads_total",
    "Reloads of the policy folder, by outcome (applied, refused)",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("applied", "refused"):  # exposed at 0 before the first reload
    POLICY_RELOADS.labels(outcome=_outcome)


def render() -> bytes:
    """The exposition of every counter: this process's, or all workers' summed."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def prepare_multiprocess_dir(folder: Path) -> None:
    """An empty folder for the workers' metric files: values of a previous run must not count."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder.resolve())
