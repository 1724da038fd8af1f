"""A fault campaign on real processes (DESIGN §11 "faults are normal").

A real ``redis-server`` (AOF, ``appendfsync always``) and two real broker processes
(``tearline serve``) on one Redis; publishers post concurrently to both brokers while every
partner subscribes through the SDK; meanwhile brokers are SIGKILLed and restarted, and Redis is
SIGKILLed and restarted from its AOF. Afterwards every report is accounted for:

- *acknowledged*: the publisher got a 201 (perhaps on a retry of the same bytes);
- *maybe*: every attempt failed without an answer, so it may or may not be stored; such a
  report must reach all of its recipients or none (ingest is all-or-nothing);
- *lost*: acknowledged for a recipient that never received it;
- *duplicated*: handed to one partner's application more than once;
- *unentitled*: delivered to a partner the engine does not entitle.

``python -m tests.faults [--scale N] [--seed S]`` runs one campaign and prints the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tearline import Label, TearlineError
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.broker.policy.load import load_policies
from tearline.clients.errors import InputError, TransportError
from tearline.clients.partner import AsyncPartner, Report
from tearline.clients.protocol.encoding import b64d
from tearline.clients.protocol.envelope import seal
from tests.integration.conftest import PARTNERS, me, write_policies
from tests.processes import BrokerProcess

LEVELS = ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET"]
TOPICS = ["ransomware", "apt", "maritime"]
ORIGINATORS = ("GBR", "EST", "USA")
BUNDLE = b'{"type":"bundle","id":"bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8","objects":[]}'
# Short enough that entries a killed broker had handed out come back within the campaign.
BROKER_ENV = {
    "TEARLINE_VISIBILITY_TIMEOUT_MS": "3000",
    "TEARLINE_SSE_HEARTBEAT_S": "1",
    # Faults redeliver entries more often than a healthy broker would; none may be parked.
    "TEARLINE_MAX_DELIVERIES": "1000",
}
# How long an unanswered post is retried before it counts as "maybe".
POST_PATIENCE_S = 20.0


@dataclass
class Counts:
    sent: int = 0
    acknowledged: int = 0
    maybe: int = 0
    maybe_stored: int = 0  # of the maybes, those that turned out to be stored and delivered
    expected_deliveries: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    unentitled: int = 0
    partial_maybe: int = 0  # a maybe delivered to some recipients but not all: never allowed
    responses: int = 0  # answers the brokers logged, all told
    http_5xx: int = 0
    http_500: int = 0
    broker_kills: int = 0
    redis_kills: int = 0
    reconnects_seen: int = 0
    details: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "details"}


@dataclass
class Posted:
    report_id: str
    originator: str
    recipients: tuple[str, ...]
    entitled: frozenset[str]
    acknowledged: bool = False


def random_label(rng: random.Random, originator: str) -> Label:
    others = [p for p in PARTNERS if p != originator]
    return Label(
        rng.choice(LEVELS),
        rng.sample([*others, "BALTIC"], k=rng.randint(1, 3)),
        rng.choice(["GREEN", "AMBER"]),
        topics=rng.sample(TOPICS, k=rng.randint(0, 2)),
    )


class Campaign:
    def __init__(self, workdir: Path, *, scale: int, seed: int) -> None:
        self.workdir = workdir
        self.scale = scale
        self.rng = random.Random(seed)
        self.policies = workdir / "policies"
        write_policies(self.policies)
        self.policy = load_policies(self.policies)
        self.redis = EmbeddedRedis(workdir / "redis", port=free_port(), appendfsync="always")
        self.brokers: list[BrokerProcess] = []
        self.posted: dict[str, Posted] = {}
        self.received: dict[str, Counter[str]] = {p: Counter() for p in PARTNERS}
        self.counts = Counts()
        self.chaos_over = asyncio.Event()

    # --- the parts -------------------------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        for _ in range(2):
            broker = BrokerProcess(
                redis_url=self.redis.url,
                policies=self.policies,
                data_dir=self.workdir / "data",
                env=BROKER_ENV,
            )
            broker.start()  # one after the other: the first makes the shared broker key
            self.brokers.append(broker)

    def stop(self) -> None:
        for broker in self.brokers:
            broker.stop()
        self.redis.stop()

    def sealed(self, originator: str, label: Label) -> tuple[bytes, Posted] | None:
        """An envelope sealed to every partner the engine entitles (None if nobody is)."""
        now = datetime.now(UTC)
        decisions = self.policy.decide(label, originator, "classic", now)
        entitled = frozenset(p for p, d in decisions.items() if d.reason is None)
        slots = []
        for pid in sorted(entitled):
            partner = self.policy.registry.get(pid)
            key = partner.enc_key("classic", now) if partner else None
            if key is not None:
                slots.append((pid, key))
        if not slots:
            return None
        envelope = seal(BUNDLE, label, slots, me(originator), now=now, suite="classic")
        recipients = tuple(p for p, _ in slots)
        return envelope, Posted(_envelope_id(envelope), originator, recipients, entitled)

    async def publisher(self, originator: str, at_least: int) -> None:
        """Post until the chaos is over (and at least ``at_least`` times), alternating brokers;
        an unanswered post is retried with the same bytes, as a careful client does."""
        nodes = [AsyncPartner(b.url, me(originator), timeout_s=5.0) for b in self.brokers]
        i = 0
        try:
            while i < at_least or not self.chaos_over.is_set():
                i += 1
                label = random_label(self.rng, originator)
                made = self.sealed(originator, label)
                if made is None:
                    continue
                envelope, posted = made
                self.counts.sent += 1
                deadline = time.monotonic() + POST_PATIENCE_S
                attempt = 0
                while True:
                    node = nodes[(i + attempt) % len(nodes)]
                    attempt += 1
                    try:
                        receipt = await node.post_envelope(envelope)
                    except InputError as exc:  # a refusal would be a bug in this harness
                        raise AssertionError(f"{originator} post refused: {exc.code}") from exc
                    except TearlineError as exc:
                        if exc.code == "internal_error":
                            self.counts.http_500 += 1
                        if time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.2)
                        continue
                    assert receipt.id == posted.report_id
                    posted.acknowledged = True
                    assert {r.partner for r in receipt.recipients} == set(posted.recipients)
                    break
                self.posted[posted.report_id] = posted
                await asyncio.sleep(self.rng.uniform(0.0, 0.1))
        finally:
            for node in nodes:
                await node.aclose()

    async def subscriber(self, partner: str, broker: BrokerProcess) -> None:
        async with AsyncPartner(broker.url, me(partner), timeout_s=5.0) as node:
            async for item in node.subscribe(consumer=f"{partner.lower()}-app"):
                if isinstance(item, Report):
                    self.received[partner][item.id] += 1
                # A failed ack is harmless: the entry comes back and the SDK drops the copy.
                with contextlib.suppress(TransportError):
                    await item.ack()

    async def chaos(self) -> None:
        """At least 5 broker kills and 2 Redis kills per unit of scale, at random moments."""
        events = ["broker"] * (5 * self.scale) + ["redis"] * (2 * self.scale)
        self.rng.shuffle(events)
        for event in events:
            await asyncio.sleep(self.rng.uniform(0.5, 2.5))
            if event == "broker":
                broker = self.rng.choice(self.brokers)
                await asyncio.to_thread(broker.kill)
                self.counts.broker_kills += 1
                await asyncio.sleep(self.rng.uniform(0.2, 1.5))
                await asyncio.to_thread(broker.start)
            else:
                await asyncio.to_thread(self.redis.kill)
                self.counts.redis_kills += 1
                await asyncio.sleep(self.rng.uniform(0.5, 2.0))
                await asyncio.to_thread(self.redis.start)
        self.chaos_over.set()

    # --- the run ---------------------------------------------------------------------------

    async def run(self, *, settle_s: float = 90.0) -> Counts:
        subscribers = [
            asyncio.create_task(self.subscriber(p, self.brokers[i % 2]))
            for i, p in enumerate(PARTNERS)
        ]
        chaos = asyncio.create_task(self.chaos())
        await asyncio.gather(*(self.publisher(o, 10 * self.scale) for o in ORIGINATORS), chaos)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline and not self._all_delivered():
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # a duplicate arriving late would show here
        for task in subscribers:
            task.cancel()
        results = await asyncio.gather(*subscribers, return_exceptions=True)
        for partner, result in zip(PARTNERS, results, strict=True):
            if not isinstance(result, asyncio.CancelledError):
                self.counts.details.setdefault("subscriber_died", []).append(
                    f"{partner}: {result!r}"
                )
        return self._tally()

    def _all_delivered(self) -> bool:
        return all(
            self.received[p][r.report_id] > 0
            for r in self.posted.values()
            if r.acknowledged
            for p in r.recipients
        )

    def _tally(self) -> Counts:
        c = self.counts
        details = c.details
        for report in self.posted.values():
            got = {p for p in report.recipients if self.received[p][report.report_id]}
            if report.acknowledged:
                c.acknowledged += 1
                c.expected_deliveries += len(report.recipients)
                for p in set(report.recipients) - got:
                    c.lost += 1
                    details.setdefault("lost", []).append(f"{report.report_id} → {p}")
            else:
                c.maybe += 1
                if got:
                    c.maybe_stored += 1
                if got and got != set(report.recipients):
                    c.partial_maybe += 1
        for partner, counter in self.received.items():
            for report_id, times in counter.items():
                c.delivered += 1
                if times > 1:
                    c.duplicated += 1
                    details.setdefault("duplicated", []).append(f"{report_id} → {partner}")
                sent = self.posted.get(report_id)
                if sent is None or partner not in sent.entitled:
                    c.unentitled += 1
                    details.setdefault("unentitled", []).append(f"{report_id} → {partner}")
        statuses = [status for b in self.brokers for status in answered(b.log())]
        if not statuses:
            raise AssertionError("no access log lines: the 5xx count would mean nothing")
        c.responses = len(statuses)
        c.http_500 += statuses.count(500)
        c.http_5xx = sum(1 for s in statuses if s >= 500 and s != 503)
        c.reconnects_seen = sum(b.starts for b in self.brokers) - len(self.brokers)
        return c


def answered(log: str) -> list[int]:
    """The status of every response in a broker's log (JSON lines, uvicorn access records)."""
    out = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue  # the lines `tearline serve` prints before logging starts
        record = json.loads(line)
        if record.get("logger") == "uvicorn.access":
            out.append(int(record["status"]))
    return out


def _envelope_id(envelope: bytes) -> str:
    header = json.loads(b64d(json.loads(envelope)["header"]))
    return str(header["id"])


def run_campaign(workdir: Path, *, scale: int = 1, seed: int = 20261201) -> Counts:
    campaign = Campaign(workdir, scale=scale, seed=seed)
    campaign.start()
    try:
        return asyncio.run(campaign.run())
    finally:
        campaign.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        counts = run_campaign(Path(tmp), scale=args.scale, seed=args.seed)
    print(json.dumps(counts.summary(), indent=2))
    for kind, rows in counts.details.items():
        print(f"{kind}: {rows[:10]}")


if __name__ == "__main__":
    main()
