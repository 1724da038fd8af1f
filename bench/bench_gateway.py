"""Objects per second through two gateways: ``add_objects`` on GBR's gateway (checked, sealed,
published) until ``get_objects`` on USA's gateway (received, verified, opened, stamped, stored)
has served every one of them, with the OASIS client (taxii2-client) at both ends.

Separate processes on loopback: ``tearline serve`` (with its embedded redis-server) and two
``tearline gateway serve``. The baseline, measured in the same run with the same client and the
same objects in the same envelopes: medallion 3 (the OASIS TAXII 2.1 reference server, memory
backend, in its own venv under bench/.cache), ``add_objects`` then ``get_objects`` until it has
served every one. medallion stores and serves; the gateways also check, seal, sign, route
through a broker, verify, open and stamp, so the ratio is the price of all that.

    python -m bench.bench_gateway [--quick]

Prints the median of the runs and writes bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

import httpx
import yaml
from taxii2client.v21 import Collection

from bench._timing import write
from tearline.broker.runner import free_port
from tearline.clients.keyfile import write_keypair
from tearline.gateway.config import hash_secret
from tearline.gateway.taxii import collection_id
from tests.gateway.conftest import PASSWORD, indicator
from tests.integration.conftest import me, write_policies
from tests.processes import BrokerProcess


def collection(url: str, partner: str, name: str) -> Collection:
    cid = collection_id(partner, name)
    return Collection(f"{url}/tearline/collections/{cid}/", user="siem", password=PASSWORD)


def one_run(gbr: str, usa: str, objects: int, per_envelope: int) -> float:
    """Objects per second from the first add_objects to the last object served at USA."""
    share = collection(gbr, "GBR", "share-usa")
    received = collection(usa, "USA", "received")
    tag = uuid.uuid4().hex[:8]
    batch = [indicator(tag) for _ in range(objects)]
    wanted = {o["id"] for o in batch}
    start = time.perf_counter()
    for i in range(0, objects, per_envelope):
        status = share.add_objects(
            {"objects": batch[i : i + per_envelope]}, wait_for_completion=False
        )
        if status.failure_count:
            raise RuntimeError(f"refused: {status.failures[0]}")
    seen: set[str] = set()
    filters: dict[str, Any] = {"type": "indicator"}
    deadline = time.monotonic() + 120
    while not wanted <= seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(wanted & seen)} of {objects} arrived")
        page = received.get_objects(limit=100, **filters)
        got = page.get("objects", [])
        seen |= {o["id"] for o in got}
        if page.get("more"):
            filters["next"] = page["next"]
        elif got:  # caught up: from now on, what was added after the last object served
            last = received.get_manifest(id=got[-1]["id"])["objects"][0]["date_added"]
            filters = {"type": "indicator", "added_after": last}
        else:
            time.sleep(0.01)
    return objects / (time.perf_counter() - start)


def gateway_yaml(partner: str, broker_url: str, folder: Path, port: int) -> Path:
    """A gateway's configuration file, and its identity file beside it."""
    write_keypair(me(partner), folder / partner)
    config = {
        "broker": broker_url,
        "identity": f"{partner}/{partner}.identity.json",
        "database": f"{partner}/gateway.db",
        "listen": {"host": "127.0.0.1", "port": port},
        "users": {"siem": {"password": hash_secret(PASSWORD), "read": ["*"], "write": ["*"]}},
        "collections": {
            "share-usa": {
                "label": {
                    "classification": "RESTRICTED",
                    "releasable_to": ["USA"],
                    "tlp": "GREEN",
                    "topics": ["apt"],
                }
            },
        },
    }
    path = folder / f"{partner}.gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def gateway_process(config: Path, port: int, log: Path) -> Iterator[str]:
    """``tearline gateway serve`` until the block ends; yields its URL once it answers."""
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from tearline.clients.cli import main; main()",
             "gateway", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start; see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/taxii2/", timeout=1).status_code == 401:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def medallion_run(url: str, objects: int, per_envelope: int) -> float:
    """The same measurement against one medallion collection: add, then read back every one."""
    from bench.peers.medallion import PASSWORD as M_PASSWORD
    from bench.peers.medallion import USER as M_USER

    collection = Collection(url, user=M_USER, password=M_PASSWORD)
    tag = uuid.uuid4().hex[:8]
    batch = [indicator(tag) for _ in range(objects)]
    wanted = {o["id"] for o in batch}
    start = time.perf_counter()
    for i in range(0, objects, per_envelope):
        collection.add_objects({"objects": batch[i : i + per_envelope]})
    seen: set[str] = set()
    for _ in range(3):  # medallion stores synchronously: one full read finds them all
        filters: dict[str, Any] = {"type": "indicator"}
        while True:
            page = collection.get_objects(limit=100, **filters)
            seen |= {o["id"] for o in page.get("objects", [])}
            if not page.get("more"):
                break
            filters["next"] = page["next"]
        if wanted <= seen:
            return objects / (time.perf_counter() - start)
    raise RuntimeError(f"medallion served only {len(wanted & seen)} of {objects}")


