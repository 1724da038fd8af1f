"""Delivery over real HTTP and a real redis-server (DESIGN §4–§7).

What the broker promises once a report is accepted: exactly the partners the preview grants get
it; a re-post is idempotent on the envelope bytes; SSE and long poll read the caller's own inbox
through its consumer group; unacknowledged entries come back after the visibility timeout and
end in the dead-letter stream; the engine runs again at delivery time, so a suspension or an
ended agreement stops reports that were already queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent

from tearline import AuthenticationError, Label
from tearline.broker.store import AUDIT_KEY, GROUP, dead_key, inbox_key, report_key
from tearline.clients.httpsig import sign_as
from tearline.clients.keyfile import Identity
from tearline.clients.partner import AsyncPartner, Delivery, Report
from tearline.clients.protocol.encoding import b64e, format_time
from tearline.clients.protocol.envelope import seal
from tearline.clients.protocol.identity import KeyRecord
from tearline.clients.sync import Partner
from tests.integration.conftest import AGREEMENTS, PARTNERS, RunningBroker, me
from tests.integration.waiting import eventually, until

T = TypeVar("T")

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
# GBR → USA (gbr-usa), EST and FIN (baltic); DEU is named but has no agreement with GBR.
BALTIC = Label("RESTRICTED", ["USA", "BALTIC", "DEU"], "AMBER", topics=["ransomware"])
# GBR → USA only: above the Baltic ceiling.
USA_ONLY = Label("SECRET", ["USA"], "AMBER", topics=["apt"])
# Generous bounds so a slow machine never hangs a test, never a timing assertion.
BOUND_S = 10.0
# What the fixture configures (tests/integration/conftest.py).
VISIBILITY_S = 1.0
HEARTBEAT_S = 1.0
MAX_DELIVERIES = 3


# --- helpers --------------------------------------------------------------------------------


def signed_request(
    client: httpx.AsyncClient,
    who: Identity,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Request:
    """A request signed the way any RFC 9421 client signs it, for the exact URL sent."""
    request = client.build_request(method, url, content=body, headers=dict(headers or {}))
    request.headers.update(
        sign_as(who, method, str(request.url), dict(request.headers), body, now=datetime.now(UTC))
    )
    return request


async def stream_reports(
    broker: RunningBroker,
    who: Identity,
    sink: list[ServerSentEvent],
    *,
    consumer: str,
    last_event_id: str | None = None,
) -> None:
    """Read ``GET /v1/inbox/stream`` raw (no SDK dedupe), appending every ``report`` event."""
    headers = {"accept": "text/event-stream"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    timeout = httpx.Timeout(BOUND_S, read=BOUND_S * 3)
    async with httpx.AsyncClient(timeout=timeout) as client:
        url = f"{broker.url}/v1/inbox/stream?consumer={consumer}"
        request = signed_request(client, who, "GET", url, headers=headers)
        response = await client.send(request, stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                raise AssertionError(f"stream refused: {response.status_code} {response.text}")
            async for event in EventSource(response).aiter_sse():
                if event.event == "report":
                    sink.append(event)
        finally:
            await response.aclose()


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def first_of(stream: AsyncIterator[Delivery]) -> Delivery:
    return await anext(stream)


def report_ids(events: list[ServerSentEvent]) -> list[str]:
    return [json.loads(e.data)["report_id"] for e in events]


def inbox_report_ids(r: Any, partner: str) -> list[str]:
    """What is in ``partner``'s inbox stream, read straight from Redis."""
    return [fields[b"report"].decode() for _, fields in r.xrange(inbox_key(partner))]


def pending_count(r: Any, partner: str) -> int:
    return int(r.xpending(inbox_key(partner), GROUP)["pending"])


def audit_events(r: Any, event: str, report_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(fields[b"data"])
        for _, fields in r.xrange(AUDIT_KEY)
        if fields[b"event"].decode() == event and fields[b"report"].decode() == report_id
    ]


