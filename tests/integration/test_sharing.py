"""End to end over real HTTP and real Redis: a report reaches exactly the entitled partners."""

from __future__ import annotations

import pytest

from tearline import DeniedError, Label
from tearline.clients.partner import AsyncPartner, Report
from tests.integration.conftest import RunningBroker, me

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
BALTIC = Label("RESTRICTED", ["USA", "BALTIC", "DEU"], "AMBER", topics=["ransomware"])


async def test_entitled_partners_receive_and_decrypt_and_others_receive_nothing(
    broker: RunningBroker,
) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
        AsyncPartner(broker.url, me("EST")) as est,
        AsyncPartner(broker.url, me("DEU")) as deu,
    ):
        receipt = await gbr.publish(BUNDLE, BALTIC)
        assert sorted(d.partner for d in receipt.recipients) == ["EST", "FIN", "USA"]
        assert {d.partner: d.agreement for d in receipt.recipients} == {
            "EST": "baltic",
            "FIN": "baltic",
            "USA": "gbr-usa",
        }
        for node in (usa, est):
            reports = await node.inbox(wait_s=2)
            assert [r.id for r in reports] == [receipt.id]
            assert isinstance(reports[0], Report)
            assert reports[0].json() == BUNDLE
            assert reports[0].originator == "GBR"
            await reports[0].ack()
        assert await deu.inbox(wait_s=0.5) == []


async def test_publish_with_no_entitled_partner_is_refused(broker: RunningBroker) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        with pytest.raises(DeniedError) as info:
            await gbr.publish(BUNDLE, Label("SECRET", ["DEU"], "RED"))
        assert info.value.details == {
            "denied": {
                "DEU": "NO_AGREEMENT",
                "EST": "NOT_RELEASABLE_TO",
                "FIN": "NOT_RELEASABLE_TO",
                "GBR": "ORIGINATOR",
                "USA": "NOT_RELEASABLE_TO",
            },
            # Of the partners the label names, who is not sent it and why.
            "not_sent": {"DEU": "NO_AGREEMENT"},
        }
