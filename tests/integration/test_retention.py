"""Retention: old entries go, and nothing a partner never acknowledged goes silently."""

from __future__ import annotations

import json

from tearline import Gap, Label
from tearline.broker import retention
from tearline.broker.store import AUDIT_KEY, inbox_key, report_key
from tearline.clients.partner import AsyncPartner
from tests.integration.conftest import RunningBroker, me

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}


async def test_an_entry_whose_report_expired_is_withheld_and_audited(broker: RunningBroker) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, Label("SECRET", ["USA"], "RED"))
        r = broker.redis()
        r.delete(report_key(receipt.id))  # what PEXPIRE does when retention runs out
        assert await usa.inbox(wait_s=0.5) == []
    withheld = [
        json.loads(fields[b"data"])
        for _, fields in r.xrange(AUDIT_KEY)
        if fields[b"event"] == b"withheld" and fields[b"report"].decode() == receipt.id
    ]
    assert withheld == [{"partner": "USA", "reason": "RETENTION_EXPIRED"}]


async def test_retention_trims_old_entries_and_tells_a_partner_what_it_never_acknowledged(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        to_usa = Label("SECRET", ["USA"], "RED")
        acked = await gbr.publish(BUNDLE, to_usa)
        (first,) = await usa.inbox(wait_s=2)
        await first.ack()
        assert first.id == acked.id
        await gbr.publish(BUNDLE, to_usa)
        await usa.inbox(wait_s=2)  # delivered, never acknowledged
        await gbr.publish(BUNDLE, to_usa)  # never even delivered

        r = broker.redis()
        cutoff_ms = int(r.xinfo_stream(inbox_key("USA"))["last-generated-id"].split(b"-")[0]) + 1
        trimmed, lost = broker.run(broker.state.store.trim_inbox("USA", cutoff_ms))

        assert (trimmed, lost) == (3, 2)
        (gap,) = await usa.inbox(wait_s=2)
        assert isinstance(gap, Gap)
        assert (gap.lost, gap.before) == (2, f"{cutoff_ms}-0")
        await gap.ack()
        assert await usa.inbox(wait_s=0.5) == []  # nothing old comes back
    audited = [
        json.loads(fields[b"data"])
        for _, fields in r.xrange(AUDIT_KEY)
        if fields[b"event"] == b"gap"
    ]
    assert audited == [{"partner": "USA", "lost": 2}]


async def test_a_partner_that_acknowledged_everything_gets_no_gap(broker: RunningBroker) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        await gbr.publish(BUNDLE, Label("SECRET", ["USA"], "RED"))
        (report,) = await usa.inbox(wait_s=2)
        await report.ack()
        r = broker.redis()
        cutoff_ms = int(r.xinfo_stream(inbox_key("USA"))["last-generated-id"].split(b"-")[0]) + 1
        assert broker.run(broker.state.store.trim_inbox("USA", cutoff_ms)) == (1, 0)
        assert await usa.inbox(wait_s=0.5) == []


async def test_enforce_trims_only_what_is_older_than_the_retention_window(
    broker: RunningBroker,
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        await gbr.publish(BUNDLE, Label("SECRET", ["USA"], "RED"))
    assert broker.run(retention.enforce(broker.state)) == {}
    assert broker.redis().xlen(inbox_key("USA")) == 1
