"""Regression tests for what a hostile partner tried (DESIGN §11), each on real HTTP and a real
Redis, each asserting the refusal (status and ``error.code``) and that nothing was stored or
delivered. Policy-file findings live in ``test_policy_reload.py``; waiting subscribers' share in
``test_waiting_subscribers.py``."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tearline import Label
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.broker.reload import reload_now
from tearline.broker.store import inbox_key, report_key
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tearline.clients.protocol.encoding import b64d
from tearline.clients.protocol.envelope import seal
from tearline.clients.sync import Partner
from tests.integration.conftest import (
    PARTNERS,
    RunningBroker,
    me,
    running_broker,
    write_policies,
)
from tests.processes import BrokerProcess

BUNDLE = b'{"type":"bundle","id":"bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8","objects":[]}'
TO_USA = Label("SECRET", ["USA"], "AMBER")


def sealed_for_usa(broker: RunningBroker) -> tuple[bytes, str]:
    now = datetime.now(UTC)
    usa = broker.state.policy.registry.get("USA")
    assert usa is not None
    key = usa.enc_key("pq-hybrid", now)
    assert key is not None
    envelope = seal(BUNDLE, TO_USA, [("USA", key)], me("GBR"), now=now, suite="pq-hybrid")
    return envelope, str(json.loads(b64d(json.loads(envelope)["header"]))["id"])


def signed_post(url: str, body: bytes, who: str = "GBR") -> dict[str, str]:
    headers = {"content-type": "application/json"}
    signed = headers | sign_as(me(who), "POST", url, headers, body, now=datetime.now(UTC))
    return {k.lower(): v for k, v in signed.items()}


def nothing_stored(broker: RunningBroker, report_id: str) -> None:
    r = broker.redis()
    assert not r.exists(report_key(report_id))
    assert r.xlen(inbox_key("USA")) == 0


def metric(broker_url: str, name: str, **labels: str) -> float:
    url = f"{broker_url}/metrics"  # operators only
    headers = sign_as(me("OPS-HQ"), "GET", url, {}, None, now=datetime.now(UTC))
    text = httpx.get(url, headers=headers, timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$" if labels else rf"^{name} (\S+)$"
    found = re.findall(pattern, text, re.MULTILINE)
    return float(found[0]) if found else 0.0


# --- 1. thousands of header lines --------------------------------------------------------------


def test_a_header_flood_is_refused_with_431_and_stalls_nobody(broker: RunningBroker) -> None:
    envelope, report_id = sealed_for_usa(broker)
    url = f"{broker.url}/v1/reports"
    headers = signed_post(url, envelope)
    host, port = broker.url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/reports HTTP/1.1\r\nHost: {host}:{port}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "".join(f"X-Flood-{i}: {'a' * 8}\r\n" for i in range(20_000))
        + f"Content-Length: {len(envelope)}\r\n\r\n"
    ).encode() + envelope
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(request[:65536])  # the broker answers before the rest
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b'"code":"headers_too_large"' in answer
    nothing_stored(broker, report_id)
    with Partner(broker.url, me("GBR")) as gbr:  # the broker serves the others as before
        assert gbr.publish(BUNDLE, TO_USA, suite="pq-hybrid").recipients


# --- 2. one partner's long polls exhaust the Redis pool for everyone ---------------------------


async def test_a_hundred_long_polls_from_one_partner_leave_the_others_served(
    broker: RunningBroker,
) -> None:
    url = f"{broker.url}/v1/inbox?wait=5"

    async def poll(client: httpx.AsyncClient, i: int) -> httpx.Response:
        signed_url = f"{url}&consumer=c{i}"
        headers = sign_as(me("USA"), "GET", signed_url, {}, None, now=datetime.now(UTC))
        return await client.get(signed_url, headers=headers)

    limits = httpx.Limits(max_connections=200)
    async with (
        httpx.AsyncClient(timeout=30, limits=limits) as client,
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("EST")) as est,
    ):
        polls = [asyncio.create_task(poll(client, i)) for i in range(100)]
        share = broker.settings.blocking_readers_per_partner
        while broker.state.waiters.held_by("USA") < share:
            await asyncio.sleep(0.05)
        # While USA holds its share and is refused the rest, the others are served as usual.
        waiting = asyncio.create_task(est.inbox(wait_s=10))
        receipt = await gbr.publish(BUNDLE, Label("RESTRICTED", ["EST"], "AMBER", topics=["apt"]))
        assert [r.id for r in await asyncio.wait_for(waiting, 30)] == [receipt.id]
        assert (await client.get(f"{broker.url}/readyz")).status_code == 200
        answers = await asyncio.gather(*polls)
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == share
    assert statuses.count(429) == 100 - share
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 429} == {
        "too_many_waiters"
    }


# --- 5. an open stream outlives the revocation of the key that opened it -----------------------


async def test_a_stream_ends_when_the_key_that_opened_it_is_revoked(broker: RunningBroker) -> None:
    url = f"{broker.url}/v1/inbox/stream"
    headers = {"accept": "text/event-stream"}
    headers |= sign_as(me("USA"), "GET", url, headers, None, now=datetime.now(UTC))
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30, read=30)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        assert response.status_code == 200
        # The operator revokes USA's signing key while the stream is open.
        entries = [me(p).public_entry() for p in PARTNERS]
        for entry in entries:
            if entry["id"] == "USA":
                for key in entry["keys"]:
                    key["revoked"] = key["use"] == "sig"
        partners = yaml.safe_dump({"partners": entries}, width=1 << 16)
        (broker.policies / "partners.yaml").write_text(partners)
        assert broker.run(reload_now(broker.state)), broker.state.policy_error
        async with AsyncPartner(broker.url, me("GBR")) as gbr:
            posted = await gbr.publish(BUNDLE, TO_USA, suite="pq-hybrid")
        data = [line async for line in response.aiter_lines() if line.startswith("data:")]
    assert data == []  # the stream ended by itself and delivered nothing after the revocation
    assert posted.recipients  # queued for USA's next, properly signed, subscriber


# --- 6. the signed authority taken from the client's Host header -------------------------------


def test_a_request_signed_for_another_deployment_is_refused_as_misdirected(
    broker: RunningBroker,
) -> None:
    envelope, report_id = sealed_for_usa(broker)
    other = "http://tearline.other-deployment.example"
    headers = signed_post(f"{other}/v1/reports", envelope)
    headers["host"] = "tearline.other-deployment.example"
    response = httpx.post(f"{broker.url}/v1/reports", content=envelope, headers=headers)
    assert response.status_code == 421, response.text
    assert response.json()["error"]["code"] == "misdirected_request"
    nothing_stored(broker, report_id)


# --- 8. no rate limit, no read timeouts --------------------------------------------------------


@pytest.fixture
def budgeted(tmp_path: Path, redis_server: Any) -> Iterator[RunningBroker]:
    """A broker whose partners may make 5 requests a second, 20 at once."""
    with running_broker(redis_server.url, tmp_path, partner_rate_per_s=5, partner_burst=20) as b:
        yield b


async def test_one_partner_over_its_request_budget_gets_429_and_others_do_not(
    budgeted: RunningBroker,
) -> None:
    async def get(client: httpx.AsyncClient, who: str) -> httpx.Response:
        url = f"{budgeted.url}/v1/partners"
        return await client.get(url, headers=sign_as(me(who), "GET", url, {}, None,
                                                     now=datetime.now(UTC)))  # fmt: skip

    async with httpx.AsyncClient(timeout=30) as client:
        flood = await asyncio.gather(*(get(client, "USA") for _ in range(60)))
        others = await asyncio.gather(*(get(client, "EST") for _ in range(10)))
    refused = [r for r in flood if r.status_code == 429]
    assert refused
    assert {r.status_code for r in flood} == {200, 429}
    assert all(r.json()["error"]["code"] == "rate_limited" for r in refused)
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert {r.status_code for r in others} == {200}


async def test_forged_signatures_from_one_address_are_refused_before_verification(
    broker: RunningBroker,
) -> None:
    envelope, report_id = sealed_for_usa(broker)
    url = f"{broker.url}/v1/reports"
    forged = signed_post(url, envelope)
    forged["signature"] = "sig1=:" + "A" * 86 + "==:"
    verified_before = metric(broker.url, "tearline_auth_failures_total", code="signature_invalid")
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as client:
        answers = [
            (await client.post(url, content=envelope, headers=forged)).status_code
            for _ in range(300)
        ]
    elapsed_s = time.monotonic() - started
    s = broker.settings
    # Only the address's budget of failures was ever verified; the rest were refused first.
    verified = metric(broker.url, "tearline_auth_failures_total", code="signature_invalid")
    assert verified - verified_before <= s.failed_auth_burst + s.failed_auth_rate_per_s * elapsed_s
    assert set(answers) == {401, 429}
    assert answers.count(429) >= 300 - s.failed_auth_burst - s.failed_auth_rate_per_s * elapsed_s
    nothing_stored(broker, report_id)
    # Another address is not held responsible.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with AsyncPartner(broker.url, me("GBR"), transport=transport) as gbr:
        assert (await gbr.publish(BUNDLE, TO_USA, suite="pq-hybrid")).recipients


def test_a_body_that_trickles_in_is_cut_with_408(broker: RunningBroker) -> None:
    envelope, report_id = sealed_for_usa(broker)
    url = f"{broker.url}/v1/reports"
    headers = signed_post(url, envelope)
    host, port = broker.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/reports HTTP/1.1\r\nHost: {host}:{port}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + f"Content-Length: {len(envelope)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=60) as raw:
        raw.sendall(head + envelope[:10])  # and then nothing more
        # Headers and body may come in separate segments: read until the server closes.
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in answer
    nothing_stored(broker, report_id)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[BrokerProcess]:
    """`tearline serve` as operators run it, with a short header deadline."""
    write_policies(tmp_path / "policies")
    with (
        EmbeddedRedis(tmp_path / "redis", port=free_port()) as server,
        BrokerProcess(
            redis_url=server.url,
            policies=tmp_path / "policies",
            data_dir=tmp_path / "data",
            env={"TEARLINE_HEADER_TIMEOUT_S": "2"},
        ) as broker,
    ):
        yield broker


def test_slow_header_connections_are_closed_and_others_are_served(
    served: BrokerProcess,
) -> None:
    slow = []
    for _ in range(100):
        conn = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        conn.sendall(b"GET /v1/partners HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append(conn)
    try:
        with Partner(served.url, me("EST")) as est:  # served while they hang
            assert est.directory().registry.get("USA") is not None
        # Each is closed by the broker (recv returns b"", no response), within the socket's
        # 30 s bound: far past the 2 s header deadline, and not held open indefinitely.
        assert all(conn.recv(100) == b"" for conn in slow)
    finally:
        for conn in slow:
            conn.close()


# --- 9. two Signature field lines --------------------------------------------------------------


def test_two_signature_lines_are_combined_and_refused(broker: RunningBroker) -> None:
    envelope, report_id = sealed_for_usa(broker)
    url = f"{broker.url}/v1/reports"
    mine = signed_post(url, envelope)
    theirs = signed_post(url, envelope, who="USA")
    lines: list[tuple[str, str]] = [
        *((k, v) for k, v in mine.items()),
        ("signature-input", theirs["signature-input"].replace("sig1=", "sig2=")),
        ("signature", theirs["signature"].replace("sig1=", "sig2=")),
    ]
    response = httpx.post(url, content=envelope, headers=lines)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "signature_ambiguous"
    nothing_stored(broker, report_id)


# --- 10. refusals visible to operators ---------------------------------------------------------


def test_refusals_are_counted_and_logged_with_the_request_id(
    broker: RunningBroker, caplog: pytest.LogCaptureFixture
) -> None:
    before = metric(broker.url, "tearline_auth_failures_total", code="signature_missing")
    with caplog.at_level("WARNING", logger="tearline.broker"):
        response = httpx.get(f"{broker.url}/v1/partners")
    assert response.status_code == 401
    after = metric(broker.url, "tearline_auth_failures_total", code="signature_missing")
    assert after == before + 1
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "refused"]
    fields: Any = record.__dict__
    assert fields["code"] == "signature_missing"
    assert fields["status"] == 401
    assert fields["request_id"] == response.headers["x-request-id"]
    latency = metric(
        broker.url, "tearline_request_seconds_count", method="GET", route="/v1/partners",
        status="401",
    )  # fmt: skip
    assert latency >= 1
