"""A greedy or careless partner (issue 16, items 5–7; DESIGN §11: one partner's load never takes
what others need). Each test is named after the attack, runs it on real HTTP and a real Redis
(or a real ``tearline serve`` process), and asserts the refusal or the bound, that nothing was
stored or delivered that should not be, and that the other partners were served meanwhile."""

from __future__ import annotations

import json
import os
import resource
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tearline import Label
from tearline.broker.admission import MIN_CONNECTIONS, Admission, connection_limit
from tearline.broker.embedded import EmbeddedRedis, free_port
from tearline.broker.settings import MiB, Settings
from tearline.broker.store import inbox_key, report_key
from tearline.clients.errors import LabelTooLargeError
from tearline.clients.httpsig import sign_as
from tearline.clients.protocol.encoding import b64d
from tearline.clients.protocol.envelope import seal
from tearline.clients.protocol.label import LIST_LIMITS
from tearline.clients.sync import Partner
from tests.integration.conftest import (
    AGREEMENTS,
    PARTNERS,
    UNLIMITED,
    RunningBroker,
    me,
    running_broker,
    write_policies,
)
from tests.processes import BrokerProcess

BUNDLE = b'{"type":"bundle","id":"bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8","objects":[]}'
TO_EST = Label("RESTRICTED", ["EST"], "AMBER", topics=["apt"])


def signed_get(url: str, who: str) -> dict[str, str]:
    return sign_as(me(who), "GET", url, {}, None, now=datetime.now(UTC))


