"""A real broker for each test: a real uvicorn on a loopback port, on the session's real Redis."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import uvicorn
import yaml
from fastapi import FastAPI

from broker.app import create_app
from broker.settings import Settings
from broker.state import BrokerState
from clients.keyfile import Identity
from tests.factories import identity

T = TypeVar("T")

# Who is in the test world: GBR shares with USA (everything) and with EST and FIN (Baltic
# topics, up to CONFIDENTIAL); DEU is registered but in no agreement with GBR.
PARTNERS = {"GBR": "pq-hybrid", "USA": "pq-hybrid", "EST": "pq-hybrid", "FIN": "classic", "DEU": "classic"}
SCHEME = {
    "policy": "TEARLINE-TEST",
    "levels": ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"],
    "caveats": ["CYBER-OPS"],
    "groups": {"BALTIC": ["EST", "FIN"]},
}
AGREEMENTS = {
    "gbr-usa": {
        "id": "gbr-usa",
        "title": "UK-US exchange",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2036-01-01T00:00:00Z",
        "ceiling": "SECRET",
        "topics": ["*"],
        "parties": {"GBR": {}, "USA": {}},
    },
    "baltic": {
        "id": "baltic",
        "title": "Baltic cyber exchange",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2036-01-01T00:00:00Z",
        "ceiling": "CONFIDENTIAL",
        "topics": ["ransomware", "apt"],
        "parties": {"GBR": {}, "EST": {}, "FIN": {"clearance": "RESTRICTED"}},
    },
}


def me(partner: str) -> Identity:
    """A partner's TEST identity as the SDK holds it."""
    base = identity(partner, PARTNERS[partner])  # type: ignore[arg-type]
    return Identity(base.partner, base.keys)


def write_policies(folder: Path, *, suspended: tuple[str, ...] = (), agreements: dict[str, Any] | None = None) -> None:
    (folder / "agreements").mkdir(parents=True, exist_ok=True)
    (folder / "scheme.yaml").write_text(yaml.safe_dump(SCHEME))
    entries = [
        me(p).public_entry(status="suspended" if p in suspended else "active") for p in PARTNERS
    ]
    (folder / "partners.yaml").write_text(yaml.safe_dump({"partners": entries}, width=1 << 16))
    for old in (folder / "agreements").glob("*.yaml"):
        old.unlink()
    for aid, doc in (AGREEMENTS if agreements is None else agreements).items():
        (folder / "agreements" / f"{aid}.yaml").write_text(yaml.safe_dump(doc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningBroker:
    url: str
    policies: Path
    settings: Settings
    app: FastAPI
    loop: asyncio.AbstractEventLoop

    @property
    def state(self) -> BrokerState:
        state: BrokerState = self.app.state.broker
        return state

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the broker's own loop (its Redis connections live there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def change_policies(self, **changes: Any) -> None:
        write_policies(self.policies, **changes)
        assert self.run(self.state.reload_policies()), self.state.policy_error

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url or "")


@pytest.fixture
def broker(redis_server: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    policies = tmp_path / "policies"
    write_policies(policies)
    port = free_port()
    settings = Settings(
        redis_url=redis_server.url,
        policies_dir=policies,
        data_dir=tmp_path / "data",
        port=port,
        visibility_timeout_ms=1000,
        max_deliveries=3,
        sse_heartbeat_s=1,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the broker did not start")
        time.sleep(0.02)
    yield RunningBroker(f"http://127.0.0.1:{port}", policies, settings, app, loop)
    server.should_exit = True
    thread.join(timeout=10)
    loop.close()
