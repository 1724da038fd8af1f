"""Subscribers that keep going (DESIGN §8): the SDK and ``tearline subscribe`` against real
``tearline serve`` processes and a real ``redis-server``, SIGKILLed and restarted under them.

What they promise: a broker restart or a Redis outage costs a subscriber nothing but time — it
reconnects with backoff, resumes, and hands each report to the application exactly once; it
stops only on what retrying cannot fix (a key the broker does not know, a suspension); the sync
twin's deliveries acknowledge synchronously; an acknowledgement the broker could not take is
logged, and the copy redelivered later is acknowledged; the CLI logs each outage once on stderr
and ends cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from tearline import AuthenticationError, Label
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.broker.store import GROUP, dead_key, inbox_key
from tearline.clients.cli.partner import _acknowledge as acknowledge
from tearline.clients.keyfile import write_keypair
from tearline.clients.partner import AsyncPartner, Delivery, Report
from tearline.clients.sync import Partner
from tests.integration import waiting
from tests.integration.conftest import RunningBroker, me, write_policies
from tests.processes import BrokerProcess

T = TypeVar("T")

# GBR → USA only (the gbr-usa agreement); nobody else is entitled.
USA_ONLY = Label("SECRET", ["USA"], "AMBER")
# Short timeouts keep the tests short; generous bounds keep a slow machine from failing them.
VISIBILITY_S = 2.0
BROKER_ENV = {
    "TEARLINE_VISIBILITY_TIMEOUT_MS": str(int(VISIBILITY_S * 1000)),
    "TEARLINE_SSE_HEARTBEAT_S": "1",
}
BOUND_S = 30.0
TEARLINE = [sys.executable, "-c", "from tearline.clients.cli import main; main()"]


def subscriber_node(url: str, who: str = "USA") -> AsyncPartner:
    # A low cap: the outages here last a second or two, and the reconnect should follow soon.
    return AsyncPartner(url, me(who), reconnect_base_s=0.1, reconnect_cap_s=1.0)


def bundle(n: int) -> dict[str, Any]:
    return {"type": "bundle", "id": f"bundle--{n:08d}-0000-4000-8000-000000000000", "objects": []}


# --- fixtures: a Redis and a broker of the test's own, to kill -------------------------------


@dataclass
class World:
    store: EmbeddedRedis
    broker: BrokerProcess

    def redis(self) -> Any:
        """The store, synchronously; typed ``Any`` as in ``tests.integration.conftest``."""
        return redis.Redis.from_url(self.store.url)

    def pending(self, partner: str) -> int:
        with self.redis() as r:
            return int(r.xpending(inbox_key(partner), GROUP)["pending"])

    def dead_letters(self, partner: str) -> int:
        with self.redis() as r:
            return int(r.xlen(dead_key(partner)))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    policies = tmp_path / "policies"
    write_policies(policies)
    # A fixed port, so a restarted server comes back where the broker left it; fsync on every
    # write, so a SIGKILL loses nothing that was acknowledged.
    store = EmbeddedRedis(tmp_path / "redis", port=free_port(), appendfsync="always")
    with store:
        broker = BrokerProcess(
            redis_url=store.url, policies=policies, data_dir=tmp_path / "data", env=BROKER_ENV
        )
        with broker:
            yield World(store, broker)


# --- helpers -----------------------------------------------------------------------------------


async def until(check: Callable[[], T], done: Callable[[T], bool] = bool) -> T:
    # Restarts of brokers and Redis take longer than the suite's usual bound.
    return await waiting.until(check, done, bound_s=BOUND_S)


def wait_for(check: Callable[[], bool], what: str, *, bound_s: float = BOUND_S) -> None:
    """:func:`until` for synchronous tests."""
    deadline = time.monotonic() + bound_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {bound_s} s")
        time.sleep(0.05)


async def publish_when_ready(node: AsyncPartner, n: int) -> str:
    """Publish, retrying while the broker or its store is still coming back."""

    async def attempt() -> str | None:
        try:
            return (await node.publish(bundle(n), USA_ONLY)).id
        except Exception:  # any failure here means "not back yet"
            return None

    return str(await waiting.eventually(attempt, lambda rid: rid is not None, bound_s=BOUND_S))


def publish_when_ready_sync(node: Partner, n: int) -> str:
    """:func:`publish_when_ready` for the sync client."""
    deadline = time.monotonic() + BOUND_S
    while True:
        try:
            return node.publish(bundle(n), USA_ONLY).id
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def collect(
    stream: AsyncIterator[Delivery], got: list[str], *, ack: Callable[[Report], bool]
) -> None:
    """Append each report id the stream yields; acknowledge those ``ack`` says to."""
    async for delivery in stream:
        assert isinstance(delivery, Report)
        got.append(delivery.id)
        if ack(delivery):
            await delivery.ack()


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def messages(caplog: pytest.LogCaptureFixture, level: int, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tearline.client" and r.levelno == level and r.getMessage().startswith(start)
    ]


# --- the async SDK -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
async def test_async_subscribe_receives_reports_from_before_and_after_a_broker_restart_once_each(
    world: World, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    # SIGKILL breaks the connection mid-stream; SIGTERM makes the broker end it cleanly.
    caplog.set_level(logging.DEBUG, logger="tearline.client")
    got: list[str] = []
    async with (
        AsyncPartner(world.broker.url, me("GBR")) as gbr,
        subscriber_node(world.broker.url) as usa,
    ):
        before = [(await gbr.publish(bundle(n), USA_ONLY)).id for n in range(3)]
        unacked = before[-1]  # yielded but not acknowledged when the broker dies
        stream = usa.subscribe()
        reader = asyncio.create_task(collect(stream, got, ack=lambda r: r.id != unacked))
        try:
            await until(lambda: len(got), lambda n: n == 3)
            await asyncio.to_thread(world.broker.kill if how == "SIGKILL" else world.broker.stop)
            await asyncio.to_thread(world.broker.start)
            after = [await publish_when_ready(gbr, n) for n in range(3, 6)]

            await until(lambda: len(got), lambda n: n >= 6)
            # The unacknowledged one comes back after the visibility timeout: the subscription
            # drops the copy and acknowledges it, so nothing is left pending (and not because
            # it was redelivered until it went to the dead letters).
            await until(lambda: world.pending("USA"), lambda n: n == 0)
            assert world.dead_letters("USA") == 0
        finally:
            await stop(reader)
            await stream.aclose()  # type: ignore[attr-defined]

    assert sorted(got) == sorted(before + after)
    assert len(got) == len(set(got))
    # One line when the stream was lost, saying why; one when it was back.
    lost = messages(caplog, logging.WARNING, "inbox stream lost")
    assert len(lost) == 1, caplog.text
    why = "the connection broke" if how == "SIGKILL" else "the broker ended the stream"
    assert why in lost[0]
    assert "reconnecting" in lost[0]
    assert len(messages(caplog, logging.INFO, "inbox stream back after")) == 1, caplog.text


async def test_async_subscribe_survives_a_redis_kill_and_restart(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tearline.client")
    got: list[str] = []
    async with (
        AsyncPartner(world.broker.url, me("GBR")) as gbr,
        subscriber_node(world.broker.url) as usa,
    ):
        stream = usa.subscribe()
        reader = asyncio.create_task(collect(stream, got, ack=lambda r: True))
        try:
            first = (await gbr.publish(bundle(1), USA_ONLY)).id
            await until(lambda: got, lambda ids: ids == [first])
            await until(lambda: world.pending("USA"), lambda n: n == 0)  # acked: nothing to lose

            await asyncio.to_thread(world.store.kill)
            # The broker says so on the open stream (an SSE error event), the stream ends and
            # the subscriber retries against 503s until the store is back.
            await until(lambda: messages(caplog, logging.WARNING, "inbox stream lost"))
            await asyncio.to_thread(world.store.start)

            second = await publish_when_ready(gbr, 2)
            await until(lambda: got, lambda ids: ids == [first, second])
        finally:
            await stop(reader)
            await stream.aclose()  # type: ignore[attr-defined]

    assert len(messages(caplog, logging.WARNING, "inbox stream lost")) == 1, caplog.text
    assert len(messages(caplog, logging.INFO, "inbox stream back after")) == 1, caplog.text


async def test_a_stream_the_broker_ends_at_its_lifetime_is_reopened_without_a_warning(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tearline.client")
    # A second broker on the same store, whose streams last 2 s: longer than the subscriber's
    # 1 s backoff cap, so each one counts as having worked even when it carried nothing.
    short_lived = BrokerProcess(
        redis_url=world.store.url,
        policies=tmp_path / "policies",
        data_dir=tmp_path / "short-lived",
        env={**BROKER_ENV, "TEARLINE_STREAM_MAX_LIFETIME_S": "2"},
    )
    got: list[str] = []
    with short_lived:
        async with (
            AsyncPartner(short_lived.url, me("GBR")) as gbr,
            subscriber_node(short_lived.url) as usa,
        ):
            stream = usa.subscribe()
            reader = asyncio.create_task(collect(stream, got, ack=lambda r: True))
            try:
                first = (await gbr.publish(bundle(1), USA_ONLY)).id
                await until(lambda: got, lambda ids: ids == [first])
                ended = "the broker ended the inbox stream"
                await until(lambda: len(messages(caplog, logging.DEBUG, ended)), lambda n: n >= 2)
                second = (await gbr.publish(bundle(2), USA_ONLY)).id
                await until(lambda: got, lambda ids: ids == [first, second])
            finally:
                await stop(reader)
                await stream.aclose()  # type: ignore[attr-defined]

    warnings = [r for r in caplog.records if r.name == "tearline.client" and r.levelno > 20]
    assert warnings == [], caplog.text


async def test_subscribe_raises_authentication_error_at_once_for_a_key_the_broker_does_not_know(
    broker: RunningBroker,
) -> None:
    # NZL has keys, but is in no registry the broker loaded: 401, which no retry can fix.
    async with subscriber_node(broker.url, "NZL") as stranger:
        stream = stranger.subscribe()
        with pytest.raises(AuthenticationError) as refused:
            await asyncio.wait_for(anext(stream), timeout=BOUND_S)
    assert refused.value.code == "unknown_key"


async def test_subscribe_stops_with_authentication_error_once_the_partner_is_suspended(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        subscriber_node(broker.url) as usa,
    ):
        stream = usa.subscribe()
        receipt = await gbr.publish(bundle(1), USA_ONLY)
        first = await asyncio.wait_for(anext(stream), timeout=BOUND_S)
        assert first.id == receipt.id
        await first.ack()

        # The broker ends the live stream; the reconnection is refused, and that is final.
        broker.change_policies(suspended=("USA",))
        with pytest.raises(AuthenticationError) as refused:
            await asyncio.wait_for(anext(stream), timeout=BOUND_S)
    assert refused.value.code == "partner_suspended"


# --- the sync twin -----------------------------------------------------------------------------


def test_sync_subscribe_yields_reports_whose_ack_is_synchronous(broker: RunningBroker) -> None:
    r = broker.redis()
    visibility_s = broker.settings.visibility_timeout_ms / 1000
    with Partner(broker.url, me("GBR")) as gbr, Partner(broker.url, me("USA")) as usa:
        acked, left = (gbr.publish(bundle(n), USA_ONLY).id for n in range(2))
        stream = usa.subscribe()
        first, second = next(stream), next(stream)
        stream.close()
        assert [first.id, second.id] == [acked, left]

        first.ack()  # no await, no event loop: acknowledged when it returns
        assert int(r.xpending(inbox_key("USA"), GROUP)["pending"]) == 1

        # Past the visibility timeout only the unacknowledged one comes back (a long poll has
        # no dedupe: what it returns is what the broker redelivers).
        again = usa.inbox(wait_s=visibility_s + 2, limit=10)
        assert [d.id for d in again] == [left]
        again[0].ack()  # inbox() deliveries acknowledge synchronously too
        assert int(r.xpending(inbox_key("USA"), GROUP)["pending"]) == 0
        assert usa.inbox(wait_s=visibility_s + 1) == []


def test_an_ack_that_fails_while_the_broker_is_down_is_logged_and_the_copy_acked_later(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tearline.client")
    url = world.broker.url
    with (
        Partner(url, me("GBR")) as gbr,
        Partner(url, me("USA"), reconnect_base_s=0.1, reconnect_cap_s=1.0) as usa,
    ):
        first = gbr.publish(bundle(1), USA_ONLY).id
        stream = usa.subscribe()
        report = next(stream)
        assert report.id == first

        world.broker.kill()
        acknowledge(report)  # what `tearline subscribe` does with each delivery: no exception
        assert messages(caplog, logging.WARNING, "could not acknowledge"), caplog.text
        world.broker.start()

        # The subscription runs on (in a thread of its own, the only one using `usa`): the
        # first comes back after the visibility timeout and is acknowledged, not yielded again.
        with ThreadPoolExecutor(1) as pool:
            following = pool.submit(next, stream)
            wait_for(lambda: world.pending("USA") == 0, "the redelivered copy acknowledged")
            second = publish_when_ready_sync(gbr, 2)
            assert following.result(timeout=BOUND_S).id == second
        stream.close()
    assert world.dead_letters("USA") == 0


# --- tearline subscribe ------------------------------------------------------------------------


@dataclass
class Subscriber:
    """A ``tearline subscribe --json`` process; stdout and stderr go to files, read as it runs."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def reports(self) -> list[str]:
        return [json.loads(line)["id"] for line in self.stdout.read_text().splitlines()]

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=BOUND_S)
        except subprocess.TimeoutExpired:
            # PYTHONFAULTHANDLER: SIGABRT writes every thread's stack to its stderr first.
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(timeout=BOUND_S)
            pytest.fail(f"not stopped {BOUND_S} s after signal {signum}; its stderr:\n{self.log()}")


