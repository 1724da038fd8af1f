"""Admitting TCP connections before any byte is read (DESIGN §11), and the descriptor limit.

Every connection a client opens costs the broker a file descriptor until it closes, signed or
not. With the usual limit of 1,024, one client holding a thousand half-sent requests left no
descriptor for other partners, for the Redis pool, or for reading the policy folder. So, per
broker process:

- at most ``max_connections_per_address`` connections from one source address, and at most
  ``max_connections`` in all, lowered to fit under ``RLIMIT_NOFILE`` with room kept for the
  broker's own files (its Redis pools and ``reserved_file_descriptors``);
- a connection past either bound is reset as soon as it is accepted: no parser, no timer, no
  task, nothing read;
- at start, the soft ``RLIMIT_NOFILE`` is raised to the hard limit where the system allows.

The source address is the TCP peer's: behind a proxy, every client shares the proxy's, so an
operator raises ``max_connections_per_address`` there (X-Forwarded-For is read only later, by
the app, and only from a trusted proxy).
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import Counter

from tearline.broker.metrics import REGISTRY
from tearline.broker.settings import Settings

log = logging.getLogger("tearline.broker")

# Never fewer connections than this, however low the descriptor limit: a broker that admits
# none is down. Below it the operator is told to raise the limit.
MIN_CONNECTIONS: Final = 16
# One log line per refusal reason at most this often: a flood must not become a log flood.
REFUSAL_LOG_INTERVAL_S: Final = 10.0

CONNECTIONS_REFUSED = Counter(
    "tearline_connections_refused_total",
    "Connections reset at accept, by the bound they were past (per_address, total)",
    ["reason"],
    registry=REGISTRY,
)
for _reason in ("per_address", "total"):
    CONNECTIONS_REFUSED.labels(reason=_reason)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit, where allowed; the (soft, hard) after.

    Inherited by the worker processes uvicorn starts and by the embedded redis-server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)
    return soft, hard


def connection_limit(settings: Settings, soft_nofile: int | None = None) -> int:
    """How many client connections this process admits in all: ``max_connections``, lowered to
    leave the broker's own descriptors free under the soft RLIMIT_NOFILE."""
    if soft_nofile is None:
        soft_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_nofile == resource.RLIM_INFINITY:
        return settings.max_connections
    own = (
        settings.redis_pool_size
        + settings.blocking_readers_max
        + 1  # the ingest pipeline's connection
        + settings.reserved_file_descriptors
    )
    room = soft_nofile - own
    if room < MIN_CONNECTIONS:
        log.warning(
            "the open files limit (%d) leaves room for %d connections after the broker's own "
            "%d descriptors; admitting %d: raise `ulimit -n`, or lower redis_pool_size",
            soft_nofile, max(room, 0), own, MIN_CONNECTIONS,
        )  # fmt: skip
        return MIN_CONNECTIONS
    return min(settings.max_connections, room)


@dataclass
class Admission:
    """The connections one server holds, in all and per source address."""

    total_max: int
    per_address_max: int
    total: int = 0
    by_address: dict[str, int] = field(default_factory=dict)
    _logged_at: dict[str, float] = field(default_factory=dict)

    def admit(self, address: str) -> str | None:
        """Count a new connection from ``address``; None if admitted, else the bound it is
        past (and nothing is counted)."""
        held = self.by_address.get(address, 0)
        reason = (
            "total"
            if self.total >= self.total_max
            else "per_address"
            if held >= self.per_address_max
            else None
        )
        if reason is not None:
            CONNECTIONS_REFUSED.labels(reason=reason).inc()
            self._log(reason, address)
            return reason
        self.total += 1
        self.by_address[address] = held + 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)  # the map holds only addresses with connections

    def _log(self, reason: str, address: str) -> None:
        now = time.monotonic()
        if now - self._logged_at.get(reason, -REFUSAL_LOG_INTERVAL_S) < REFUSAL_LOG_INTERVAL_S:
            return
        self._logged_at[reason] = now
        if reason == "total":
            log.warning(
                "connections refused: this process holds %d, its limit (max_connections, under "
                "the open files limit)", self.total,
            )  # fmt: skip
        else:
            log.warning(
                "connections from %s refused: it holds %d, max_connections_per_address",
                address, self.by_address.get(address, 0),
            )  # fmt: skip
