"""A real broker for each test: a real uvicorn on a loopback port, on the session's real Redis."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import yaml

from tearline.broker.app import create_app
from tearline.broker.reload import reload_now
from tearline.broker.runner import ThreadedBroker, broker_in_thread
from tearline.broker.settings import Settings
from tearline.broker.state import BrokerState
from tearline.clients.keyfile import Identity
from tests.factories import identity

T = TypeVar("T")

# Who is in the test world: GBR shares with USA (everything) and with EST and FIN (Baltic
# topics, up to CONFIDENTIAL); DEU is registered but in no agreement with GBR.
PARTNERS = {
    "GBR": "pq-hybrid",
    "USA": "pq-hybrid",
    "EST": "pq-hybrid",
    "FIN": "classic",
    "DEU": "classic",
}
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
    """A partner's (or the operator OPS-HQ's) TEST identity as the SDK holds it."""
    base = identity(partner, PARTNERS.get(partner, "classic"))  # type: ignore[arg-type]
    return Identity(base.partner, base.keys)


def write_policies(
    folder: Path, *, suspended: tuple[str, ...] = (), agreements: dict[str, Any] | None = None
) -> None:
    (folder / "agreements").mkdir(parents=True, exist_ok=True)
    (folder / "scheme.yaml").write_text(yaml.safe_dump(SCHEME))
    entries = [
        me(p).public_entry(status="suspended" if p in suspended else "active") for p in PARTNERS
    ]
    (folder / "partners.yaml").write_text(yaml.safe_dump({"partners": entries}, width=1 << 16))
    operator = me("OPS-HQ").public_entry()
    operator["keys"] = [k for k in operator["keys"] if k["use"] == "sig"]
    (folder / "operators.yaml").write_text(yaml.safe_dump({"operators": [operator]}, width=1 << 16))
    for old in (folder / "agreements").glob("*.yaml"):
        old.unlink()
    for aid, doc in (AGREEMENTS if agreements is None else agreements).items():
        (folder / "agreements" / f"{aid}.yaml").write_text(yaml.safe_dump(doc))


@dataclass
class RunningBroker:
    threaded: ThreadedBroker
    policies: Path
    settings: Settings

    @property
    def url(self) -> str:
        return self.threaded.url

    @property
    def state(self) -> BrokerState:
        return self.threaded.state

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.threaded.run(coro)

    def change_policies(self, **changes: Any) -> None:
        write_policies(self.policies, **changes)
        assert self.run(reload_now(self.state)), self.state.policy_error

    def redis(self) -> Any:
        """The broker's Redis, synchronously. Typed ``Any`` as in ``broker.store``: redis-py
        types replies as unions that ignore ``decode_responses``; these are always bytes."""
        return redis.Redis.from_url(self.settings.redis_url or "")


# Request budgets no test meets: for tests that send hundreds of requests, and of refusals,
# from 127.0.0.1 on purpose (the authorisation matrix, the OpenAPI fuzz). The product's
# defaults stay as they are; test_hostile_partners shows them at work.
UNLIMITED: dict[str, Any] = {
    "partner_rate_per_s": 1e6,
    "partner_burst": 1_000_000,
    "failed_auth_rate_per_s": 1e6,
    "failed_auth_burst": 1_000_000,
}


@contextmanager
def running_broker(redis_url: str, folder: Path, **settings: Any) -> Iterator[RunningBroker]:
    """A real broker on a flushed Redis, serving ``folder/policies`` (the test world's, unless
    something is there already), with ``settings`` over the tests' usual ones."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    policies = folder / "policies"
    if not policies.exists():
        write_policies(policies)
    usual: dict[str, Any] = {
        "visibility_timeout_ms": 1000,
        "max_deliveries": 3,
        "sse_heartbeat_s": 1,
    }
    config = Settings(
        redis_url=redis_url,
        policies_dir=policies,
        data_dir=folder / "data",
        **(usual | settings),
    )
    with broker_in_thread(create_app(config)) as threaded:
        yield RunningBroker(threaded, policies, config)


@pytest.fixture
def broker(redis_server: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    with running_broker(redis_server.url, tmp_path) as running:
        yield running
