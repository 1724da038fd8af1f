"""The HTTP edge on its own (a real uvicorn, no broker behind it): the failed-login budget, a
publish slower than the POST waits (pending, then complete), who may read a status."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tearline.broker.runner import broker_in_thread
from tearline.clients.errors import TearlineError
from tearline.clients.partner import Directory, Release
from tearline.clients.protocol.label import Label
from tearline.clients.protocol.receipt import Delivery, Receipt
from tearline.gateway import app as gateway_app
from tearline.gateway.app import create_app
from tearline.gateway.taxii import MEDIA_TYPE_TAXII, collection_id
from tests.gateway.conftest import PASSWORD, READER_PASSWORD, gateway_config, indicator
from tests.integration.conftest import me

TAXII = {"Accept": MEDIA_TYPE_TAXII, "Content-Type": MEDIA_TYPE_TAXII}


class SlowPublisher:
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.published: list[bytes] = []

    async def release(self, label: Label) -> Release:
        return Release(label, "classic", {}, {}, {})

    async def publish(self, payload: bytes, label: Label, release: Release) -> Receipt:
        await asyncio.sleep(self.delay_s)
        self.published.append(payload)
        return Receipt(str(uuid.uuid4()), "GBR", "x", "2026-01-01T00:00:00Z",
                       (Delivery("USA", "gbr-usa", "1-0"),))  # fmt: skip

    async def directory(self) -> Directory:
        raise TearlineError("no broker here")


@pytest.fixture
def publisher() -> SlowPublisher:
    return SlowPublisher(0.3)


@pytest.fixture
def client(tmp_path: Path, publisher: SlowPublisher) -> Iterator[httpx.Client]:
    config = gateway_config("GBR", "http://127.0.0.1:9", tmp_path)
    app = create_app(config, me("GBR"), subscribe=False, publisher=publisher)
    with broker_in_thread(app) as served, httpx.Client(base_url=served.url) as c:
        yield c


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def objects_path(name: str) -> str:
    return f"/tearline/collections/{collection_id('GBR', name)}/objects/"


def test_failed_logins_are_budgeted_per_address(client: httpx.Client) -> None:
    good = client.get("/taxii2/", headers={**TAXII, **basic("siem", PASSWORD)})
    assert good.status_code == 200
    codes = [
        client.get("/taxii2/", headers={**TAXII, **basic("siem", "wrong")}).status_code
        for _ in range(12)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
    r = client.get("/taxii2/", headers={**TAXII, **basic("reader", READER_PASSWORD)})
    assert r.status_code == 429  # a credential not yet verified waits too
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["http_status"] == "429"
    again = client.get("/taxii2/", headers={**TAXII, **basic("siem", PASSWORD)})
    assert again.status_code == 200  # one verified before is not held back


def test_a_slow_publish_answers_pending_then_completes(
    client: httpx.Client, publisher: SlowPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_app, "PUBLISH_WAIT_S", 0.01)
    obj = indicator("slow")
    r = client.post(objects_path("share-usa"), json={"objects": [obj]},
                    headers={**TAXII, **basic("siem", PASSWORD)})  # fmt: skip
    assert r.status_code == 202
    status: dict[str, Any] = r.json()
    assert status["status"] == "pending"
    assert status["pending_count"] == 1
    assert status["pendings"] == [{"id": obj["id"], "version": obj["modified"]}]
    url = f"/tearline/status/{status['id']}/"
    # The first check imports stix2-validator (seconds on a busy machine): a bound, not a timing.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.get(url, headers={**TAXII, **basic("siem", PASSWORD)}).json()
        if status["status"] == "complete":
            break
        time.sleep(0.02)
    assert status["status"] == "complete"
    assert status["success_count"] == 1
    assert "to USA under gbr-usa" in status["successes"][0]["message"]
    assert len(publisher.published) == 1
    # Another user, who may not write there, does not see it.
    other = client.get(url, headers={**TAXII, **basic("reader", READER_PASSWORD)})
    assert other.status_code == 404


def test_a_next_token_from_another_query_is_refused(client: httpx.Client) -> None:
    from tearline.gateway.taxii import Filter, encode_next

    token = encode_next(5, Filter().fingerprint("objects:somewhere-else:"))
    r = client.get(objects_path("received"), params={"next": token},
                   headers={**TAXII, **basic("siem", PASSWORD)})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error_code"] == "invalid_next"
