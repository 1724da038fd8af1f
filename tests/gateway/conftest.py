"""A real broker (real uvicorn, the session's real Redis) with a real gateway, on its own
uvicorn, in front of each of GBR, USA and DEU: the test world of tests/integration, where GBR
and USA share under gbr-usa and DEU shares nothing with GBR."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tearline.broker.runner import ThreadedBroker, broker_in_thread
from tearline.clients.protocol.label import Label
from tearline.gateway.app import create_app
from tearline.gateway.config import GatewayConfig, User, WritableCollection, hash_secret
from tests.integration.conftest import RunningBroker, me, running_broker

PASSWORD = "correct horse battery staple"
READER_PASSWORD = "reader reader reader"
TOKEN = "tok-" + "x" * 40
SHARE_USA = Label("RESTRICTED", ["USA", "DEU"], "GREEN", topics=["apt"])
SHARE_DEU = Label("RESTRICTED", ["DEU"], "GREEN", topics=["apt"])
#: Under the baltic agreement, to EST, which runs no gateway: a test reads EST's inbox itself.
SHARE_EST = Label("CONFIDENTIAL", ["EST"], "AMBER", topics=["apt"])


@dataclass
class Gateways:
    broker: RunningBroker
    nodes: dict[str, ThreadedBroker]

    def url(self, partner: str) -> str:
        return self.nodes[partner].url

    def root(self, partner: str) -> str:
        return f"{self.nodes[partner].url}/tearline/"


def gateway_config(partner: str, broker_url: str, folder: Path) -> GatewayConfig:
    cheap = 2**10  # the tests' scrypt cost (the default is 2**14)
    return GatewayConfig(
        broker=broker_url,
        identity=folder / f"{partner}.identity.json",  # unused: the identity is passed in
        database=folder / f"{partner}.db",
        page_size=50,
        max_content_length=256 * 1024,
        users=(
            User(
                "siem",
                password_hash=hash_secret(PASSWORD, n=cheap),
                token_hashes=(hash_secret(TOKEN, n=cheap),),
                read=("*",),
                write=("*",),
            ),
            User("reader", password_hash=hash_secret(READER_PASSWORD, n=cheap), read=("received",)),
        ),
        collections=(
            WritableCollection("share-usa", SHARE_USA, "Shared with the US"),
            WritableCollection("share-deu", SHARE_DEU, "Shared with Germany"),
            WritableCollection("share-est", SHARE_EST, "Shared with Estonia"),
        ),
    )


@pytest.fixture(scope="module")
def gateways(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    folder = tmp_path_factory.mktemp("gateway-world")
    with running_broker(redis_server.url, folder) as broker, contextlib.ExitStack() as stack:
        nodes = {
            partner: stack.enter_context(
                broker_in_thread(
                    create_app(gateway_config(partner, broker.url, folder), me(partner))
                )
            )
            for partner in ("GBR", "USA", "DEU")
        }
        yield Gateways(broker, nodes)


def indicator(tag: str = "") -> dict[str, Any]:
    oid = uuid.uuid4()
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{oid}",
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": f"test indicator {tag}",
        "pattern": "[ipv4-addr:value = '192.0.2.1']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    }


def bundle(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}


def wait_for(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def manifest_ids(gw: Gateways, partner: str, collection: str = "received") -> set[str]:
    """Every object id in a collection of a node's gateway, paging through the manifest."""
    from tearline.gateway.taxii import collection_id

    url = f"{gw.root(partner)}collections/{collection_id(partner, collection)}/manifest/"
    out: set[str] = set()
    params: dict[str, str] = {}
    with httpx.Client(auth=("siem", PASSWORD), timeout=10) as client:
        while True:
            r = client.get(
                url, params=params, headers={"Accept": "application/taxii+json;version=2.1"}
            )
            if r.status_code == 404:  # the collection exists once a report made it
                return out
            r.raise_for_status()
            body = r.json()
            out |= {o["id"] for o in body.get("objects", [])}
            if not body["more"]:
                return out
            params = {"next": body["next"]}