def eventually(check: object, timeout_s: float = 30.0) -> None:
    """Wait for ``check()`` to hold (a bound on waiting, never an assertion about time)."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


# --- 7. pre-authentication connections ---------------------------------------------------------

OPEN_FILES_LIMIT = 1024  # the common default the attack was run against


def _low_open_files_limit() -> None:
    # In the broker's child process, before exec: a soft limit below the hard one (which the
    # broker raises at start) and a hard limit of 1,024.
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES_LIMIT // 2, OPEN_FILES_LIMIT))


@pytest.fixture
def low_fd_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """`tearline serve` as operators run it, under a descriptor limit of 1,024."""
    write_policies(tmp_path / "policies")
    with (
        EmbeddedRedis(tmp_path / "redis", port=free_port()) as server,
        BrokerProcess(
            redis_url=server.url,
            policies=tmp_path / "policies",
            data_dir=tmp_path / "data",
            env={"TEARLINE_POLICY_POLL_S": "0.2"},
            preexec_fn=_low_open_files_limit,
        ) as broker,
    ):
        yield broker


def _still_open(conn: socket.socket) -> bool:
    """Whether the broker still holds ``conn`` (no reset, no close, no answer)."""
    conn.setblocking(False)
    try:
        return conn.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:  # reset at accept
        return False


def test_half_open_connection_flood_attack_leaves_room_for_partners(
    low_fd_broker: BrokerProcess, tmp_path: Path
) -> None:
    broker = low_fd_broker
    per_address = Settings().max_connections_per_address
    # The broker raised its soft limit to the hard one at start.
    assert f"open files limit {OPEN_FILES_LIMIT}" in broker.log()
    # One unsigned client, from one address, holds 1,100 half-sent requests.
    flood: list[socket.socket] = []
    try:
        for _ in range(1100):
            conn = socket.socket()
            conn.bind(("127.0.0.2", 0))
            conn.settimeout(10)
            try:
                conn.connect(("127.0.0.1", broker.port))
                conn.sendall(b"GET /v1/partners HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            except OSError:
                pass  # reset already: refused at accept
            flood.append(conn)
        # The broker holds exactly its per-address share of them; the rest were reset.
        eventually(lambda: sum(_still_open(c) for c in flood) == per_address)

        # Meanwhile another partner, from another address, is served every time: 27 signed
        # requests, each on a new connection, and a report published and received.
        served = 0
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=10, limits=fresh) as client:
            for _ in range(27):
                url = f"{broker.url}/v1/partners"
                response = client.get(url, headers=signed_get(url, "EST"))
                served += response.status_code == 200
        assert served == 27
        with Partner(broker.url, me("GBR")) as gbr, Partner(broker.url, me("EST")) as est:
            receipt = gbr.publish(BUNDLE, TO_EST)
            assert [r.id for r in est.inbox(wait_s=10)] == [receipt.id]

        # The broker's own files still open: a policy change (the Baltic agreement ended) is
        # read and applied while the flood holds its connections.
        write_policies(tmp_path / "policies", agreements={"gbr-usa": AGREEMENTS["gbr-usa"]})

        def baltic_ended() -> bool:
            url = f"{broker.url}/v1/agreements"
            answer = httpx.get(url, headers=signed_get(url, "EST"), timeout=10)
            return answer.status_code == 200 and not answer.json()["agreements"]

        eventually(baltic_ended)
        ready = httpx.get(f"{broker.url}/readyz", timeout=10).json()
        assert ready["checks"]["policy_reload"] == "ok"
        assert "Too many open files" not in broker.log()
        assert sum(_still_open(c) for c in flood) == per_address  # still held, still bounded
    finally:
        for conn in flood:
            conn.close()
    # Once the flood ends, the address may connect again.
    url = f"{broker.url}/v1/partners"
    eventually(lambda: httpx.get(url, headers=signed_get(url, "EST"), timeout=10).is_success)


def test_connection_bounds_keep_the_brokers_own_descriptors() -> None:
    settings = Settings(max_connections=4096, redis_pool_size=64, blocking_readers_max=64)
    own = 64 + 64 + 1 + settings.reserved_file_descriptors
    assert connection_limit(settings, soft_nofile=1024) == 1024 - own
    assert connection_limit(settings, soft_nofile=1 << 20) == 4096
    assert connection_limit(settings, soft_nofile=100) == MIN_CONNECTIONS
    admission = Admission(total_max=3, per_address_max=2)
    assert [admission.admit("a") for _ in range(3)] == [None, None, "per_address"]
    assert admission.admit("b") is None
    assert admission.admit("c") == "total"
    admission.release("a")
    assert admission.admit("c") is None
    for address in ("a", "b", "c"):
        admission.release(address)
    assert admission.total == 0
    assert admission.by_address == {}


# --- helpers for items 5 and 6 -----------------------------------------------------------------

TO_USA = Label("SECRET", ["USA"], "AMBER")
TO_FIN = Label("RESTRICTED", ["FIN"], "AMBER", topics=["apt"])


def sealed(
    broker: RunningBroker, size: int, label: Label = TO_USA, to: str = "USA", by: str = "GBR"
) -> tuple[bytes, str]:
    """An envelope from ``by`` to ``to`` carrying ``size`` random bytes, and its report id."""
    now = datetime.now(UTC)
    partner = broker.state.policy.registry.get(to)
    assert partner is not None
    suite = "pq-hybrid" if PARTNERS[to] == PARTNERS[by] == "pq-hybrid" else "classic"
    key = partner.enc_key(suite, now)
    assert key is not None
    envelope = seal(os.urandom(size), label, [(to, key)], me(by), now=now, suite=suite,
                    content_type="application/octet-stream")  # fmt: skip
    return envelope, str(json.loads(b64d(json.loads(envelope)["header"]))["id"])


def post(
    client: httpx.Client, url: str, body: bytes, *, who: str = "GBR", path: str = "/v1/reports"
) -> httpx.Response:
    media = "application/x-ndjson" if path.endswith(":batch") else "application/json"
    headers = {"content-type": media}
    headers |= sign_as(me(who), "POST", url + path, headers, body, now=datetime.now(UTC))
    return client.post(url + path, content=body, headers=headers)


def signed_request(client: httpx.Client, url: str, who: str) -> httpx.Response:
    return client.get(url, headers=signed_get(url, who))


def report_keys(broker: RunningBroker) -> int:
    return sum(1 for _ in broker.redis().scan_iter("tl:report:*"))


# --- 5. no storage bound -----------------------------------------------------------------------


def test_storage_flood_attack_is_bounded_by_quota(redis_server: Any, tmp_path: Path) -> None:
    quota = 2 * MiB
    with running_broker(
        redis_server.url, tmp_path, max_originator_stored_bytes=quota, **UNLIMITED
    ) as broker:
        envelopes = [sealed(broker, 200_000) for _ in range(16)]
        size = len(envelopes[0][0])
        fits = quota // size
        others_served = 0
        with httpx.Client(timeout=30) as client:
            # GBR floods USA with batches of large envelopes; between batches, EST and FIN share
            # as usual (the others are served during the attack).
            results = []
            for start in range(0, len(envelopes), 4):
                batch = b"\n".join(e for e, _ in envelopes[start : start + 4])
                answer = post(client, broker.url, batch, path="/v1/reports:batch")
                assert answer.status_code == 200, answer.text
                results += answer.json()["results"]
                with Partner(broker.url, me("EST")) as est:
                    est.publish(BUNDLE, TO_FIN)
                    others_served += 1
        statuses = [r["status"] for r in results]
        assert statuses == [201] * fits + [429] * (len(envelopes) - fits)
        refused = [r["body"]["error"] for r in results if r["status"] == 429]
        assert {e["code"] for e in refused} == {"originator_quota_exceeded"}
        assert all(e["details"] == {"partner": "GBR"} for e in refused)
        # Nothing of a refused report was stored: no envelope, no inbox entry.
        r = broker.redis()
        for envelope_id in (i for _, i in envelopes[fits:]):
            assert not r.exists(report_key(envelope_id))
        assert r.xlen(inbox_key("USA")) == fits
        usage = broker.run(broker.state.store.quota_usage("GBR"))
        assert usage["stored_reports"] == fits
        assert usage["stored_bytes"] == sum(len(e) for e, _ in envelopes[:fits]) <= quota
        assert others_served == len(envelopes) // 4
        with Partner(broker.url, me("FIN")) as fin:
            assert len(fin.inbox(wait_s=5, limit=100)) == others_served


def test_careless_recipient_inbox_flood_is_bounded_and_freed_by_acks(
    redis_server: Any, tmp_path: Path
) -> None:
    with (
        running_broker(
            redis_server.url, tmp_path, max_inbox_queued_reports=5, **UNLIMITED
        ) as broker,
        httpx.Client(timeout=30) as client,
    ):
        posted = [sealed(broker, 1000) for _ in range(7)]
        answers = [post(client, broker.url, e) for e, _ in posted]
        assert [a.status_code for a in answers] == [201] * 5 + [429] * 2
        error = answers[-1].json()["error"]
        assert error["code"] == "recipient_inbox_full"
        assert error["details"] == {"partner": "USA"}
        assert int(answers[-1].headers["retry-after"]) >= 1
        for _, report_id in posted[5:]:
            assert not broker.redis().exists(report_key(report_id))
        assert broker.redis().xlen(inbox_key("USA")) == 5
        # GBR's reports to others are not held up by USA's full inbox.
        with Partner(broker.url, me("GBR")) as gbr:
            assert gbr.publish(BUNDLE, TO_EST).recipients
        # A recall of an undelivered copy frees its room; so do USA's acks.
        recalled = post(client, broker.url, b"", path=f"/v1/reports/{posted[0][1]}/recall")
        assert recalled.json()["withdrawn"] == ["USA"]
        assert broker.run(broker.state.store.quota_usage("USA"))["queued_reports"] == 4
        with Partner(broker.url, me("USA")) as usa:
            for item in usa.inbox(wait_s=1, limit=100):
                item.ack()
        usage = broker.run(broker.state.store.quota_usage("USA"))
        assert usage["queued_reports"] == usage["queued_bytes"] == 0
        again = [post(client, broker.url, sealed(broker, 1000)[0]) for _ in range(5)]
        assert [a.status_code for a in again] == [201] * 5
        # The hourly retention run recounts from the stream and agrees.
        broker.run(broker.state.store.trim_inbox("USA", 1))
        recount = broker.run(broker.state.store.quota_usage("USA"))
        assert recount["queued_reports"] == 5


def test_store_full_attack_refuses_new_reports_while_acks_and_reads_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedRedis(tmp_path / "redis", port=free_port()) as server, running_broker(
        server.url, tmp_path, store_memory_check_s=0.05, store_high_water_fraction=0.75,
        **UNLIMITED,
    ) as broker:  # fmt: skip
        r = broker.redis()
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", used + 24 * MiB)
        refused = None
        accepted = 0
        with httpx.Client(timeout=30) as client, caplog.at_level("INFO", "tearline.broker"):
            for _ in range(200):
                envelope, report_id = sealed(broker, 400_000)
                answer = post(client, broker.url, envelope)
                if answer.status_code != 201:
                    refused = (answer, report_id)
                    break
                accepted += 1
                time.sleep(0.02)  # the watcher reads INFO every 50 ms
            assert refused is not None
            answer, report_id = refused
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "store_full"
            assert int(answer.headers["retry-after"]) >= 1
            assert not r.exists(report_key(report_id))
            ready = client.get(f"{broker.url}/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["store"] == "full"
            assert any("high-water" in m for m in caplog.messages)
            # Reads and acks go on while new reports are refused.
            with Partner(broker.url, me("USA")) as usa:
                page = usa.inbox(wait_s=1, limit=100)
                assert page
                for item in page:
                    item.ack()
            assert r.xlen(inbox_key("USA")) == accepted
            # The operator gives Redis room: reports are accepted again.
            r.config_set("maxmemory", used + 256 * MiB)
            eventually(lambda: not broker.state.memory.full)
            assert post(client, broker.url, sealed(broker, 1000)[0]).status_code == 201
            assert any("below the high-water mark" in m for m in caplog.messages)


# --- 6. requests are budgeted, work is not -----------------------------------------------------


def test_huge_label_preview_attack_is_refused(broker: RunningBroker) -> None:
    url = f"{broker.url}/v1/releasability/preview"
    huge = {"classification": "RESTRICTED", "releasable_to": ["USA"], "tlp": "AMBER",
            "topics": [f"t{i}" for i in range(86_000)]}  # fmt: skip
    long_list = huge | {"topics": [f"t{i}" for i in range(LIST_LIMITS["topics"] + 1)]}
    with httpx.Client(timeout=30) as client:
        # A 1 MB label: refused as it arrives, before its signature is checked or it is parsed.
        body = json.dumps({"label": huge}).encode()
        assert len(body) > MiB // 2
        answers = [post(client, broker.url, body, who="USA", path=url.removeprefix(broker.url))
                   for _ in range(20)]  # fmt: skip
        # Meanwhile the others are served.
        with Partner(broker.url, me("EST")) as est:
            served = sum(1 for _ in range(10) if est.preview(TO_FIN)["FIN"].granted)
        assert {a.status_code for a in answers} == {413}
        assert {a.json()["error"]["code"] for a in answers} == {"too_large"}
        assert served == 10
        # A small body whose label lists more than the protocol allows: 413 label_too_large.
        answer = post(client, broker.url, json.dumps({"label": long_list}).encode(), who="USA",
                      path="/v1/releasability/preview")  # fmt: skip
        assert answer.status_code == 413, answer.text
        error = answer.json()["error"]
        assert error["code"] == "label_too_large"
        assert error["details"] == {"field": "label.topics", "count": 65, "limit": 64}
    # The SDK parses with the same code: such a label is refused before anything is sealed.
    with pytest.raises(LabelTooLargeError):
        Label("RESTRICTED", ["USA"], "AMBER", topics=long_list["topics"])
    # And at ingest: an envelope whose (signed) label is too long is refused, nothing stored.
    too_long = object.__new__(Label)
    for name, value in (("classification", "SECRET"), ("releasable_to", ("USA",)),
                        ("tlp", "AMBER"), ("caveats", ()), ("topics", tuple(long_list["topics"])),
                        ("policy", None), ("expires", None)):  # fmt: skip
        object.__setattr__(too_long, name, value)
    envelope, report_id = sealed(broker, 100, label=too_long)
    with httpx.Client(timeout=30) as client:
        answer = post(client, broker.url, envelope)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "envelope_rejected"
    assert not broker.redis().exists(report_key(report_id))
    assert broker.redis().xlen(inbox_key("USA")) == 0


def test_large_body_flood_attack_is_charged_by_its_bytes(redis_server: Any, tmp_path: Path) -> None:
    with running_broker(
        redis_server.url, tmp_path, partner_rate_per_s=1, partner_burst=40,
        request_bytes_per_token=16 * 1024,
    ) as broker:  # fmt: skip
        envelopes = [sealed(broker, 150_000) for _ in range(5)]
        cost = 1 + len(envelopes[0][0]) // (16 * 1024)
        assert 3 * cost <= 40 < 4 * cost
        with httpx.Client(timeout=30) as client:
            answers = [post(client, broker.url, e) for e, _ in envelopes]
            others = [signed_request(client, f"{broker.url}/v1/partners", "EST") for _ in range(10)]
        # Five requests, well inside a budget of 40 requests: their bytes spent it after three.
        assert [a.status_code for a in answers] == [201] * 3 + [429] * 2
        assert {a.json()["error"]["code"] for a in answers[3:]} == {"rate_limited"}
        assert report_keys(broker) == 3
        assert {o.status_code for o in others} == {200}


def test_huge_inbox_page_attack_is_bounded_in_bytes(redis_server: Any, tmp_path: Path) -> None:
    with running_broker(
        redis_server.url, tmp_path, max_inbox_page_bytes=300_000, visibility_timeout_ms=30_000,
        **UNLIMITED,
    ) as broker:  # fmt: skip
        with httpx.Client(timeout=30) as client:
            big = [sealed(broker, 150_000) for _ in range(4)]  # ~200 KB envelopes
            small = [sealed(broker, 100) for _ in range(3)]
            for envelope, _ in big + small:
                assert post(client, broker.url, envelope).status_code == 201
            url = f"{broker.url}/v1/inbox?limit=100"
            pages: list[list[dict[str, Any]]] = []
            while len(seen := [e for p in pages for e in p]) < len(big) + len(small):
                page = signed_request(client, url, "USA").json()["entries"]
                assert page, "an entry held back came back at once"
                pages.append(page)
        sizes = [sum(len(e["envelope"]) for e in p) for p in pages]
        # One large entry a page (the next would pass the budget), then the three small ones
        # together with the last large one; never an entry twice, each delivered once.
        assert [len(p) for p in pages] == [1, 1, 1, 4]
        assert all(s <= 300_000 for s in sizes)
        assert [e["report_id"] for e in seen] == [i for _, i in big + small]
        assert {e["deliveries"] for e in seen} == {1}