def medallion_rates(objects: int, per_envelope: int, runs: int, tmp: Path) -> list[float]:
    """A fresh medallion per run: its memory backend scans every stored object on a read, so
    a collection left over from the run before would slow the next one (149, 42, 19 objects/s
    in one test of three runs on one server)."""
    from bench.peers.medallion import API_ROOT, COLLECTION, ensure_venv, run_medallion

    python = ensure_venv(Path(__file__).parent / ".cache")
    rates = []
    for _ in range(runs):
        port = free_port()
        process = run_medallion(python, port, tmp)
        try:
            url = f"http://127.0.0.1:{port}/{API_ROOT}/collections/{COLLECTION}/"
            medallion_run(url, per_envelope, per_envelope)  # warm up
            rates.append(medallion_run(url, objects, per_envelope))
        finally:
            process.kill()
            process.wait(10)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a small run, for CI")
    args = parser.parse_args()
    objects, per_envelope, runs = (200, 50, 3) if args.quick else (1000, 100, 3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_policies(folder / "policies")
        with contextlib.ExitStack() as stack:
            broker = stack.enter_context(
                BrokerProcess(
                    redis_url=None, policies=folder / "policies", data_dir=folder / "data"
                )
            )
            urls = {}
            for partner in ("GBR", "USA"):
                port = free_port()
                config = gateway_yaml(partner, broker.url, folder, port)
                urls[partner] = stack.enter_context(
                    gateway_process(config, port, folder / f"{partner}.log")
                )
            one_run(urls["GBR"], urls["USA"], per_envelope, per_envelope)  # warm up
            rates = [one_run(urls["GBR"], urls["USA"], objects, per_envelope) for _ in range(runs)]
        peer = medallion_rates(objects, per_envelope, runs, folder)
    median = statistics.median(rates)
    peer_median = statistics.median(peer)
    print(
        f"gateway → broker → gateway: {median:,.0f} objects/s (median of {runs} runs of "
        f"{objects} objects, {per_envelope} per envelope; runs: "
        + ", ".join(f"{r:,.0f}" for r in rates)
        + ")"
    )
    print(
        f"medallion add then get, same objects and client: {peer_median:,.0f} objects/s "
        f"(runs: {', '.join(f'{r:,.0f}' for r in peer)}); gateway/medallion "
        f"{median / peer_median:.3f}"
    )
    path = write(
        "gateway",
        {
            "objects_per_s": median,
            "runs": rates,
            "medallion_objects_per_s": peer_median,
            "medallion_runs": peer,
            "vs_medallion": median / peer_median,
            "objects": objects,
            "per_envelope": per_envelope,
            "setup": "tearline serve (embedded redis-server) and two `tearline gateway serve`, "
            "separate processes on loopback",
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