def inbox_lengths(r: Any) -> dict[str, int]:
    return {p: int(r.xlen(inbox_key(p))) for p in PARTNERS}


def enc_keys(decisions: Mapping[str, Any]) -> list[tuple[str, KeyRecord]]:
    return [(pid, d.keys[0]) for pid, d in sorted(decisions.items()) if d.granted]


# --- preview and idempotency ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("originator", "label", "suite", "expected"),
    [
        pytest.param(
            "GBR", BALTIC, "classic", {"EST", "FIN", "USA"}, id="restricted-to-usa-and-baltic"
        ),
        pytest.param(
            "GBR",
            Label("CONFIDENTIAL", ["USA", "BALTIC"], "AMBER", topics=["apt"]),
            "classic",
            {"EST", "USA"},
            id="confidential-above-fin-clearance",
        ),
        pytest.param("GBR", USA_ONLY, "classic", {"USA"}, id="secret-above-baltic-ceiling"),
        pytest.param(
            "GBR",
            Label("RESTRICTED", ["USA", "BALTIC"], "GREEN", topics=["phishing"]),
            "classic",
            {"USA"},
            id="topic-outside-baltic-scope",
        ),
        pytest.param("GBR", BALTIC, "pq-hybrid", {"EST", "USA"}, id="pq-hybrid-fin-has-no-pq-key"),
        pytest.param(
            "EST",
            Label("RESTRICTED", ["GBR", "FIN", "USA"], "AMBER", topics=["apt"]),
            "classic",
            {"FIN", "GBR"},
            id="from-est-usa-has-no-agreement",
        ),
    ],
)
async def test_preview_grants_are_exactly_the_partners_whose_inbox_gets_the_report(
    broker: RunningBroker, originator: str, label: Label, suite: str, expected: set[str]
) -> None:
    r = broker.redis()
    async with AsyncPartner(broker.url, me(originator)) as sender:
        decisions = await sender.preview(label, suite=suite)
        granted = {pid for pid, d in decisions.items() if d.granted}
        assert granted == expected
        assert set(decisions) == set(PARTNERS)
        receipt = await sender.publish(BUNDLE, label, suite=suite)

    assert {d.partner: d.agreement for d in receipt.recipients} == {
        pid: decisions[pid].agreement for pid in granted
    }
    in_stream = {p for p in PARTNERS if receipt.id in inbox_report_ids(r, p)}
    assert in_stream == granted
    for pid in PARTNERS:
        async with AsyncPartner(broker.url, me(pid)) as node:
            reports = await node.inbox(wait_s=0)
        if pid in granted:
            assert [rep.id for rep in reports] == [receipt.id], pid
            assert isinstance(reports[0], Report)
            assert reports[0].json() == BUNDLE
        else:
            assert reports == [], pid


