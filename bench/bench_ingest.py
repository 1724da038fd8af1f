"""The broker's ingest path, step by step, on a real redis-server.

Per report: the request signature (RFC 9421), the envelope verification, the engine, the one
Lua round trip that stores everything, and the receipt signature, 16 reports in flight.
Baseline, in the same run: a bare XADD through the same client, 16 in flight (the floor that
DESIGN §10 compares against). HTTP parsing is not included: these are the broker's own costs.

    python -m bench.bench_ingest [--quick]
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis
import yaml

from bench._timing import rate, write
from tearline.broker.embedded import EmbeddedRedis
from tearline.broker.ingest import accept_report
from tearline.broker.keys import load_or_create
from tearline.broker.policy.load import load_policies
from tearline.broker.settings import Settings
from tearline.broker.signatures import Authenticated, verify_request
from tearline.broker.state import BrokerState
from tearline.broker.store import Store
from tearline.clients.httpsig import sign_request, signing_key_of
from tearline.clients.protocol.envelope import seal
from tearline.clients.protocol.identity import Identity
from tearline.clients.protocol.label import Label

NOW = datetime.now(UTC).replace(microsecond=0)
PARTNERS = ["GBR", "USA", "CAN", "EST", "FIN", "DEU"]
PAYLOAD = b'{"type":"bundle","objects":[]}' + b" " * 1500


def write_policy(folder: Path, identities: dict[str, Identity]) -> None:
    (folder / "agreements").mkdir(parents=True)
    (folder / "scheme.yaml").write_text(
        yaml.safe_dump({"policy": "BENCH", "levels": ["UNCLASSIFIED", "RESTRICTED"]})
    )
    entries = [i.public_entry() for i in identities.values()]
    (folder / "partners.yaml").write_text(yaml.safe_dump({"partners": entries}, width=1 << 16))
    agreement = {
        "id": "all",
        "title": "bench",
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2040-01-01T00:00:00Z",
        "ceiling": "RESTRICTED",
        "topics": ["*"],
        "parties": {p: {} for p in PARTNERS},
    }
    (folder / "agreements" / "all.yaml").write_text(yaml.safe_dump(agreement))


async def async_rate(
    fn: Callable[[], Awaitable[object]], n: int, repeats: int = 5, concurrency: int = 16
) -> float:
    """Median operations per second with ``concurrency`` tasks in flight, as a busy broker has:
    throughput is then bound by CPU, not by one round trip's latency."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await fn()

    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        samples.append(n // concurrency * concurrency / (time.perf_counter() - start))
    return statistics.median(samples)


async def main() -> None:
    n = 100 if "--quick" in sys.argv else 400
    identities = {p: Identity.generate(p, "classic", NOW - timedelta(days=1)) for p in PARTNERS}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        write_policy(Path(tmp) / "policies", identities)
        settings = Settings(
            redis_url=server.url, policies_dir=Path(tmp) / "policies", data_dir=Path(tmp)
        )
        policy = load_policies(settings.policies_dir)
        redis = aioredis.Redis.from_url(server.url)
        state = BrokerState(settings, policy, Store(redis), load_or_create(Path(tmp) / "key"))
        gbr = identities["GBR"]
        label = Label("RESTRICTED", PARTNERS[1:4], "AMBER")
        recipients = []
        for p in PARTNERS[1:4]:
            partner = policy.registry.get(p)
            assert partner is not None
            key = partner.enc_key("classic", NOW)
            assert key is not None
            recipients.append((p, key))
        envelopes = iter(
            [seal(PAYLOAD, label, recipients, gbr, now=datetime.now(UTC)) for _ in range(6 * n)]
        )
        kid, private = signing_key_of(gbr, NOW)
        url = "http://127.0.0.1:8000/v1/reports"
        body = next(envelopes)
        headers = sign_request(
            "POST",
            url,
            {},
            body,
            key_id=kid,
            private_key=private,
            created=int(time.time()),
            nonce=secrets.token_urlsafe(16),
        )

        async def bare_xadd() -> None:
            await redis.xadd("bench:baseline", {"report": "x", "originator": "GBR"})

        async def ingest() -> None:
            # Nonce recorded as on the real path (one fresh nonce per post).
            caller = Authenticated("GBR", kid, secrets.token_urlsafe(16), int(time.time()))
            await accept_report(state, caller, next(envelopes))

        baseline = await async_rate(bare_xadd, n)
        ingested = await async_rate(ingest, n)
        requests = rate(
            lambda: verify_request(
                "POST", url, headers, body, policy.registry, now=datetime.now(UTC)
            ),
            min_s=0.3,
        )
        await redis.aclose()
    rows = {
        "bare_xadd_per_s": round(baseline),
        "accept_report_per_s": round(ingested),
        "accept_vs_bare_xadd": round(ingested / baseline, 3),
        "verify_request_per_s": round(requests),
        "recipients_per_report": 3,
    }
    for name, value in rows.items():
        print(f"{name:>24}: {value:,}")
    print(f"written to {write('ingest', rows)}")


if __name__ == "__main__":
    asyncio.run(main())
