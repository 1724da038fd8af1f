"""An operator finds every audit entry of a report, however old (issue 16, item 11), against a
real broker over real HTTP and a real redis-server.

The attack: report X's trail is written, then one partner posts enough cheap reports that X's
entries are no longer among the newest 10,000 of ``tl:audit``, which is all the lookup used to
search. The broker now keeps, per report, the list of its audit entries' ids, derived from the
stream (``Store.index_audit``), so the lookup reads X's own list.

The default test floods with real posts through the batch endpoint (the attack's shape) and
makes up the rest of the 10,100 entries with entries written as the broker writes them, in one
pipeline, to stay fast; ``test_audit_flood_attack_through_ingest_alone`` (marked heavy) posts
all of them through the real ingest path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import pytest

from tearline import Label
from tearline.broker import audit
from tearline.broker.store import AUDIT_INDEXED_KEY, AUDIT_KEY, audit_index_key
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tests.integration.conftest import UNLIMITED, RunningBroker, me, running_broker
from tests.integration.test_adversarial import envelope
from tests.integration.test_crafted_input import report_id
from tests.integration.test_existence_oracles import NEVER_HELD

OLD_WINDOW: Final = 10_000  # what the lookup used to search: the newest 10,000 entries
FLOOD: Final = OLD_WINDOW + 100
BATCH: Final = 100
TO_GBR: Final = Label("SECRET", ["GBR"], "AMBER", topics=["apt"])
TO_USA: Final = Label("SECRET", ["USA"], "AMBER", topics=["apt"])


@pytest.fixture
def world(redis_server: Any, tmp_path: Any) -> Iterator[RunningBroker]:
    # GBR's inbox may queue the whole flood: the audit window is under test here, not the
    # recipient's quota (which would refuse the 10,001st report; test_greedy_partners).
    with running_broker(
        redis_server.url, tmp_path, **UNLIMITED, max_inbox_queued_reports=2 * FLOOD
    ) as running:
        yield running


def operator_get(world: RunningBroker, path: str) -> httpx.Response:
    url = world.url + path
    headers = sign_as(me("OPS-HQ"), "GET", url, {}, None, now=datetime.now(UTC))
    return httpx.get(url, headers=headers, timeout=30)


async def trail_of_a_report(world: RunningBroker) -> str:
    """GBR's report to USA: accepted, received (USA acks it), recalled (GBR recalls it)."""
    async with (
        AsyncPartner(world.url, me("GBR")) as gbr,
        AsyncPartner(world.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(b"{}", TO_USA, content_type="text/plain")
        (report,) = await usa.inbox(wait_s=5)
        await report.ack()
        await gbr.recall(receipt.id)
    return receipt.id


def flood_through_ingest(world: RunningBroker, reports: int) -> None:
    """USA posts ``reports`` small reports to GBR, a batch of 100 per request."""
    url = world.url + "/v1/reports:batch"
    for start in range(0, reports, BATCH):
        body = b"\n".join(
            envelope(("GBR",), TO_GBR, originator="USA", payload=b"x")
            for _ in range(min(BATCH, reports - start))
        )
        headers = {"content-type": "application/x-ndjson"}
        headers |= sign_as(me("USA"), "POST", url, headers, body, now=datetime.now(UTC))
        response = httpx.post(url, content=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        assert {r["status"] for r in response.json()["results"]} == {201}


def flood_as_the_broker_writes(world: RunningBroker, entries: int) -> None:
    """``entries`` audit entries of other reports, as the ingest script writes them."""
    sample = envelope(("GBR",), TO_GBR, originator="USA", payload=b"x")
    data = json.dumps({"originator": "USA", "suite": "classic", "granted": {"GBR": "gbr-usa"}})
    with world.redis().pipeline(transaction=False) as pipe:
        for i in range(entries):
            fake_id = report_id(sample)[:-12] + f"{i:012x}"
            pipe.xadd(AUDIT_KEY, {"event": "accepted", "report": fake_id, "data": data})
        pipe.execute()


def events(response: httpx.Response) -> list[tuple[str, Any]]:
    assert response.status_code == 200, response.text
    return [(e["event"], e["data"]) for e in response.json()["entries"]]


def assert_the_trail_is_found(world: RunningBroker, rid: str) -> None:
    r = world.redis()
    newest = {f[b"report"].decode() for _, f in r.xrevrange(AUDIT_KEY, count=OLD_WINDOW)}
    assert rid not in newest  # the old lookup would have answered an empty trail
    got = events(operator_get(world, f"/v1/audit?report_id={rid}"))
    assert [e for e, _ in got] == ["recalled", "received", "accepted"]
    assert got[1][1] == {"partner": "USA"}
    assert got[2][1]["granted"] == {"USA": "gbr-usa"}
    assert events(operator_get(world, f"/v1/audit?report_id={rid}&limit=1")) == got[:1]
    # The index holds exactly the trail, once, though the lookup indexed the flood too.
    assert [i.decode() for i in r.lrange(audit_index_key(rid), 0, -1)] == sorted(
        (e["entry"] for e in operator_get(world, f"/v1/audit?report_id={rid}").json()["entries"]),
        key=lambda i: tuple(map(int, i.split("-"))),
    )
    assert r.get(AUDIT_INDEXED_KEY) == r.xrevrange(AUDIT_KEY, count=1)[0][0]


async def test_audit_flood_attack_cannot_hide_a_report_trail(world: RunningBroker) -> None:
    rid = await trail_of_a_report(world)
    flood_through_ingest(world, 2 * BATCH)  # the attack's shape, through the real endpoint
    flood_as_the_broker_writes(world, FLOOD - 2 * BATCH)  # and the bulk of it, quickly
    assert world.redis().xlen(AUDIT_KEY) >= FLOOD + 3
    assert_the_trail_is_found(world, rid)
    # The honest neighbours: the newest entries without a report id, and a report never seen.
    newest = events(operator_get(world, "/v1/audit?limit=5"))
    assert len(newest) == 5
    assert events(operator_get(world, f"/v1/audit?report_id={NEVER_HELD}")) == []


async def test_a_trail_written_before_the_index_existed_is_found(world: RunningBroker) -> None:
    # A store upgraded from a broker without the index: the lists and the cursor are absent.
    rid = await trail_of_a_report(world)
    r = world.redis()
    world.run(audit.index(world.state))
    r.delete(AUDIT_INDEXED_KEY, audit_index_key(rid))
    flood_as_the_broker_writes(world, FLOOD)
    assert_the_trail_is_found(world, rid)


async def test_the_sealer_keeps_the_index_caught_up(world: RunningBroker) -> None:
    rid = await trail_of_a_report(world)
    assert world.run(audit.seal(world.state)) is not None
    r = world.redis()
    assert r.llen(audit_index_key(rid)) == 3
    assert r.get(AUDIT_INDEXED_KEY) == r.xrevrange(AUDIT_KEY, count=1)[0][0]
    assert world.run(audit.index(world.state)) == 0  # nothing left for a lookup to add


@pytest.mark.heavy
async def test_audit_flood_attack_through_ingest_alone(world: RunningBroker) -> None:
    rid = await trail_of_a_report(world)
    flood_through_ingest(world, FLOOD)
    assert_the_trail_is_found(world, rid)
