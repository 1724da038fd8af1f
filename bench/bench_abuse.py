"""A bounded abuse run (loopback only, a few seconds): what one hostile partner and an
unauthenticated flooder cost another partner, measured against the same partner in the same run
with no abuse going on.

The broker is ``tearline serve`` with its default settings, on an embedded Redis. The partner
who behaves (GBR) publishes reports to EST, who receives them over SSE; we time each publish
and each post → delivery. During the abuse phase, at the same time:

- USA opens 200 SSE streams (past its share of waiting subscribers: the rest get 429);
- a header flood: connections sending requests with 20,000 header lines, over and over;
- 100 slow clients: connections that send half a request line and then nothing;
- forged signatures: requests with a bad signature, back to back.

The abusers connect from 127.0.0.2 and .3, the partner who behaves from 127.0.0.1: other hosts.

    python -m bench.bench_abuse [--quick]

Prints medians and p95 of both phases and their ratio, and writes bench/results/abuse.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench._timing import write

sys.path.insert(0, str(Path(__file__).parents[1]))

from broker.embedded import EmbeddedRedis, free_port
from clients import Label
from clients.httpsig import sign_as
from clients.partner import AsyncPartner
from tests.integration.conftest import me, write_policies
from tests.processes import BrokerProcess

TO_EST = Label("RESTRICTED", ["EST"], "AMBER", topics=["apt"])
BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}


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


async def run(url: str, port: int, reports: int) -> dict[str, object]:
    quiet = await behaving_partner(url, reports)
    stop = asyncio.Event()
    tally: Counter[str] = Counter()
    abusing = asyncio.create_task(abuse(url, port, stop, tally))
    await asyncio.sleep(2)  # the abuse is in full swing
    loud = await behaving_partner(url, reports)
    stop.set()
    await abusing
    out: dict[str, object] = {"abuse": dict(tally)}
    for name in ("publish_s", "delivery_s"):
        q, a = quiet[name], loud[name]
        out[name] = {
            "quiet_median_ms": round(statistics.median(q) * 1000, 2),
            "quiet_p95_ms": round(percentile(q, 0.95) * 1000, 2),
            "abused_median_ms": round(statistics.median(a) * 1000, 2),
            "abused_p95_ms": round(percentile(a, 0.95) * 1000, 2),
            "median_ratio": round(statistics.median(a) / statistics.median(q), 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 reports a phase, not 100")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_policies(folder / "policies")
        with (
            EmbeddedRedis(folder / "redis", port=free_port()) as server,
            BrokerProcess(
                redis_url=server.url, policies=folder / "policies", data_dir=folder / "data"
            ) as broker,
        ):
            result = asyncio.run(run(broker.url, broker.port, 20 if args.quick else 100))
            alive = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
            alive.close()
    for name in ("publish_s", "delivery_s"):
        print(name, result[name])
    print("abuse:", result["abuse"])
    print("written to", write("abuse", result))


if __name__ == "__main__":
    main()
