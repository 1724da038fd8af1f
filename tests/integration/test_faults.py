"""Heavy fault runs on real processes (``make heavy``), sized by TEARLINE_HEAVY_SCALE.

- the fault campaign of :mod:`tests.faults`: brokers and Redis SIGKILLed while publishers post
  and every partner subscribes; nothing acknowledged is lost, nothing reaches the application
  twice or a partner not entitled, no response is a 500;
- a subscriber SIGKILLed before its ack gets the report again after the visibility timeout,
  once to the application;
- a long poll and an SSE stream held for a minute on a broker with its default settings, and
  across a broker restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tearline import Label
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.clients.errors import TransportError
from tearline.clients.keyfile import write_keypair
from tearline.clients.partner import AsyncPartner, Report
from tearline.clients.sync import Partner
from tests.faults import run_campaign
from tests.integration.conftest import me, write_policies
from tests.processes import BrokerProcess

pytestmark = pytest.mark.heavy
SCALE = int(os.environ.get("TEARLINE_HEAVY_SCALE", "1"))
BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
TO_USA = Label("SECRET", ["USA"], "AMBER")


def test_a_fault_campaign_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    counts = run_campaign(tmp_path, scale=SCALE)
    print("fault campaign:", json.dumps(counts.summary()))  # the figures for the closing note
    assert counts.broker_kills >= 5
    assert counts.redis_kills >= 2
    assert counts.acknowledged > 0
    assert counts.lost == 0, counts.details.get("lost")
    assert counts.duplicated == 0, counts.details.get("duplicated")
    assert counts.unentitled == 0, counts.details.get("unentitled")
    assert counts.partial_maybe == 0
    assert counts.http_500 == 0
    assert counts.http_5xx == 0  # 503 during an outage is the promise; any other 5xx is not
    assert "subscriber_died" not in counts.details, counts.details.get("subscriber_died")


# Receives one report, says so on stdout, and dies before it can ack.
SUBSCRIBER_THAT_NEVER_ACKS = """
import sys, time
from tearline.clients.keyfile import Identity
from tearline.clients.sync import Partner
with Partner(sys.argv[1], Identity.load(sys.argv[2])) as node:
    for item in node.subscribe(consumer="app"):
        print(item.id, flush=True)
        time.sleep(3600)
"""


def test_a_subscriber_killed_before_its_ack_gets_the_report_again_once(tmp_path: Path) -> None:
    write_policies(tmp_path / "policies")
    identity, _ = write_keypair(me("USA"), tmp_path / "keys")
    with (
        EmbeddedRedis(tmp_path / "redis", port=free_port(), appendfsync="always") as server,
        BrokerProcess(
            redis_url=server.url,
            policies=tmp_path / "policies",
            data_dir=tmp_path / "data",
            env={"TEARLINE_VISIBILITY_TIMEOUT_MS": "3000", "TEARLINE_SSE_HEARTBEAT_S": "1"},
        ) as broker,
    ):
        with Partner(broker.url, me("GBR")) as gbr:
            posted = gbr.publish(BUNDLE, TO_USA)
        child = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER_THAT_NEVER_ACKS, broker.url, str(identity)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        assert child.stdout is not None
        assert child.stdout.readline().decode().strip() == posted.id
        child.kill()
        child.wait()

        async def receive() -> list[str]:
            got: list[str] = []
            async with AsyncPartner(broker.url, me("USA")) as usa:

                async def listen() -> None:
                    async for item in usa.subscribe(consumer="app"):
                        got.append(item.id)
                        await item.ack()

                task = asyncio.create_task(listen())
                # Past the visibility timeout, and long enough for a second copy to show.
                await asyncio.sleep(12)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            return got

        assert asyncio.run(receive()) == [posted.id]


def test_a_long_poll_and_a_stream_hold_for_a_minute_on_default_settings(tmp_path: Path) -> None:
    """60 s: past redis-py's, httpx's and uvicorn's defaults and several default heartbeats."""
    write_policies(tmp_path / "policies")
    with (
        EmbeddedRedis(tmp_path / "redis", port=free_port()) as server,
        BrokerProcess(
            redis_url=server.url, policies=tmp_path / "policies", data_dir=tmp_path / "data"
        ) as broker,
    ):

        async def run() -> tuple[list[str], list[str], str]:
            async with (
                AsyncPartner(broker.url, me("GBR")) as gbr,
                AsyncPartner(broker.url, me("USA")) as usa,
                AsyncPartner(broker.url, me("EST")) as est,
            ):
                streamed: list[str] = []

                async def stream() -> None:
                    async for item in est.subscribe():
                        streamed.append(item.id)
                        await item.ack()
                        return

                streaming = asyncio.create_task(stream())
                polling = asyncio.create_task(usa.inbox(wait_s=60))
                await asyncio.sleep(57)  # nearly the whole minute the poll may wait
                assert not polling.done()
                assert not streaming.done()
                to_usa = await gbr.publish(BUNDLE, TO_USA)
                to_est = await gbr.publish(
                    BUNDLE, Label("RESTRICTED", ["EST"], "AMBER", topics=["apt"])
                )
                polled = [r.id for r in await asyncio.wait_for(polling, 30)]
                await asyncio.wait_for(streaming, 30)
                assert polled == [to_usa.id]
                return polled, streamed, to_est.id

        _, streamed, to_est = asyncio.run(run())
        assert streamed == [to_est]


def test_a_stream_and_a_long_poll_carry_on_across_a_broker_restart(tmp_path: Path) -> None:
    write_policies(tmp_path / "policies")
    with (
        EmbeddedRedis(tmp_path / "redis", port=free_port(), appendfsync="always") as server,
        BrokerProcess(
            redis_url=server.url,
            policies=tmp_path / "policies",
            data_dir=tmp_path / "data",
            env={"TEARLINE_SSE_HEARTBEAT_S": "1"},
        ) as broker,
    ):

        async def run() -> None:
            async with (
                AsyncPartner(broker.url, me("GBR")) as gbr,
                AsyncPartner(broker.url, me("USA")) as usa,
            ):
                streamed: list[str] = []

                async def stream() -> None:
                    async for item in usa.subscribe(consumer="stream"):
                        if isinstance(item, Report):
                            streamed.append(item.id)
                        await item.ack()

                streaming = asyncio.create_task(stream())
                before = await gbr.publish(BUNDLE, TO_USA)
                while before.id not in streamed:
                    await asyncio.sleep(0.1)
                await asyncio.to_thread(broker.kill)
                await asyncio.to_thread(broker.start)
                after = await gbr.publish(BUNDLE, TO_USA)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while after.id not in streamed and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                streaming.cancel()
                await asyncio.gather(streaming, return_exceptions=True)
                assert streamed == [before.id, after.id]
                # A long poll cut by a broker crash fails as a transport error (the client
                # retries it); the retry, on the restarted broker, gets what was posted since.
                polling = asyncio.create_task(usa.inbox(wait_s=30, consumer="poll"))
                await asyncio.sleep(1)
                await asyncio.to_thread(broker.kill)
                with pytest.raises(TransportError):
                    await polling
                await asyncio.to_thread(broker.start)
                third = await gbr.publish(BUNDLE, TO_USA)
                polled = await usa.inbox(wait_s=10, consumer="poll", limit=10)
                assert [r.id for r in polled] == [third.id]

        asyncio.run(run())
