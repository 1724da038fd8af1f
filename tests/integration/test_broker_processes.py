"""Brokers as operators run them (``tearline serve`` processes): graceful shutdown, several
brokers on one Redis, and ``--workers N`` with correct metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tearline import Label
from tearline.broker.app import create_app
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.broker.runner import ThreadedBroker, broker_in_thread
from tearline.broker.settings import Settings
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner, Report
from tests.integration.conftest import PARTNERS, me, write_policies
from tests.processes import BrokerProcess

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
TO_EST = Label("RESTRICTED", ["EST"], "AMBER", topics=["apt"])
TO_USA = Label("SECRET", ["USA"], "AMBER")
SUBSCRIBERS = ("USA", "EST", "FIN", "GBR")  # DEU has no agreement with anyone who posts


def signed_headers(who: str, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(extra or {})
    return headers | sign_as(me(who), "GET", url, headers, None, now=datetime.now(UTC))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sigterm_releases_waiting_subscribers_and_stops_the_embedded_redis_last(
    tmp_path: Path,
) -> None:
    """On SIGTERM: a blocked long poll answers (200, not a cut connection), an SSE stream ends
    cleanly after its last event, whose id resumes it on the next broker; the embedded
    redis-server is still serving while they finish and is gone once the broker has exited."""
    policies, data = tmp_path / "policies", tmp_path / "data"
    write_policies(policies)
    env = {"TEARLINE_SSE_HEARTBEAT_S": "1", "TEARLINE_VISIBILITY_TIMEOUT_MS": "60000"}
    broker = BrokerProcess(redis_url=None, policies=policies, data_dir=data, env=env).start()
    try:
        (redis_pid,) = map(int, re.findall(r"embedded redis-server \(pid (\d+)\)", broker.log()))
        stream_url = f"{broker.url}/v1/inbox/stream"
        poll_url = f"{broker.url}/v1/inbox?wait=50"
        ids: list[str] = []
        async with (
            AsyncPartner(broker.url, me("GBR")) as gbr,
            httpx.AsyncClient(timeout=httpx.Timeout(60, read=60)) as client,
        ):
            first = await gbr.publish(BUNDLE, TO_EST)
            polling = asyncio.create_task(
                client.get(poll_url, headers=signed_headers("USA", poll_url))
            )
            headers = signed_headers("EST", stream_url, {"accept": "text/event-stream"})
            async with client.stream("GET", stream_url, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        ids.append(line.removeprefix("id:").strip())
                        broker.terminate()  # SIGTERM while the stream and the poll are open
                # The loop ended: the broker closed the stream cleanly, no error.
            poll = await asyncio.wait_for(polling, 60)
        assert poll.status_code == 200, poll.text
        assert poll.json() == {"entries": []}
        assert broker.wait(timeout_s=30) == 0
        assert not pid_alive(redis_pid)
        assert "Traceback" not in broker.log()
    finally:
        broker.kill()

    # The next broker, on the same data and port, resumes the stream from the id it ended with.
    broker = BrokerProcess(
        redis_url=None, policies=policies, data_dir=data, env=env, port=broker.port
    ).start()
    try:
        async with AsyncPartner(broker.url, me("GBR")) as gbr:
            second = await gbr.publish(BUNDLE, TO_EST)
        headers = signed_headers(
            "EST", stream_url, {"accept": "text/event-stream", "last-event-id": ids[-1]}
        )
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(60, read=60)) as client,
            client.stream("GET", stream_url, headers=headers) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    resumed = json.loads(line.removeprefix("data:"))
                    break
        assert resumed["report_id"] == second.id != first.id
    finally:
        broker.stop()


@pytest.fixture
def two_brokers(redis_server: Any, tmp_path: Path) -> Iterator[list[ThreadedBroker]]:
    """Two broker servers side by side on the session's Redis, same policy, same key."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    write_policies(tmp_path / "policies")
    settings = Settings(
        redis_url=redis_server.url,
        policies_dir=tmp_path / "policies",
        data_dir=tmp_path / "data",
        visibility_timeout_ms=2000,
        sse_heartbeat_s=1,
    )
    with (
        broker_in_thread(create_app(settings)) as a,
        broker_in_thread(create_app(settings)) as b,
    ):
        yield [a, b]