@pytest.fixture
def subscriber_for(tmp_path: Path) -> Iterator[Callable[[str], Subscriber]]:
    write_keypair(me("USA"), tmp_path / "keys")
    started: list[Subscriber] = []

    def start(url: str) -> Subscriber:
        out, err = tmp_path / "subscribe.out", tmp_path / "subscribe.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            identity = str(tmp_path / "keys/USA.identity.json")
            process = subprocess.Popen(
                [*TEARLINE, "subscribe", "--broker", url, "--identity", identity, "--json"],
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
            )
        started.append(Subscriber(process, out, err))
        return started[-1]

    yield start
    for subscriber in started:
        if subscriber.process.poll() is None:
            subscriber.process.kill()
            subscriber.process.wait()


def test_tearline_subscribe_keeps_receiving_across_a_broker_restart_and_exits_0_on_sigint(
    world: World, subscriber_for: Callable[[str], Subscriber]
) -> None:
    subscriber = subscriber_for(world.broker.url)
    with Partner(world.broker.url, me("GBR")) as gbr:
        first = gbr.publish(bundle(1), USA_ONLY).id
        wait_for(lambda: subscriber.reports() == [first], "the first report printed")

        world.broker.kill()
        world.broker.start()
        second = gbr.publish(bundle(2), USA_ONLY).id
        wait_for(lambda: subscriber.reports() == [first, second], "the second report printed")
    wait_for(lambda: "inbox stream back after" in subscriber.log(), "the reconnect logged")

    assert subscriber.stop(signal.SIGINT) == 0
    log = subscriber.log()
    assert "Traceback" not in log, log
    assert log.count("inbox stream lost") == 1, log
    assert log.count("inbox stream back after") == 1, log
    assert subscriber.reports() == [first, second]


def test_tearline_subscribe_exits_0_on_sigterm_without_a_traceback(
    broker: RunningBroker, subscriber_for: Callable[[str], Subscriber]
) -> None:
    subscriber = subscriber_for(broker.url)
    with Partner(broker.url, me("GBR")) as gbr:
        receipt = gbr.publish(bundle(1), USA_ONLY)
    wait_for(lambda: subscriber.reports() == [receipt.id], "the report printed")

    assert subscriber.stop(signal.SIGTERM) == 0
    assert "Traceback" not in subscriber.log(), subscriber.log()
