"""Subscribers that wait (DESIGN §6, §11): long polls and SSE streams hold for as long as the API
promises — past every client, server and Redis-client default in the path — and one partner's
waiting subscribers can never take what others need."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tearline import Label
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tests.integration.conftest import RunningBroker, me, running_broker

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
TO_USA = Label("SECRET", ["USA"], "AMBER")
TO_EST = Label("RESTRICTED", ["EST"], "AMBER", topics=["apt"])
# Longer than redis-py's 5 s socket_timeout default (which once cut every long poll), than
# uvicorn's 5 s keep-alive, and than the broker's own block slice.
PAST_THE_DEFAULTS_S = 10.0


def signed_headers(who: str, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(extra or {})
    return headers | sign_as(me(who), "GET", url, headers, None, now=datetime.now(UTC))


async def test_a_long_poll_and_a_stream_wait_past_every_default_then_deliver(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=30)) as client,
    ):
        url = f"{broker.url}/v1/inbox/stream"
        events: list[Any] = []
        comments = 0

        async def stream() -> None:
            nonlocal comments
            headers = signed_headers("EST", url, {"accept": "text/event-stream"})
            async with client.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    comments += line.startswith(":")
                    if line.startswith("data:"):
                        events.append(json.loads(line.removeprefix("data:")))
                        return

        streaming = asyncio.create_task(stream())
        polling = asyncio.create_task(usa.inbox(wait_s=PAST_THE_DEFAULTS_S + 10))
        await asyncio.sleep(PAST_THE_DEFAULTS_S)
        assert not polling.done()
        assert not streaming.done()
        to_usa = await gbr.publish(BUNDLE, TO_USA)
        to_est = await gbr.publish(BUNDLE, TO_EST)
        (got,) = await asyncio.wait_for(polling, 30)
        await asyncio.wait_for(streaming, 30)
    assert got.id == to_usa.id
    assert [e["report_id"] for e in events] == [to_est.id]
    assert comments >= 3  # heartbeats (1 s in the fixture) kept the idle stream alive


@pytest.fixture
def strict_broker(tmp_path: Path, redis_server: Any) -> Iterator[RunningBroker]:
    """A broker that admits two waiting subscribers per partner and four in all."""
    share = {"blocking_readers_max": 4, "blocking_readers_per_partner": 2}
    with running_broker(redis_server.url, tmp_path, **share) as running:
        yield running


async def test_one_partner_cannot_hold_more_than_its_share_of_waiting_subscribers(
    strict_broker: RunningBroker,
) -> None:
    url = strict_broker.url
    async with (
        AsyncPartner(url, me("USA")) as usa,
        AsyncPartner(url, me("EST")) as est,
        AsyncPartner(url, me("GBR")) as gbr,
        httpx.AsyncClient(timeout=30) as client,
    ):
        held = [asyncio.create_task(usa.inbox(wait_s=20, consumer=f"w{i}")) for i in range(2)]
        while strict_broker.state.waiters.held_by("USA") < 2:
            await asyncio.sleep(0.05)

        # USA's third long poll and its stream are refused, with a time to come back.
        poll_url = f"{url}/v1/inbox?wait=5"
        third = await client.get(poll_url, headers=signed_headers("USA", poll_url))
        stream_url = f"{url}/v1/inbox/stream"
        stream = await client.get(stream_url, headers=signed_headers("USA", stream_url))
        for refused in (third, stream):
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "too_many_waiters"
            assert int(refused.headers["retry-after"]) >= 1

        # Everyone else is served as usual: EST waits, GBR posts, and EST gets the report.
        est_waits = asyncio.create_task(est.inbox(wait_s=20))
        receipt = await gbr.publish(BUNDLE, TO_EST)
        (got,) = await asyncio.wait_for(est_waits, 30)
        assert got.id == receipt.id
        # And a non-waiting poll is never refused: it holds no blocking connection.
        assert await usa.inbox(wait_s=0) == []

        for task in held:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_stream_refused_for_its_share_is_a_429_before_any_event(
    strict_broker: RunningBroker,
) -> None:
    """An SSE client must see the refusal as a status, not as a stream that ends at once."""
    url = f"{strict_broker.url}/v1/inbox/stream"
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=30)) as client:
        opened = []
        for i in range(2):
            headers = signed_headers(
                "USA", url + f"?consumer=s{i}", {"accept": "text/event-stream"}
            )
            request = client.build_request("GET", url + f"?consumer=s{i}", headers=headers)
            response = await client.send(request, stream=True)
            assert response.status_code == 200
            opened.append(response)
        # The generator takes its slot once it runs: wait for it, then try a third.
        while strict_broker.state.waiters.held_by("USA") < 2:
            await asyncio.sleep(0.05)
        third = await client.get(url, headers=signed_headers("USA", url))
        assert third.status_code == 429
        for response in opened:
            await response.aclose()
