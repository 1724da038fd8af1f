"""A greedy or careless partner (issue 16, items 5–7; DESIGN §11: one partner's load never takes
what others need). Each test is named after the attack, runs it on real HTTP and a real Redis
(or a real ``tearline serve`` process), and asserts the refusal or the bound, that nothing was
stored or delivered that should not be, and that the other partners were served meanwhile."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from broker.admission import MIN_CONNECTIONS, Admission, connection_limit
from broker.embedded import EmbeddedRedis, free_port
from broker.settings import Settings
from clients import Label
from clients.httpsig import sign_as
from clients.sync import Partner
from tests.integration.conftest import AGREEMENTS, me, write_policies
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
