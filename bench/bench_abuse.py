"""A bounded abuse run (loopback only, a few seconds): what one hostile partner and an
unauthenticated flooder cost another partner, measured against the same partner in the same run
with no abuse going on.

The broker is ``tearline serve`` with its default settings (but for one: see the storage flood),
on an embedded Redis with ``maxmemory`` as ``tearline serve``'s own (2 GiB, ``noeviction``). The
partner who behaves (GBR) publishes reports to EST, who receives them over SSE; we time each
publish and each post → delivery, once with nothing else going on and once during an attack,
for each of three attacks in turn (each with its own baseline, just before it):

1. ``abuse``: at the same time,

   - USA opens 200 SSE streams (past its share of waiting subscribers: the rest get 429);
   - a header flood: connections sending requests with 20,000 header lines, over and over;
   - 100 slow clients: connections that send half a request line and then nothing;
   - forged signatures: requests with a bad signature, back to back.

2. ``storage_flood`` (issue 16, item 5): USA posts batches of four large envelopes (256, 512
   and 900 KB, sealed to GBR, who never reads them) at 4 requests/s, as the attack that once
   stored 333 MB in 10 s. The originator quota (``max_originator_stored_bytes``, 512 MiB by
   default) is lowered to 16 MiB (32 MiB in a full run) so the flood reaches it within the
   run's seconds; the cost budget and every other bound are the defaults. Printed: the
   flooder's reports accepted and refused, by code (``rate_limited``,
   ``originator_quota_exceeded``, ``recipient_inbox_full``, ``store_full``), and Redis's
   ``used_memory`` and AOF size before and after.

3. ``huge_label_previews`` (issue 16, item 6): USA sends releasability previews at 15/s, in
   turn a 1 MB label (86,000 topics), a small one listing 65 topics (one past the limit) and the
   largest label the limits admit (64 topics of 64 characters). Printed: the answers, by code.

The abusers connect from 127.0.0.2, .3 and .4, the partner who behaves from 127.0.0.1: other
hosts.

    python -m bench.bench_abuse [--quick]

Prints, per attack, medians, p95 and p99 of both phases and their ratios (with 20 reports a
phase, ``--quick``'s p99 is the slowest one), and writes bench/results/abuse.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench._timing import write

sys.path.insert(0, str(Path(__file__).parents[1]))

from tearline import Label
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.broker.settings import MiB, Settings
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tearline.clients.protocol.envelope import seal
from tearline.clients.protocol.identity import Partner
from tests.integration.conftest import me, write_policies
from tests.processes import BrokerProcess

TO_EST = Label("RESTRICTED", ["EST"], "AMBER", topics=["apt"])
BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
#: How long an attack runs before the partner who behaves is timed again: in full swing.
WARM_UP_S = 2.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def behaving_partner(url: str, reports: int) -> dict[str, list[float]]:
    """GBR publishes ``reports`` reports to EST, one after the other; EST receives them."""
    publish_s: list[float] = []
    posted_at: dict[str, float] = {}
    arrived_at: dict[str, float] = {}
    arrived = asyncio.Event()
    async with AsyncPartner(url, me("GBR")) as gbr, AsyncPartner(url, me("EST")) as est:

        async def receive() -> None:
            async for item in est.subscribe():
                arrived_at[item.id] = time.perf_counter()  # may beat the publish's return
                await item.ack()
                if len(arrived_at) == reports:
                    arrived.set()

        receiver = asyncio.create_task(receive())
        await gbr.directory()
        for _ in range(reports):
            started = time.perf_counter()
            receipt = await gbr.publish(BUNDLE, TO_EST)
            publish_s.append(time.perf_counter() - started)
            posted_at[receipt.id] = started
            await asyncio.sleep(0.02)
        await asyncio.wait_for(arrived.wait(), 60)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
    delivery_s = [arrived_at[i] - posted_at[i] for i in posted_at]
    return {"publish_s": publish_s, "delivery_s": delivery_s}


# The abusers come from another host than the partner who behaves (another loopback address):
# the per-address budget for failed signatures is theirs, not his.
ABUSER = "127.0.0.2"
# The hostile partner's streams from a third, so the forged flood's address budget does not
# refuse them first: what stops them must be the per-partner share.
STREAMER = "127.0.0.3"
# The storage flood and the huge labels from a fourth: a partner's own address.
GREEDY = "127.0.0.4"


def from_abuser(address: str = ABUSER) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(local_address=address)


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(ABUSER, 0))


async def abuse(url: str, port: int, stop: asyncio.Event, tally: Counter[str]) -> None:
    async def streams() -> None:
        timeout = httpx.Timeout(30, read=None)
        async with httpx.AsyncClient(timeout=timeout, transport=from_abuser(STREAMER)) as client:
            stream_url = f"{url}/v1/inbox/stream"
            opened = []
            for i in range(200):
                headers = {"accept": "text/event-stream"}
                session = f"{stream_url}?consumer=abuse-{i}"
                headers |= sign_as(me("USA"), "GET", session, headers, None, now=datetime.now(UTC))
                response = await client.send(
                    client.build_request("GET", session, headers=headers), stream=True
                )
                tally[f"stream {response.status_code}"] += 1
                if response.status_code == 200:
                    opened.append(response)  # held open, unread, until the abuse ends
                else:
                    await response.aclose()
            await stop.wait()
            for response in opened:
                await response.aclose()

    async def header_flood() -> None:
        flood = (
            b"GET /v1/partners HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + b"".join(b"X-Flood-%d: aaaaaaaa\r\n" % i for i in range(20_000))
            + b"\r\n"
        )
        while not stop.is_set():
            reader, writer = await connect(port)
            with contextlib.suppress(ConnectionError):
                writer.write(flood)
                await writer.drain()
                answer = await reader.read(64)
                tally["flood " + answer[9:12].decode(errors="replace")] += 1
            writer.close()

    async def slow_clients() -> None:
        held = []
        for _ in range(100):
            reader, writer = await connect(port)
            writer.write(b"GET /v1/partners HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            held.append((reader, writer))
        tally["slow clients"] += len(held)
        await stop.wait()
        for _, writer in held:
            writer.close()

    async def forged() -> None:
        async with httpx.AsyncClient(timeout=30, transport=from_abuser()) as client:
            partners = f"{url}/v1/partners"
            headers = sign_as(me("USA"), "GET", partners, {}, None, now=datetime.now(UTC))
            headers["Signature"] = "sig1=:" + "A" * 86 + "==:"
            while not stop.is_set():
                tally[f"forged {(await client.get(partners, headers=headers)).status_code}"] += 1

    await asyncio.gather(streams(), header_flood(), slow_clients(), forged())


# --- 5. the storage flood -----------------------------------------------------------------------

#: The envelopes' sizes (bytes on the wire), in turn; four to a batch, four batches a second.
FLOOD_SIZES = (256_000, 512_000, 900_000)
FLOOD_BATCH = 4
FLOOD_RATE_PER_S = 4.0


def flood_quota(quick: bool) -> int:
    """The originator quota the storage flood runs into: reached within the run's seconds."""
    return (16 if quick else 32) * MiB


