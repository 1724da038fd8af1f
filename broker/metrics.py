"""Prometheus metrics. Per process: with several uvicorn workers, scrape each or aggregate."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

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
AUTH_FAILURES = Counter(
    "tearline_auth_failures_total",
    "Requests refused as unauthenticated, by code",
    ["code"],
    registry=REGISTRY,
)
