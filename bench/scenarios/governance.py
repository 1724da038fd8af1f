"""Governance: what checking the broker costs a partner node (issue 10).

A real ``tearline serve`` on a governed policy folder (a root of the fleet's governance keys,
threshold 1; the registry; one agreement signed by every party). The SDK publishes and
receives with verification on (``verify_governance`` once, then every publish is decided by
the node's own releasability engine on the verified documents instead of the broker's preview,
and every report received is checked against the verified registry and engine) and off (the
broker's directory and preview trusted), alternating, medians of the repeats. The one-off
``verify_governance`` (documents, head, the whole log) is timed on its own: the documents
change rarely, so a node does it at start and every few minutes; so is the node's decision,
beside the preview round trip it replaces.

    PYTHONPATH=. .venv/bin/python -m bench.scenarios.governance [--quick]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import Fleet, bench_redis, broker_env, flush, start_broker
from tearline import AsyncPartner, Label
from tearline.broker.runner import free_port
from tearline.clients.governance.documents import add_signature, generate_key, new_document
from tearline.clients.governance.policy import node_policy
from tearline.clients.partner import decisions_of
from tearline.clients.protocol.encoding import b64e

SENDER, RECEIVER = "P000", "P001"
LABEL = Label("RESTRICTED", [RECEIVER], "AMBER")
PAYLOAD = b"x" * 1500  # opaque bytes: the STIX checks are not what is measured here
CONTENT_TYPE = "application/octet-stream"
CONCURRENCY = 8  # publishes in flight from the one node


def write_governed(folder: Path, fleet: Fleet) -> bytes:
    """The fleet as a governed folder; the root's bytes (what nodes pin)."""
    keys = {pid: generate_key() for pid in fleet.identities}
    expires = "2040-01-01T00:00:00Z"

    def signed(body: dict[str, Any], *holders: str) -> bytes:
        doc = new_document(body)
        for holder in holders:
            doc = add_signature(doc, keys[holder][0])
        return doc

    root = signed(
        {
            "type": "root",
            "version": 1,
            "expires": expires,
            "threshold": 1,
            "keys": [{"public": b64e(pub), "holder": pid} for pid, (_, pub) in keys.items()],
        },
        *keys,
    )
    registry = signed(
        {
            "type": "registry",
            "version": 1,
            "expires": expires,
            "partners": [i.public_entry() for i in fleet.identities.values()],
            "scheme": {"policy": "BENCH", "levels": ["UNCLASSIFIED", "RESTRICTED"]},
        },
        SENDER,
    )
    agreement = {
        "id": "all",
        "title": "bench",
        "valid_from": "2020-01-01T00:00:00Z",
        "valid_until": "2040-01-01T00:00:00Z",
        "ceiling": "RESTRICTED",
        "topics": ["*"],
        "parties": {pid: {} for pid in fleet.identities},
    }
    gov = folder / "governance"
    gov.mkdir(parents=True)
    (gov / "root-1.json").write_bytes(root)
    (gov / "registry.json").write_bytes(registry)
    (gov / "agreement-all.json").write_bytes(
        signed({"type": "agreement", "agreement": agreement}, *keys)
    )
    return root


async def _publish_rate(url: str, fleet: Fleet, root: bytes | None, seconds: float) -> float:
    async with AsyncPartner(url, fleet.identities[SENDER]) as node:
        if root is not None:
            await node.verify_governance(root)
        await node.publish(PAYLOAD, LABEL, content_type=CONTENT_TYPE)  # warm: directory, keys
        done = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await node.publish(PAYLOAD, LABEL, content_type=CONTENT_TYPE)
                done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - started)