def flood_envelopes(quota: int) -> list[bytes]:
    """USA's envelopes to GBR: enough to pass ``quota`` by half. One plaintext, sealed anew for
    each (an envelope refused is posted again later: nothing of it was stored)."""
    now = datetime.now(UTC)
    key = Partner.from_dict(me("GBR").public_entry()).enc_key("pq-hybrid", now)
    assert key is not None
    label = Label("SECRET", ["GBR"], "AMBER")
    plaintext = os.urandom(max(FLOOD_SIZES))
    count = int(1.5 * quota / statistics.mean(FLOOD_SIZES)) + FLOOD_BATCH
    options = {"suite": "pq-hybrid", "content_type": "application/octet-stream"}
    envelopes = []
    for i in range(count):
        size = (FLOOD_SIZES[i % len(FLOOD_SIZES)] - 3300) * 3 // 4  # base64 and the header
        sealed = seal(plaintext[:size], label, [("GBR", key)], me("USA"), now=now, **options)
        envelopes.append(sealed)
    return envelopes


async def storage_flood(
    url: str, envelopes: list[bytes], stop: asyncio.Event, tally: Counter[str]
) -> None:
    """USA posts batches of large envelopes at ``FLOOD_RATE_PER_S`` (open loop: a slow answer
    does not slow the schedule down, though one request waits for the one before it)."""
    batch_url = f"{url}/v1/reports:batch"
    pool = deque(envelopes)
    period = 1 / FLOOD_RATE_PER_S
    due = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, transport=from_abuser(GREEDY)) as client:
        while not stop.is_set():
            batch = [pool.popleft() for _ in range(min(FLOOD_BATCH, len(pool)))]
            if not batch:
                tally["flooder ran out of envelopes"] += 1
                await stop.wait()
                break
            body = b"\n".join(batch)
            headers = {"content-type": "application/x-ndjson"}
            headers |= sign_as(me("USA"), "POST", batch_url, headers, body, now=datetime.now(UTC))
            answer = await client.post(batch_url, content=body, headers=headers)
            tally["requests"] += 1
            tally["bytes sent"] += len(body)
            if answer.status_code == 200:
                for envelope, result in zip(batch, answer.json()["results"], strict=True):
                    if result["status"] in (200, 201):
                        tally["accepted"] += 1
                        tally["accepted bytes"] += len(envelope)
                    else:
                        tally[f"refused {result['status']} {_code(result['body'])}"] += 1
                        pool.append(envelope)
            else:  # the whole request refused (the cost budget: rate_limited)
                tally[f"refused {answer.status_code} {_code(answer.json())}"] += len(batch)
                pool.extend(batch)
            due += period
            await asyncio.sleep(max(0.0, due - time.perf_counter()))


