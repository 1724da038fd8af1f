"""Prometheus metrics, correct with several worker processes, for operators only: the broker's
listener serves them to a signed operator request (broker.api.metrics), and ``tearline serve``
to Prometheus on a listener of their own (``TEARLINE_METRICS_PORT``, loopback by default).

With one process the counters live in memory. ``tearline serve --workers N`` (N > 1) sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: prometheus-client then keeps every
worker's values in files there, and ``/metrics`` sums them, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)

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


# A scrape that has not sent its request line and headers by then is dropped.
SCRAPE_TIMEOUT_S = 10.0


class _Scrape(BaseHTTPRequestHandler):
    """``GET /metrics`` and nothing else: the listener Prometheus scrapes."""

    timeout = SCRAPE_TIMEOUT_S
    server_version = "tearline-metrics"
    sys_version = ""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        body = render()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds is not news for the operator's log


@contextmanager
def metrics_listener(host: str, port: int) -> Iterator[ThreadingHTTPServer]:
    """Serve ``/metrics`` unauthenticated on ``host:port`` (loopback by default) in a thread,
    for Prometheus, which cannot sign requests. In ``tearline serve``'s own process, so with
    ``--workers N`` it sums every worker's values (:func:`render`)."""
    server = ThreadingHTTPServer((host, port), _Scrape)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="tearline-metrics", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=SCRAPE_TIMEOUT_S)
