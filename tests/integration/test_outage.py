"""A Redis outage (DESIGN §11): every endpoint answers 503 with ``Retry-After`` and the error
body, ``/readyz`` says not ready, nothing is half-written, and the same broker process serves
again as soon as Redis is back — no restart.

Redis here is a real ``redis-server`` of the test's own (AOF ``always``), SIGKILLed mid-test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tearline import Label
from tearline.broker.app import create_app
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.broker.policy.load import load_policies
from tearline.broker.runner import ThreadedBroker, broker_in_thread
from tearline.broker.settings import Settings
from tearline.broker.store import report_key
from tearline.clients.httpsig import sign_as
from tearline.clients.protocol.encoding import b64d
from tearline.clients.protocol.envelope import seal
from tearline.clients.sync import Partner
from tests.cluster import redis_cluster
from tests.integration.conftest import me, write_policies

LABEL = Label("SECRET", ["USA"], "AMBER")
BUNDLE = b'{"type":"bundle","id":"bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8","objects":[]}'


def sealed_for_usa(policies: Path) -> tuple[bytes, str]:
    now = datetime.now(UTC)
    usa = load_policies(policies).registry.get("USA")
    assert usa is not None
    key = usa.enc_key("pq-hybrid", now)
    assert key is not None
    envelope = seal(BUNDLE, LABEL, [("USA", key)], me("GBR"), now=now, suite="pq-hybrid")
    return envelope, str(json.loads(b64d(json.loads(envelope)["header"]))["id"])


def signed(who: str | None, method: str, url: str, body: bytes | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"} if body is not None else {}
    if who is not None:
        headers |= sign_as(me(who), method, url, headers, body, now=datetime.now(UTC))
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, content=body, headers=headers)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, ThreadedBroker, Path]]:
    policies = tmp_path / "policies"
    write_policies(policies)
    with EmbeddedRedis(tmp_path / "redis", port=free_port(), appendfsync="always") as server:
        settings = Settings(
            redis_url=server.url,
            policies_dir=policies,
            data_dir=tmp_path / "data",
            visibility_timeout_ms=1000,
            sse_heartbeat_s=1,
        )
        with broker_in_thread(create_app(settings)) as running:
            yield server, running, policies
            server.start()  # the broker's shutdown finds it running either way


# Every endpoint, as the partner (or operator) entitled to call it would.
ENDPOINTS: list[Any] = [
    pytest.param("GBR", "POST", "/v1/releasability/preview",
                 b'{"label": {"classification": "SECRET", "releasable_to": ["USA"], '
                 b'"tlp": "AMBER"}}', id="preview"),
    pytest.param("GBR", "POST", "/v1/reports", "ENVELOPE", id="post-report"),
    pytest.param("USA", "GET", "/v1/inbox?wait=2", None, id="long-poll"),
    pytest.param("USA", "GET", "/v1/inbox/stream", None, id="sse-stream"),
    pytest.param("USA", "POST", "/v1/inbox/ack", b'{"ids": ["1-0"]}', id="ack"),
    pytest.param("GBR", "POST", "/v1/reports/REPORT/recall", None, id="recall"),
    pytest.param("USA", "GET", "/v1/partners", None, id="directory"),
    pytest.param("USA", "GET", "/v1/agreements", None, id="agreements"),
    pytest.param("OPS-HQ", "GET", "/v1/audit", None, id="audit"),
]  # fmt: skip


@pytest.mark.parametrize(("who", "method", "path", "body"), ENDPOINTS)
def test_every_endpoint_answers_503_with_retry_after_while_redis_is_down(
    world: tuple[EmbeddedRedis, ThreadedBroker, Path],
    who: str,
    method: str,
    path: str,
    body: bytes | str | None,
) -> None:
    server, running, policies = world
    envelope, report_id = sealed_for_usa(policies)
    with Partner(running.url, me("GBR")) as gbr:
        stored = gbr.post_envelope(envelope)  # a report that exists, for the recall case
    assert stored.id == report_id
    fresh, fresh_id = sealed_for_usa(policies)
    payload = fresh if body == "ENVELOPE" else body
    assert payload is None or isinstance(payload, bytes)
    server.kill()

    response = signed(who, method, running.url + path.replace("REPORT", report_id), payload)

    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] in {"unavailable", "store_unavailable"}
    ready = httpx.get(f"{running.url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] is False

    server.start()
    # Nothing half-written: the report refused during the outage is not stored, at all.
    client: Any = redis.Redis.from_url(server.url)
    try:
        assert not client.exists(report_key(fresh_id))
    finally:
        client.close()


def test_the_broker_serves_again_when_redis_is_back_without_a_restart(
    world: tuple[EmbeddedRedis, ThreadedBroker, Path],
) -> None:
    server, running, _policies = world
    with Partner(running.url, me("GBR")) as gbr, Partner(running.url, me("USA")) as usa:
        before = gbr.publish(BUNDLE, LABEL, suite="pq-hybrid")
        server.kill()
        assert signed("USA", "GET", f"{running.url}/v1/inbox").status_code == 503
        server.start()
        assert httpx.get(f"{running.url}/readyz", timeout=30).status_code == 200
        after = gbr.publish(BUNDLE, LABEL, suite="pq-hybrid")
        received = [r.id for r in usa.inbox(wait_s=5, limit=10)]
    # The report accepted before Redis died was fsynced (appendfsync always) and comes back.
    assert received == [before.id, after.id]


def test_a_stream_open_when_redis_dies_ends_with_an_error_event_not_a_crash(
    world: tuple[EmbeddedRedis, ThreadedBroker, Path],
) -> None:
    server, running, _ = world
    url = f"{running.url}/v1/inbox/stream"
    headers = sign_as(me("USA"), "GET", url, {}, None, now=datetime.now(UTC))
    events: list[str] = []
    with (
        httpx.Client(timeout=httpx.Timeout(30, read=30)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        killed = False
        for line in response.iter_lines():
            if line.startswith(":") and not killed:  # the first heartbeat: the stream is up
                server.kill()
                killed = True
            if line.startswith("event:"):
                events.append(line.removeprefix("event:").strip())
    # The stream ended by itself, after telling the client why and when to come back.
    assert events == ["error"]


def test_a_redis_that_answers_but_refuses_writes_is_not_ready_until_it_takes_them(
    redis_server: Any, tmp_path: Path
) -> None:
    # An operator's REDIS_URL names a read-only replica (or a primary just demoted): PING
    # answers, every write is refused. Until the inboxes are set up, no report can be routed,
    # so /readyz must not send partners here; once the replica is promoted, it is ready without
    # a restart.
    policies = tmp_path / "policies"
    write_policies(policies)
    with EmbeddedRedis(tmp_path / "replica", port=free_port()) as replica:
        client = redis.Redis.from_url(replica.url)
        primary = redis.Redis.from_url(redis_server.url).connection_pool.connection_kwargs
        client.replicaof(primary["host"], primary["port"])
        settings = Settings(
            redis_url=replica.url,
            policies_dir=policies,
            data_dir=tmp_path / "data",
            redis_connect_timeout_s=1,
        )
        with broker_in_thread(create_app(settings)) as broker:
            ready = httpx.get(f"{broker.url}/readyz", timeout=30)
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["redis"] is True  # it answers a PING
            assert ready.json()["checks"]["inboxes"] == "setting up"
            envelope, report_id = sealed_for_usa(policies)
            refused = signed("GBR", "POST", f"{broker.url}/v1/reports", envelope)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"].isdigit()
            assert client.exists(report_key(report_id)) == 0

            client.replicaof("NO", "ONE")  # promoted, as a failover does
            deadline = time.monotonic() + 30
            while httpx.get(f"{broker.url}/readyz", timeout=30).status_code != 200:
                assert time.monotonic() < deadline, "not ready 30 s after the promotion"
                time.sleep(0.2)
            accepted = signed("GBR", "POST", f"{broker.url}/v1/reports", envelope)
            assert accepted.status_code == 201, accepted.text
        client.close()


def test_a_redis_cluster_node_in_redis_url_is_named_and_never_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A real three-primary Redis Cluster. This broker needs one Redis: a node of a cluster
    # answers PING and sends most keys elsewhere (MOVED). That is said in the log, /readyz
    # stays 503, and a post is a 503 with nothing stored, not a 500 or a retry loop that looks
    # like an outage.
    policies = tmp_path / "policies"
    write_policies(policies)
    with redis_cluster(tmp_path / "cluster") as urls:
        settings = Settings(
            redis_url=urls[0],
            policies_dir=policies,
            data_dir=tmp_path / "data",
            redis_connect_timeout_s=1,
        )
        with broker_in_thread(create_app(settings)) as broker:
            ready = httpx.get(f"{broker.url}/readyz", timeout=30)
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["inboxes"] == "setting up"
            envelope, report_id = sealed_for_usa(policies)
            refused = signed("GBR", "POST", f"{broker.url}/v1/reports", envelope)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"].isdigit()
        cluster = redis.RedisCluster.from_url(urls[0])  # asks the node that holds the key
        assert cluster.exists(report_key(report_id)) == 0
        cluster.close()
    assert "REDIS_URL names a node of a Redis Cluster" in caplog.text