def _code(body: Any) -> str:
    return str(body.get("error", {}).get("code")) if isinstance(body, dict) else "?"


def redis_memory(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    try:
        memory, persistence = client.info("memory"), client.info("persistence")
    finally:
        client.close()
    return {
        "used_memory": int(memory["used_memory"]),
        "maxmemory": int(memory["maxmemory"]),
        "aof_bytes": int(persistence.get("aof_current_size", 0)),
    }


# --- 6. huge labels -----------------------------------------------------------------------------

PREVIEW_RATE_PER_S = 15.0


def preview_bodies() -> dict[str, str]:
    """Preview bodies at and past the label limits, by what they hold."""
    label: dict[str, Any] = {"classification": "SECRET", "releasable_to": ["GBR"], "tlp": "AMBER"}

    def topics(n: int, width: int) -> list[str]:
        return [f"t{i:0{width - 1}d}" for i in range(n)]

    return {
        "1 MB label, 86,000 topics": json.dumps({"label": label | {"topics": topics(86_000, 9)}}),
        "65 topics": json.dumps({"label": label | {"topics": topics(65, 8)}}),
        "64 topics of 64 characters": json.dumps({"label": label | {"topics": topics(64, 64)}}),
    }


async def huge_label_previews(url: str, stop: asyncio.Event, tally: Counter[str]) -> None:
    preview = f"{url}/v1/releasability/preview"
    bodies = [(kind, body.encode()) for kind, body in preview_bodies().items()]
    period = 1 / PREVIEW_RATE_PER_S
    due = time.perf_counter()
    sent = 0
    async with httpx.AsyncClient(timeout=60, transport=from_abuser(GREEDY)) as client:
        while not stop.is_set():
            kind, body = bodies[sent % len(bodies)]
            sent += 1
            headers = {"content-type": "application/json"}
            headers |= sign_as(me("USA"), "POST", preview, headers, body, now=datetime.now(UTC))
            try:
                answer = await client.post(preview, content=body, headers=headers)
            except httpx.TransportError as exc:  # refused before the body was read
                tally[f"{kind}: {type(exc).__name__}"] += 1
            else:
                code = _code(answer.json()) if answer.status_code >= 400 else ""
                tally[f"{kind}: {answer.status_code} {code}".rstrip()] += 1
            due += period
            await asyncio.sleep(max(0.0, due - time.perf_counter()))


# --- the runs -----------------------------------------------------------------------------------

Attack = Callable[[asyncio.Event, Counter[str]], Coroutine[Any, Any, None]]


async def measured(url: str, reports: int, attack: Attack) -> tuple[dict[str, Any], Counter[str]]:
    """The partner who behaves without, then during, ``attack``: figures and the attack's tally."""
    quiet = await behaving_partner(url, reports)
    stop = asyncio.Event()
    tally: Counter[str] = Counter()
    attacking = asyncio.create_task(attack(stop, tally))
    await asyncio.sleep(WARM_UP_S)  # the attack is in full swing
    loud = await behaving_partner(url, reports)
    stop.set()
    await attacking
    out: dict[str, Any] = {}
    for name in ("publish_s", "delivery_s"):
        q, a = quiet[name], loud[name]
        out[name] = {
            "quiet_median_ms": round(statistics.median(q) * 1000, 2),
            "quiet_p95_ms": round(percentile(q, 0.95) * 1000, 2),
            "quiet_p99_ms": round(percentile(q, 0.99) * 1000, 2),
            "abused_median_ms": round(statistics.median(a) * 1000, 2),
            "abused_p95_ms": round(percentile(a, 0.95) * 1000, 2),
            "abused_p99_ms": round(percentile(a, 0.99) * 1000, 2),
            "median_ratio": round(statistics.median(a) / statistics.median(q), 2),
            "p99_ratio": round(percentile(a, 0.99) / percentile(q, 0.99), 2),
        }
    return out, tally


async def run(
    url: str, port: int, redis_url: str, reports: int, envelopes: list[bytes]
) -> dict[str, Any]:
    out, tally = await measured(url, reports, lambda stop, t: abuse(url, port, stop, t))
    out["abuse"] = dict(tally)

    before = redis_memory(redis_url)
    flood, tally = await measured(
        url, reports, lambda stop, t: storage_flood(url, envelopes, stop, t)
    )
    after = redis_memory(redis_url)
    refused = {k.removeprefix("refused "): v for k, v in tally.items() if k.startswith("refused")}
    flood["flooder"] = {
        "requests": tally["requests"],
        "mb_sent": round(tally["bytes sent"] / 1e6, 1),
        "reports_accepted": tally["accepted"],
        "mb_accepted": round(tally["accepted bytes"] / 1e6, 1),
        "reports_refused": refused,
        "ran_out_of_envelopes": bool(tally["flooder ran out of envelopes"]),
    }
    flood["redis"] = {"before": before, "after": after}
    out["storage_flood"] = flood

    previews, tally = await measured(
        url, reports, lambda stop, t: huge_label_previews(url, stop, t)
    )
    previews["previews"] = dict(tally)
    out["huge_label_previews"] = previews
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 reports a phase, not 100")
    args = parser.parse_args()
    quota = flood_quota(args.quick)
    envelopes = flood_envelopes(quota)
    maxmemory = Settings.model_fields["redis_maxmemory_bytes"].default
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_policies(folder / "policies")
        with (
            EmbeddedRedis(folder / "redis", port=free_port(), maxmemory_bytes=maxmemory) as server,
            BrokerProcess(
                redis_url=server.url,
                policies=folder / "policies",
                data_dir=folder / "data",
                env={"TEARLINE_MAX_ORIGINATOR_STORED_BYTES": str(quota)},
            ) as broker,
        ):
            result = asyncio.run(
                run(broker.url, broker.port, server.url, 20 if args.quick else 100, envelopes)
            )
            alive = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
            alive.close()
    result["storage_flood"]["originator_quota_bytes"] = quota
    for name in ("publish_s", "delivery_s"):
        print(name, result[name])
    print("abuse:", result["abuse"])
    flood = result["storage_flood"]
    for name in ("publish_s", "delivery_s"):
        print("storage flood:", name, flood[name])
    flooder, memory = flood["flooder"], flood["redis"]
    print(
        f"storage flood: the flooder sent {flooder['requests']} batches ({flooder['mb_sent']} MB);"
        f" {flooder['reports_accepted']} reports accepted ({flooder['mb_accepted']} MB, quota"
        f" {_mb(quota)}), refused: {flooder['reports_refused']}"
    )
    print(
        f"storage flood: Redis used_memory {_mb(memory['before']['used_memory'])} → "
        f"{_mb(memory['after']['used_memory'])} (maxmemory {_mb(memory['after']['maxmemory'])}),"
        f" AOF {_mb(memory['before']['aof_bytes'])} → {_mb(memory['after']['aof_bytes'])}"
    )
    previews = result["huge_label_previews"]
    for name in ("publish_s", "delivery_s"):
        print("huge-label previews:", name, previews[name])
    print("huge-label previews:", previews["previews"])
    print("written to", write("abuse", result))


if __name__ == "__main__":
    main()
