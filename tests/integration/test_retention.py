"""A report that outlived retention is not delivered, and the audit trail says so."""

from __future__ import annotations

import json
from typing import Any

from broker.store import AUDIT_KEY, report_key
from clients import Label
from clients.partner import AsyncPartner
from tests.integration.conftest import RunningBroker, me


async def test_an_entry_whose_report_expired_is_withheld_and_audited(broker: RunningBroker) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(
            {"type": "bundle", "objects": []}, Label("SECRET", ["USA"], "RED")
        )
        r: Any = broker.redis()
        r.delete(report_key(receipt.id))  # what PEXPIRE does when retention runs out
        assert await usa.inbox(wait_s=0.5) == []
    withheld = [
        json.loads(fields[b"data"])
        for _, fields in r.xrange(AUDIT_KEY)
        if fields[b"event"] == b"withheld" and fields[b"report"].decode() == receipt.id
    ]
    assert withheld == [{"partner": "USA", "reason": "RETENTION_EXPIRED"}]
