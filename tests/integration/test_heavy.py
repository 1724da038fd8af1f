"""Heavy runs (``make heavy``): many reports under random labels, and a Redis restart.

Sized by TEARLINE_HEAVY_SCALE (1 in CI). Each run checks exactly who received what against the
engine's own decisions: nobody receives a report the policy does not entitle them to, and every
entitled recipient receives it exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from tearline import Label
from tearline.broker.app import create_app
from tearline.broker.embedded import EmbeddedRedis
from tearline.broker.runner import broker_in_thread
from tearline.broker.settings import Settings
from tearline.clients.partner import AsyncPartner
from tearline.clients.sync import Partner
from tests.integration.conftest import PARTNERS, RunningBroker, me, write_policies

pytestmark = pytest.mark.heavy
SCALE = int(os.environ.get("TEARLINE_HEAVY_SCALE", "1"))
LEVELS = ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"]
TOPICS = ["ransomware", "apt", "maritime"]
BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}


def random_label(rng: random.Random, originator: str) -> Label:
    others = [p for p in PARTNERS if p != originator]
    rel_to = rng.sample([*others, "BALTIC"], k=rng.randint(1, 3))
    return Label(
        rng.choice(LEVELS),
        rel_to,
        rng.choice(["GREEN", "AMBER"]),
        topics=rng.sample(TOPICS, k=rng.randint(0, 2)),
    )


async def drain(node: AsyncPartner) -> list[str]:
    got: list[str] = []
    while True:
        batch = await node.inbox(limit=100, wait_s=0.5)
        if not batch:
            return got
        got += [r.id for r in batch]
        await node.ack(r.entry_id for r in batch)


async def test_concurrent_publishers_deliver_exactly_to_the_entitled(broker: RunningBroker) -> None:
    rng = random.Random(20261127)
    nodes = {p: AsyncPartner(broker.url, me(p)) for p in PARTNERS}
    expected: dict[str, set[str]] = {p: set() for p in PARTNERS}
    try:

        async def publisher(originator: str, count: int) -> None:
            for _ in range(count):
                label = random_label(rng, originator)
                decisions = await nodes[originator].preview(label)
                if not any(d.granted for d in decisions.values()):
                    continue
                receipt = await nodes[originator].publish(BUNDLE, label)
                for delivery in receipt.recipients:
                    expected[delivery.partner].add(receipt.id)
                granted = {p for p, d in decisions.items() if d.granted}
                assert {d.partner for d in receipt.recipients} == granted

        await asyncio.gather(*(publisher(p, 15 * SCALE) for p in ("GBR", "EST", "USA")))
        assert sum(map(len, expected.values())) > 0
        for pid, node in nodes.items():
            received = await drain(node)
            assert len(received) == len(set(received)), f"{pid} received a report twice"
            assert set(received) == expected[pid], pid
    finally:
        for node in nodes.values():
            await node.aclose()


def test_accepted_reports_survive_a_broker_and_redis_restart(tmp_path: Path) -> None:
    """AOF is the durability story: what got a 201 is delivered after both restart."""
    policies, data = tmp_path / "policies", tmp_path / "data"
    write_policies(policies)
    label = Label("SECRET", ["USA"], "AMBER")
    posted = []
    with EmbeddedRedis(data / "redis", appendfsync="always") as server:
        settings = Settings(redis_url=server.url, policies_dir=policies, data_dir=data)
        with (
            broker_in_thread(create_app(settings)) as running,
            Partner(running.url, me("GBR")) as gbr,
        ):
            for _ in range(20 * SCALE):
                posted.append(gbr.publish(BUNDLE, label).id)
    with EmbeddedRedis(data / "redis") as server:
        settings = Settings(redis_url=server.url, policies_dir=policies, data_dir=data)
        with (
            broker_in_thread(create_app(settings)) as running,
            Partner(running.url, me("USA")) as usa,
        ):
            received: list[str] = []
            while batch := usa.inbox(limit=100, wait_s=0.5):
                received += [r.id for r in batch]
                usa.ack(r.entry_id for r in batch)
    assert received == posted