async def test_two_brokers_on_one_redis_deliver_everything_once(
    two_brokers: list[ThreadedBroker],
) -> None:
    """Publishers post to both brokers at once; each partner runs two subscribers, one on each
    broker, in one consumer group: every report reaches the application once."""
    expected: dict[str, set[str]] = {p: set() for p in PARTNERS}
    received: dict[str, Counter[str]] = {p: Counter() for p in PARTNERS}

    async def publisher(originator: str, label: Label, count: int) -> None:
        nodes = [AsyncPartner(b.url, me(originator)) for b in two_brokers]
        try:
            for i in range(count):
                receipt = await nodes[i % 2].publish(BUNDLE, label)
                for delivery in receipt.recipients:
                    expected[delivery.partner].add(receipt.id)
        finally:
            for node in nodes:
                await node.aclose()

    async def subscriber(partner: str, broker: ThreadedBroker, consumer: str) -> None:
        async with AsyncPartner(broker.url, me(partner)) as node:
            async for item in node.subscribe(consumer=consumer):
                if isinstance(item, Report):
                    received[partner][item.id] += 1
                await item.ack()

    subscribers = [
        asyncio.create_task(subscriber(p, broker, f"worker-{i}"))
        for p in SUBSCRIBERS
        for i, broker in enumerate(two_brokers)
    ]
    await asyncio.gather(
        publisher("GBR", TO_USA, 15),
        publisher("GBR", Label("RESTRICTED", ["USA", "BALTIC"], "GREEN", topics=["apt"]), 15),
        publisher("USA", Label("SECRET", ["GBR"], "AMBER"), 15),
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline and any(set(received[p]) != expected[p] for p in PARTNERS):
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)  # longer than the visibility timeout: a redelivery would show
    for task in subscribers:
        task.cancel()
    await asyncio.gather(*subscribers, return_exceptions=True)
    for partner in PARTNERS:
        assert set(received[partner]) == expected[partner], partner
        assert max(received[partner].values(), default=1) == 1, f"{partner} got a report twice"
    assert all(expected[p] for p in SUBSCRIBERS)
    assert not expected["DEU"]


def test_metrics_are_summed_over_every_worker(tmp_path: Path) -> None:
    """With --workers 2, whichever worker answers the scrape reports every worker's counts: on
    the broker's listener to an operator, and on the metrics listener to Prometheus."""
    write_policies(tmp_path / "policies")
    metrics_port = free_port()
    with (
        EmbeddedRedis(tmp_path / "redis", port=free_port()) as server,
        BrokerProcess(
            redis_url=server.url,
            policies=tmp_path / "policies",
            data_dir=tmp_path / "data",
            workers=2,
            env={"TEARLINE_METRICS_PORT": str(metrics_port)},
        ) as broker,
    ):

        async def post(count: int) -> None:
            for _ in range(count):  # a new connection each: the kernel spreads them
                async with AsyncPartner(broker.url, me("GBR")) as gbr:
                    await gbr.publish(BUNDLE, TO_USA)

        asyncio.run(post(12))
        scrapes = []
        for _ in range(6):
            with httpx.Client(timeout=10) as client:  # new connections, either worker
                url = f"{broker.url}/metrics"
                text = client.get(url, headers=signed_headers("OPS-HQ", url)).text
            (value,) = re.findall(r'tearline_reports_total\{outcome="accepted"\} (\S+)', text)
            scrapes.append(float(value))
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        accepted = re.findall(r'tearline_reports_total\{outcome="accepted"\} (\S+)', scraped)
        assert accepted == ["12.0"]  # Prometheus's listener: every worker's counts too
        assert httpx.get(f"{broker.url}/metrics", timeout=10).status_code == 401
        served_by = set(re.findall(r"Started server process \[(\d+)\]", broker.log()))
    assert len(served_by) == 2
    assert scrapes == [12.0] * 6
