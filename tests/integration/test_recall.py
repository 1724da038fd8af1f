"""Recall (DESIGN §6): undelivered copies are withdrawn, recipients that had it are told."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tearline import Label, NotFoundError, Recall, Report
from tearline.broker.store import AUDIT_KEY, inbox_key
from tearline.clients.partner import AsyncPartner
from tests.integration.conftest import RunningBroker, me

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
TO_USA_AND_EST = Label("RESTRICTED", ["USA", "EST"], "AMBER", topics=["apt"])


def withheld(broker: RunningBroker, report_id: str) -> list[dict[str, Any]]:
    r = broker.redis()
    return [
        json.loads(fields[b"data"])
        for _, fields in r.xrange(AUDIT_KEY)
        if fields[b"event"] == b"withheld" and fields[b"report"].decode() == report_id
    ]


async def test_recall_withdraws_undelivered_copies_and_notifies_recipients_that_had_it(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
        AsyncPartner(broker.url, me("EST")) as est,
    ):
        receipt = await gbr.publish(BUNDLE, TO_USA_AND_EST)
        (had_it,) = await est.inbox(wait_s=2)  # EST received it and has not acked yet
        assert had_it.id == receipt.id

        outcome = await gbr.recall(receipt.id)

        assert (outcome.withdrawn, outcome.notified) == (("USA",), ("EST",))
        assert await usa.inbox(wait_s=0.5) == []
        assert broker.redis().xlen(inbox_key("USA")) == 0
        # EST gets the notice, and its unacked copy is not delivered again.
        await asyncio.sleep(1.2)  # past the 1 s visibility timeout
        deliveries = await est.inbox(wait_s=1, limit=10)
        assert [(type(d), d.id) for d in deliveries] == [(Recall, receipt.id)]
        assert withheld(broker, receipt.id) == [{"partner": "EST", "reason": "RECALLED"}]
        await deliveries[0].ack()


async def test_a_recipient_that_already_acked_the_report_is_notified(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, Label("SECRET", ["USA"], "RED"))
        (report,) = await usa.inbox(wait_s=2)
        await report.ack()
        outcome = await gbr.recall(receipt.id)
        assert outcome.notified == ("USA",)
        (notice,) = await usa.inbox(wait_s=2)
        assert isinstance(notice, Recall)
        assert (notice.id, notice.originator) == (receipt.id, "GBR")


async def test_recalling_twice_changes_nothing_the_second_time(broker: RunningBroker) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, Label("SECRET", ["USA"], "RED"))
        await usa.inbox(wait_s=2)
        first = await gbr.recall(receipt.id)
        length = broker.redis().xlen(inbox_key("USA"))
        assert await gbr.recall(receipt.id) == first
        assert broker.redis().xlen(inbox_key("USA")) == length


@pytest.mark.parametrize(
    ("who", "error", "code"),
    [
        # 404 as for an id never held: a 403 would say the report exists (an oracle).
        pytest.param("USA", NotFoundError, "no_such_report", id="a-recipient"),
        pytest.param("EST", NotFoundError, "no_such_report", id="another-partner"),
    ],
)
async def test_only_the_originator_may_recall(
    broker: RunningBroker, who: str, error: type[Exception], code: str
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me(who)) as other,
    ):
        receipt = await gbr.publish(BUNDLE, Label("SECRET", ["USA"], "RED"))
        with pytest.raises(error) as refused:
            await other.recall(receipt.id)
        assert refused.value.code == code  # type: ignore[attr-defined]
    assert broker.redis().hget(f"tl:report:{{{receipt.id}}}", "recalled") is None
    async with AsyncPartner(broker.url, me("USA")) as usa:
        (report,) = await usa.inbox(wait_s=2)
        assert isinstance(report, Report)


async def test_recalling_an_unknown_report_is_not_found(broker: RunningBroker) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        with pytest.raises(NotFoundError) as missing:
            await gbr.recall("019de2a5-6e40-7c3a-9f1e-2b4d6a8c0e99")
    assert missing.value.code == "no_such_report"


async def test_a_recall_notice_arrives_over_the_event_stream(broker: RunningBroker) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        stream = usa.subscribe()
        receipt = await gbr.publish(BUNDLE, Label("SECRET", ["USA"], "RED"))
        report = await asyncio.wait_for(anext(stream), timeout=10)
        assert isinstance(report, Report)
        await report.ack()
        await gbr.recall(receipt.id)
        notice = await asyncio.wait_for(anext(stream), timeout=10)
        assert isinstance(notice, Recall)
        assert notice.id == receipt.id
        await stream.aclose()  # type: ignore[attr-defined]
