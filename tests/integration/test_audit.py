"""The audit trail: read over HTTP by operators, sealed by signed checkpoints, checked offline."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from tearline import Label
from tearline.broker import audit
from tearline.broker.store import AUDIT_KEY
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tests.integration.conftest import RunningBroker, me

LABEL = Label("SECRET", ["USA"], "RED")
BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}


def signed_get(broker: RunningBroker, signer: str, path: str) -> httpx.Response:
    url = broker.url + path
    return httpx.get(url, headers=sign_as(me(signer), "GET", url, {}, None, now=datetime.now(UTC)))


async def test_an_operator_reads_who_received_a_report_under_which_agreement(
    broker: RunningBroker,
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        receipt = await gbr.publish(BUNDLE, LABEL)
    response = signed_get(broker, "OPS-HQ", f"/v1/audit?report_id={receipt.id}")
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entries"]
    assert entry["event"] == "accepted"
    assert entry["data"]["granted"] == {"USA": "gbr-usa"}


@pytest.mark.parametrize(
    ("signer", "code"),
    [
        pytest.param("GBR", "unknown_key", id="a-partner-key"),
        pytest.param(None, "signature_missing", id="unsigned"),
    ],
)
def test_only_operators_read_the_audit_trail(
    broker: RunningBroker, signer: str | None, code: str
) -> None:
    response = (
        signed_get(broker, signer, "/v1/audit") if signer else httpx.get(broker.url + "/v1/audit")
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def run_verify(broker: RunningBroker) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from tearline.clients.cli import main; main()", "audit", "verify",
         "--data-dir", str(broker.settings.data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "REDIS_URL": broker.settings.redis_url or ""},
    )  # fmt: skip


async def test_audit_verify_accepts_the_sealed_trail_and_catches_a_deleted_entry(
    broker: RunningBroker,
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        for _ in range(3):
            await gbr.publish(BUNDLE, LABEL)
    checkpoint = broker.run(audit.seal(broker.state))
    assert checkpoint is not None
    assert checkpoint.count == 3

    verified = run_verify(broker)
    assert verified.returncode == 0, verified.stderr
    assert "ok: 3 entries, 1 signed checkpoints; 3 entries covered" in verified.stdout

    r = broker.redis()
    first_id = r.xrange(AUDIT_KEY, count=1)[0][0]
    r.xdel(AUDIT_KEY, first_id)
    broken = run_verify(broker)
    assert broken.returncode == 1
    assert "audit trail BROKEN" in broken.stderr


async def test_acknowledging_a_report_records_who_received_it(broker: RunningBroker) -> None:
    async with (
        AsyncPartner(broker.url, me("GBR")) as gbr,
        AsyncPartner(broker.url, me("USA")) as usa,
    ):
        receipt = await gbr.publish(BUNDLE, LABEL)
        (report,) = await usa.inbox(wait_s=2)
        await report.ack()
        await report.ack()  # a second ack acknowledges nothing, and records nothing
    response = signed_get(broker, "OPS-HQ", f"/v1/audit?report_id={receipt.id}")
    events = [(e["event"], e["data"]) for e in response.json()["entries"]]
    assert events == [("received", {"partner": "USA"}), ("accepted", events[1][1])]