async def _receive_rate(url: str, fleet: Fleet, root: bytes | None, count: int) -> float:
    async with AsyncPartner(url, fleet.identities[SENDER]) as sender:
        await asyncio.gather(
            *(sender.publish(PAYLOAD, LABEL, content_type=CONTENT_TYPE) for _ in range(count))
        )
    async with AsyncPartner(url, fleet.identities[RECEIVER]) as node:
        if root is not None:
            await node.verify_governance(root)
        got = 0
        started = time.perf_counter()
        while got < count:
            batch = await node.inbox(limit=100, wait_s=2)
            if not batch:
                break
            got += len(batch)
            await node.ack([d.entry_id for d in batch])
        return got / (time.perf_counter() - started)


async def _verify_ms(
    url: str, fleet: Fleet, root: bytes, repeats: int
) -> tuple[float, float, float]:
    """The one-off check of the broker (ms); the decision a verified node makes itself on each
    publish (µs, the median of many: too small to see in the rates); and the preview round
    trip it replaces (ms)."""
    async with AsyncPartner(url, fleet.identities[SENDER]) as node:
        await node.verify_governance(root)  # warm the connection and the directory
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            verified = await node.verify_governance(root)
            times.append((time.perf_counter() - started) * 1000)
        policy, _ = node_policy(verified.trust)
        now = datetime.now(UTC)
        checks = []
        for _ in range(200):
            started = time.perf_counter()
            for _ in range(100):
                decisions_of(policy, SENDER, LABEL, "classic", now)
            checks.append((time.perf_counter() - started) * 1e4)  # µs per decision
        previews = []
        for _ in range(50):
            started = time.perf_counter()
            await node.preview(LABEL)
            previews.append((time.perf_counter() - started) * 1000)
        return statistics.median(times), statistics.median(checks), statistics.median(previews)


def governance(tmp: Path, redis_url: str, quick: bool) -> dict[str, Any]:
    fleet = Fleet(tmp / "gov-fleet-yaml", 5)
    folder = tmp / "gov-policies"
    root = write_governed(folder, fleet)
    flush(redis_url)
    port = free_port()
    env = broker_env(fleet, redis_url, tmp / "gov-data", port) | {
        "TEARLINE_POLICIES_DIR": str(folder)
    }
    (tmp / "gov-data").mkdir(exist_ok=True)
    server = start_broker(env, port, 1)
    seconds, count, repeats = (1.5, 150, 2) if quick else (4.0, 600, 4)
    runs: dict[str, dict[str, list[float]]] = {
        "on": {"publish": [], "receive": []},
        "off": {"publish": [], "receive": []},
    }
    try:
        for i in range(repeats):
            # Alternated, and the order swapped each repeat: the store grows as runs go by, so
            # always running one mode second would charge it for that.
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                pin = root if mode == "on" else None
                runs[mode]["publish"].append(
                    asyncio.run(_publish_rate(server.url, fleet, pin, seconds))
                )
                runs[mode]["receive"].append(
                    asyncio.run(_receive_rate(server.url, fleet, pin, count))
                )
        verify_ms, decide_us, preview_ms = asyncio.run(
            _verify_ms(server.url, fleet, root, 5 if quick else 15)
        )
    finally:
        server.stop()
    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in runs.items()}
    return {
        "tool": f"the SDK in-process, {CONCURRENCY} publishes in flight; receive by long poll "
        "(100 per poll, acked in one request)",
        "publish_per_s": {m: round(med[m]["publish"], 1) for m in med},
        "receive_per_s": {m: round(med[m]["receive"], 1) for m in med},
        "publish_on_vs_off": round(med["on"]["publish"] / med["off"]["publish"], 3),
        "receive_on_vs_off": round(med["on"]["receive"] / med["off"]["receive"], 3),
        "verify_governance_ms": round(verify_ms, 2),
        "node_decision_us": round(decide_us, 2),
        "preview_round_trip_ms": round(preview_ms, 3),
        "runs": {m: {k: [round(x, 1) for x in v] for k, v in r.items()} for m, r in runs.items()},
    }


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(prefix="tearline-bench-gov-") as name:
        tmp = Path(name)
        with bench_redis(tmp) as server:
            print(governance(tmp, server.url, quick))


if __name__ == "__main__":
    main()