async def test_reposting_the_same_envelope_bytes_returns_the_identical_receipt_and_adds_nothing(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    gbr = me("GBR")
    async with AsyncPartner(broker.url, gbr) as node:
        envelope = seal(
            json.dumps(BUNDLE).encode(),
            BALTIC,
            enc_keys(await node.preview(BALTIC)),
            gbr,
            now=datetime.now(UTC),
        )
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        url = f"{broker.url}/v1/reports"
        first = await client.send(signed_request(client, gbr, "POST", url, envelope))
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        stored = (inbox_lengths(r), r.xlen(AUDIT_KEY), sorted(r.scan_iter("tl:report:*")))

        second = await client.send(signed_request(client, gbr, "POST", url, envelope))

    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    assert (inbox_lengths(r), r.xlen(AUDIT_KEY), sorted(r.scan_iter("tl:report:*"))) == stored
    assert sorted(p for p, n in inbox_lengths(r).items() if n) == ["EST", "FIN", "USA"]


async def test_reposting_an_id_with_other_bytes_is_a_409_id_conflict_and_changes_nothing(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    gbr = me("GBR")
    async with AsyncPartner(broker.url, gbr) as node:
        receipt = await node.publish(BUNDLE, BALTIC)
        keys = enc_keys(await node.preview(BALTIC))
    original = r.hget(report_key(receipt.id), "envelope")
    stored = (inbox_lengths(r), r.xlen(AUDIT_KEY), sorted(r.scan_iter("tl:report:*")))
    # Same id, same label, same recipients: fresh content key and nonce, so other bytes.
    other = seal(
        json.dumps(BUNDLE).encode(),
        BALTIC,
        keys,
        gbr,
        now=datetime.now(UTC),
        envelope_id=receipt.id,
    )
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        url = f"{broker.url}/v1/reports"
        response = await client.send(signed_request(client, gbr, "POST", url, other))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "id_conflict"
    assert r.hget(report_key(receipt.id), "envelope") == original
    assert (inbox_lengths(r), r.xlen(AUDIT_KEY), sorted(r.scan_iter("tl:report:*"))) == stored


async def test_an_identical_repost_after_a_policy_change_still_returns_the_original_receipt(
    broker: RunningBroker,
) -> None:
    gbr = me("GBR")
    async with AsyncPartner(broker.url, gbr) as node:
        envelope = seal(
            json.dumps(BUNDLE).encode(),
            BALTIC,
            enc_keys(await node.preview(BALTIC)),
            gbr,
            now=datetime.now(UTC),
        )
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        url = f"{broker.url}/v1/reports"
        first = await client.send(signed_request(client, gbr, "POST", url, envelope))
        assert first.status_code == 201
        broker.change_policies(suspended=("EST",))  # EST has a slot in the accepted report

        retry = await client.send(signed_request(client, gbr, "POST", url, envelope))

    assert retry.status_code == 201, retry.text
    assert retry.content == first.content


# --- SSE ------------------------------------------------------------------------------------


async def test_sse_delivers_to_an_entitled_partner_and_nothing_to_a_non_entitled_one(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
        AsyncPartner(broker.url, me("DEU")) as deu,
    ):
        usa_stream = usa.subscribe()
        deu_stream = deu.subscribe()
        usa_first = asyncio.create_task(first_of(usa_stream))
        deu_first = asyncio.create_task(first_of(deu_stream))
        try:
            receipt = await gbr.publish(BUNDLE, BALTIC)  # names DEU; DEU is not entitled

            report = await asyncio.wait_for(usa_first, timeout=BOUND_S)
            assert isinstance(report, Report)
            assert report.id == receipt.id
            assert report.originator == "GBR"
            assert report.json() == BUNDLE
            await report.ack()

            # Longer than a heartbeat and a visibility timeout: DEU's stream polled its inbox
            # at least once after the post. Still waiting means neither a report nor an error.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(deu_first, timeout=HEARTBEAT_S + VISIBILITY_S + 0.5)
        finally:
            await stop(usa_first)
            await usa_stream.aclose()  # type: ignore[attr-defined]
            await deu_stream.aclose()  # type: ignore[attr-defined]
    assert inbox_report_ids(broker.redis(), "DEU") == []


async def test_sse_resume_with_last_event_id_returns_the_unacked_entries_after_that_id(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipts = [await gbr.publish({**BUNDLE, "n": i}, USA_ONLY) for i in range(3)]
        # Consumer "w1" takes all three and acknowledges none: they stay pending for it.
        taken = await usa.inbox(limit=10, consumer="w1")
    assert [rep.id for rep in taken] == [rec.id for rec in receipts]
    entry_ids = [rep.entry_id for rep in taken]
    assert entry_ids == [rec.recipients[0].position for rec in receipts]

    events: list[ServerSentEvent] = []
    reader = asyncio.create_task(
        stream_reports(broker, me("USA"), events, consumer="w1", last_event_id=entry_ids[0])
    )
    try:
        await until(lambda: len(events), lambda n: n >= 2 or reader.done())
    finally:
        await stop(reader)

    assert [e.id for e in events[:2]] == entry_ids[1:]
    assert report_ids(events[:2]) == [rec.id for rec in receipts[1:]]


# --- redelivery, dead letters, acks ---------------------------------------------------------


async def test_an_unacked_entry_is_redelivered_after_the_visibility_timeout(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, USA_ONLY)
        (first,) = await usa.inbox()
        again = await eventually(lambda: usa.inbox(wait_s=0.2), bool)

    assert [(rep.id, rep.entry_id) for rep in again] == [(receipt.id, first.entry_id)]
    (pending,) = r.xpending_range(inbox_key("USA"), GROUP, min="-", max="+", count=10)
    assert pending["message_id"].decode() == first.entry_id
    assert pending["times_delivered"] == 2


async def test_a_long_poll_returns_an_entry_whose_visibility_timeout_expires_while_it_waits(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, USA_ONLY)
        (first,) = await usa.inbox()  # not acknowledged
        again = await usa.inbox(wait_s=3 * VISIBILITY_S)
    assert [(rep.id, rep.entry_id) for rep in again] == [(receipt.id, first.entry_id)]


async def test_an_entry_delivered_max_deliveries_times_without_ack_goes_to_the_dead_letters(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    seen: list[str] = []
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, USA_ONLY)
        entry_id = receipt.recipients[0].position

        async def poll() -> int:
            seen.extend(rep.id for rep in await usa.inbox(wait_s=0.2))
            return int(r.xlen(dead_key("USA")))

        await eventually(poll, bool, bound_s=BOUND_S + MAX_DELIVERIES * VISIBILITY_S)
        after = await usa.inbox(wait_s=0)

    assert seen == [receipt.id] * MAX_DELIVERIES
    ((_, dead),) = r.xrange(dead_key("USA"))
    assert dead[b"entry"].decode() == entry_id
    assert dead[b"report"].decode() == receipt.id
    assert pending_count(r, "USA") == 0
    assert after == []


async def test_ack_removes_the_entry_from_pending(broker: RunningBroker) -> None:
    r = broker.redis()
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        await gbr.publish(BUNDLE, USA_ONLY)
        await gbr.publish(BUNDLE, USA_ONLY)
        reports = await usa.inbox()
        assert pending_count(r, "USA") == 2

        assert await usa.ack([reports[0].entry_id]) == 1
        assert pending_count(r, "USA") == 1
        await reports[1].ack()
        assert pending_count(r, "USA") == 0
        assert await usa.ack([reports[0].entry_id]) == 0  # acking twice is harmless


# --- the engine runs again at delivery time -------------------------------------------------


async def test_suspending_a_recipient_closes_its_live_stream_and_stops_delivery(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    events: list[ServerSentEvent] = []
    # USA's subscription is live before the suspension.
    reader = asyncio.create_task(stream_reports(broker, me("USA"), events, consumer="live"))
    try:
        async with AsyncPartner(broker.url, me("GBR")) as gbr:
            receipt = await gbr.publish(BUNDLE, BALTIC)
        await until(lambda: report_ids(events), lambda ids: receipt.id in ids)
        delivered = report_ids(events).count(receipt.id)
        # Not acknowledged: USA's copy is still queued for redelivery when USA is suspended.
        broker.change_policies(suspended=("USA",))

        # The broker ends the suspended partner's stream instead of keeping it open.
        await until(lambda: reader.done())
        assert reader.exception() is None
        assert report_ids(events).count(receipt.id) == delivered
        assert pending_count(r, "USA") == 1  # kept, not delivered: reinstatement may release it
    finally:
        await stop(reader)

    async with AsyncPartner(broker.url, me("USA")) as usa:
        with pytest.raises(AuthenticationError) as refused:
            await usa.inbox(wait_s=0)
    assert refused.value.code == "partner_suspended"
    async with AsyncPartner(broker.url, me("EST")) as est:  # the others are not affected
        assert [rep.id for rep in await est.inbox(wait_s=0)] == [receipt.id]


async def test_ending_an_agreement_after_posting_stops_delivery_of_queued_reports(
    broker: RunningBroker,
) -> None:
    r = broker.redis()
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        receipt = await gbr.publish(BUNDLE, BALTIC)
    assert receipt.id in inbox_report_ids(r, "USA")

    ended = copy.deepcopy(AGREEMENTS)
    ended["gbr-usa"]["valid_until"] = format_time(datetime.now(UTC) - timedelta(minutes=1))
    broker.change_policies(agreements=ended)

    async with AsyncPartner(broker.url, me("USA")) as usa:
        assert await usa.inbox(wait_s=0) == []
    assert audit_events(r, "withheld", receipt.id) == [
        {"partner": "USA", "reason": "AGREEMENT_NOT_IN_FORCE"}
    ]
    assert pending_count(r, "USA") == 0
    async with AsyncPartner(broker.url, me("EST")) as est:  # baltic is still in force
        assert [rep.id for rep in await est.inbox(wait_s=0)] == [receipt.id]


# --- the sync SDK and the directory ---------------------------------------------------------


def test_the_sync_partner_publishes_receives_and_acks(broker: RunningBroker) -> None:
    r = broker.redis()
    with Partner(broker.url, me("GBR")) as gbr, Partner(broker.url, me("EST")) as est:
        receipt = gbr.publish(BUNDLE, BALTIC)
        reports = est.inbox(wait_s=2)
        assert [rep.id for rep in reports] == [receipt.id]
        assert isinstance(reports[0], Report)
        assert reports[0].json() == BUNDLE
        assert reports[0].originator == "GBR"
        assert pending_count(r, "EST") == 1
        assert est.ack([rep.entry_id for rep in reports]) == 1
    assert pending_count(r, "EST") == 0
    assert sorted(d.partner for d in receipt.recipients) == ["EST", "FIN", "USA"]


@pytest.mark.parametrize(
    ("partner", "expected"),
    [
        pytest.param("GBR", ["baltic", "gbr-usa"], id="gbr-in-both"),
        pytest.param("USA", ["gbr-usa"], id="usa-only-gbr-usa"),
        pytest.param("FIN", ["baltic"], id="fin-only-baltic"),
        pytest.param("DEU", [], id="deu-in-none"),
    ],
)
async def test_agreements_lists_only_the_callers_agreements(
    broker: RunningBroker, partner: str, expected: list[str]
) -> None:
    async with AsyncPartner(broker.url, me(partner)) as node:
        agreements = await node.agreements()
    assert sorted(a["id"] for a in agreements) == expected
    assert all(partner in a["parties"] for a in agreements)


async def test_partners_lists_public_keys_and_no_private_fields(broker: RunningBroker) -> None:
    async with httpx.AsyncClient(timeout=BOUND_S) as client:
        response = await client.send(
            signed_request(client, me("DEU"), "GET", f"{broker.url}/v1/partners")
        )
    assert response.status_code == 200
    body = response.json()

    by_id = {p["id"]: p for p in body["partners"]}
    assert set(by_id) == set(PARTNERS)
    for pid, entry in by_id.items():
        assert entry["keys"] == me(pid).public_entry()["keys"]
    key_fields = {"kid", "use", "alg", "public", "not_before", "not_after", "revoked"}
    assert all(set(k) == key_fields for p in body["partners"] for k in p["keys"])
    assert "private" not in _all_keys(body)
    text = response.text
    for pid in PARTNERS:
        for key in me(pid).keys:
            assert b64e(key.private) not in text


def _all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(_all_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_all_keys(v) for v in value))
    return set()
