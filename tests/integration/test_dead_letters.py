"""Dead letters, for operators, over real HTTP and a real redis-server (DESIGN §7).

An entry delivered more than ``max_deliveries`` times without an ack, or one that cannot be
delivered for a reason of its own (a *poison* entry), goes to the partner's dead-letter stream.
An operator lists them, sees why and what the broker holds of the report (never its content),
and replays one once the cause is fixed: the partner receives it again, and the audit trail
says which operator did it. Nobody else can do any of that.

The poison entries here are real ones: a report whose label names the marking scheme, after
the operator renamed the scheme (so the label no longer parses under today's scheme).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tearline import AsyncOperator, Label, NotFoundError, Operator
from tearline.broker.reload import reload_now
from tearline.broker.store import AUDIT_KEY, GROUP, dead_key, inbox_key, report_key
from tearline.clients.httpsig import sign_as
from tearline.clients.keyfile import Identity, write_keypair
from tearline.clients.operator import HeldReport
from tearline.clients.partner import AsyncPartner, Report
from tearline.clients.protocol.receipt import Receipt
from tests.factories import identity
from tests.integration.conftest import AGREEMENTS, SCHEME, RunningBroker, me, write_policies
from tests.integration.test_delivery import BOUND_S, MAX_DELIVERIES, VISIBILITY_S
from tests.integration.waiting import eventually

BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
# GBR → USA only (gbr-usa). The label names the scheme, so renaming the scheme poisons it.
LABEL = Label("SECRET", ["USA"], "AMBER", topics=["apt"], policy=str(SCHEME["policy"]))
TEARLINE = [sys.executable, "-c", "from tearline.clients.cli import main; main()"]


# --- helpers --------------------------------------------------------------------------------


def operator_call(
    broker: RunningBroker, signer: Identity | None, method: str, path: str
) -> httpx.Response:
    """A request to the broker signed (or not) by ``signer``, for the exact URL sent."""
    with httpx.Client(base_url=broker.url, timeout=BOUND_S) as client:
        request = client.build_request(method, path)
        if signer is not None:
            request.headers.update(
                sign_as(signer, method, str(request.url), {}, None, now=datetime.now(UTC))
            )
        return client.send(request)


async def publish(broker: RunningBroker, count: int = 1) -> list[Receipt]:
    """Reports from GBR to USA, under the scheme as the test world has it."""
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        return [await gbr.publish(BUNDLE, LABEL) for _ in range(count)]


def rename_scheme(broker: RunningBroker) -> None:
    """The operator renames the marking scheme: labels naming the old one stop parsing."""
    (broker.policies / "scheme.yaml").write_text(
        yaml.safe_dump({**SCHEME, "policy": "TEARLINE-RENAMED"})
    )
    assert broker.run(reload_now(broker.state)), broker.state.policy_error


async def poison(broker: RunningBroker, count: int = 1) -> list[Receipt]:
    """``count`` reports for USA that become poison: USA's next poll dead-letters them."""
    receipts = await publish(broker, count)
    rename_scheme(broker)
    async with AsyncPartner(broker.url, me("USA")) as usa:
        assert await usa.inbox(wait_s=0, limit=count) == []
    assert int(broker.redis().xlen(dead_key("USA"))) == count
    return receipts


def snapshot(broker: RunningBroker) -> dict[str, Any]:
    """What a refused request must leave as it was."""
    r = broker.redis()
    return {
        "dead": r.xrange(dead_key("USA")),
        "inbox": r.xrange(inbox_key("USA")),
        "pending": r.xpending(inbox_key("USA"), GROUP)["pending"],
        "audit": r.xlen(AUDIT_KEY),
    }


def audit_of(broker: RunningBroker, event: str) -> list[dict[str, Any]]:
    return [
        json.loads(f[b"data"])
        for _, f in broker.redis().xrange(AUDIT_KEY)
        if f[b"event"].decode() == event
    ]


# --- list -----------------------------------------------------------------------------------


async def test_an_entry_delivered_too_often_without_ack_is_listed_with_its_reason(
    broker: RunningBroker,
) -> None:
    (receipt,) = await publish(broker)
    async with AsyncPartner(broker.url, me("USA")) as usa:

        async def poll() -> int:
            await usa.inbox(wait_s=0.2)  # never acknowledged
            return int(broker.redis().xlen(dead_key("USA")))

        await eventually(poll, bool, bound_s=BOUND_S + MAX_DELIVERIES * VISIBILITY_S)

    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        page = await ops.dead_letters("USA")
    (dead,) = page.dead_letters
    assert page.partner == "USA"
    assert page.next is None
    assert (dead.entry_id, dead.kind, dead.report_id, dead.originator) == (
        receipt.recipients[0].position,
        "report",
        receipt.id,
        "GBR",
    )
    assert dead.reason == f"delivered {MAX_DELIVERIES} times without ack"
    # dead_at is the dead letter id's time, within this test's run.
    assert datetime.now(UTC) - timedelta(minutes=1) < dead.dead_at <= datetime.now(UTC)
    assert dead.dead_at == datetime.fromtimestamp(int(dead.id.split("-")[0]) / 1000, UTC)


async def test_a_poison_entry_is_listed_at_once_and_pages_go_oldest_first(
    broker: RunningBroker,
) -> None:
    receipts = await poison(broker, 3)
    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        first = await ops.dead_letters("USA", limit=2)
        assert first.next == first.dead_letters[-1].id
        second = await ops.dead_letters("USA", after=first.next, limit=2)
        assert second.next is None
        assert (await ops.dead_letters("EST")).dead_letters == ()  # a partner with none

    listed = [*first.dead_letters, *second.dead_letters]
    assert [d.report_id for d in listed] == [r.id for r in receipts]
    for dead in listed:
        assert dead.reason.startswith("undeliverable: label.policy 'TEARLINE-TEST' is not")


# --- show -----------------------------------------------------------------------------------


async def test_show_gives_the_reports_facts_but_never_its_content(broker: RunningBroker) -> None:
    (receipt,) = await poison(broker)
    envelope = broker.redis().hget(report_key(receipt.id), "envelope")
    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        (dead,) = (await ops.dead_letters("USA")).dead_letters
        detail = await ops.dead_letter("USA", dead.id)

    assert detail.dead_letter == dead
    held = detail.report
    assert held is not None
    assert held.exists
    assert (held.originator, held.suite, held.recalled) == ("GBR", "classic", False)
    assert held.label == LABEL.to_dict()
    assert held.envelope_bytes == len(envelope)
    assert held.envelope_sha256 == receipt.envelope_sha256

    raw = operator_call(broker, me("OPS-HQ"), "GET", f"/v1/dead-letters/USA/{dead.id}")
    assert raw.status_code == 200, raw.text
    ciphertext = json.loads(envelope)["ciphertext"]
    assert ciphertext not in raw.text
    assert set(raw.json()["report"]) == {
        "exists", "originator", "label", "suite", "recalled", "envelope_bytes", "envelope_sha256",
    }  # fmt: skip


async def test_show_says_so_when_the_report_is_no_longer_held(broker: RunningBroker) -> None:
    (receipt,) = await poison(broker)
    broker.redis().delete(report_key(receipt.id))  # as if it had outlived retention
    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        (dead,) = (await ops.dead_letters("USA")).dead_letters
        detail = await ops.dead_letter("USA", dead.id)
    assert detail.dead_letter.report_id == receipt.id
    assert detail.report == HeldReport(exists=False)


async def test_a_removed_partners_dead_letters_stay_readable_but_are_not_replayed(
    broker: RunningBroker,
) -> None:
    (receipt,) = await poison(broker)
    # The operator removes USA: from its agreement, the registry and the scheme's groups.
    agreements = {k: v for k, v in AGREEMENTS.items() if k != "gbr-usa"}
    write_policies(broker.policies, agreements=agreements)
    partners = yaml.safe_load((broker.policies / "partners.yaml").read_text())
    partners["partners"] = [p for p in partners["partners"] if p["id"] != "USA"]
    (broker.policies / "partners.yaml").write_text(yaml.safe_dump(partners, width=1 << 16))
    assert broker.run(reload_now(broker.state)), broker.state.policy_error

    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        (dead,) = (await ops.dead_letters("USA")).dead_letters
        assert (await ops.dead_letter("USA", dead.id)).dead_letter.report_id == receipt.id
        with pytest.raises(NotFoundError) as refused:
            await ops.replay("USA", dead.id)
    assert refused.value.code == "no_such_partner"
    assert int(broker.redis().xlen(dead_key("USA"))) == 1


async def test_show_of_an_unknown_dead_letter_is_a_404(broker: RunningBroker) -> None:
    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        with pytest.raises(NotFoundError) as missing:
            await ops.dead_letter("USA", "1-0")
    assert missing.value.code == "no_such_dead_letter"


# --- replay ---------------------------------------------------------------------------------


async def test_replay_after_the_fix_delivers_the_report_again_and_audits_the_operator(
    broker: RunningBroker,
) -> None:
    (receipt,) = await poison(broker)
    broker.change_policies()  # the operator restores the scheme's name
    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        (dead,) = (await ops.dead_letters("USA")).dead_letters
        replayed = await ops.replay("USA", dead.id)
        assert (await ops.dead_letters("USA")).dead_letters == ()

        async with AsyncPartner(broker.url, me("USA")) as usa:
            (report,) = await usa.inbox(wait_s=2)
            assert isinstance(report, Report)
            await report.ack()
        trail = await ops.audit(receipt.id)

    assert (replayed.partner, replayed.dead_letter) == ("USA", dead.id)
    assert (report.id, report.entry_id) == (receipt.id, replayed.entry_id)
    assert report.json() == BUNDLE
    assert replayed.entry_id != dead.entry_id  # a new entry, not the old one revived
    events = [(e["event"], e["data"]) for e in trail.entries]
    assert [name for name, _ in events] == ["received", "replayed", "dead_lettered", "accepted"]
    assert events[1][1] == {"partner": "USA", "dead_letter": dead.id, "by": "OPS-HQ"}
    assert events[2][1]["entry"] == dead.entry_id


async def test_a_dead_letter_is_replayed_once_even_when_asked_twice_at_once(
    broker: RunningBroker,
) -> None:
    await poison(broker, 2)
    inbox_before = int(broker.redis().xlen(inbox_key("USA")))
    async with AsyncOperator(broker.url, me("OPS-HQ")) as ops:
        first, second = (await ops.dead_letters("USA")).dead_letters
        await ops.replay("USA", first.id)
        with pytest.raises(NotFoundError) as again:
            await ops.replay("USA", first.id)
        # Three operators racing over one dead letter: exactly one puts it back.
        raced = await asyncio.gather(
            *(ops.replay("USA", second.id) for _ in range(3)), return_exceptions=True
        )

    assert again.value.code == "no_such_dead_letter"
    assert sum(not isinstance(o, BaseException) for o in raced) == 1
    assert all(o.code == "no_such_dead_letter" for o in raced if isinstance(o, NotFoundError))
    assert int(broker.redis().xlen(inbox_key("USA"))) == inbox_before + 2
    assert [e["dead_letter"] for e in audit_of(broker, "replayed")] == [first.id, second.id]


# --- who may do it --------------------------------------------------------------------------

# Not an operator key: refused whatever the request asks for.
A_STRANGER = Identity(identity("OPS-XX", "classic").partner, identity("OPS-XX", "classic").keys)
# OPS-HQ's key id, another private key: the signature does not verify.
A_FORGER = Identity(identity("OPS-HQ", "pq-hybrid").partner, identity("OPS-HQ", "pq-hybrid").keys)


@pytest.mark.parametrize(
    ("signer", "partner", "dead_id", "status", "code"),
    [
        pytest.param(None, "USA", None, 401, "signature_missing", id="unsigned"),
        pytest.param("GBR", "USA", None, 401, "unknown_key", id="partner-signed"),
        pytest.param("USA", "USA", None, 401, "unknown_key", id="signed-by-the-inbox-owner"),
        pytest.param("stranger", "USA", None, 401, "unknown_key", id="unknown-operator-key"),
        pytest.param("forger", "USA", None, 401, "signature_invalid", id="forged-operator-key"),
        pytest.param("OPS-HQ", "usa", None, 422, "invalid_request", id="bad-partner-id"),
        pytest.param("OPS-HQ", "USA", "1-x", 422, "invalid_request", id="bad-stream-id"),
        pytest.param(
            "OPS-HQ", "USA", "18446744073709551616-0", 400, "invalid_stream_id", id="over-64-bits"
        ),
        pytest.param("OPS-HQ", "USA", "١٢-٣", 400, "invalid_stream_id", id="non-ascii-digits"),
        pytest.param("OPS-HQ", "ZZZ", None, 404, "no_such_partner", id="unknown-partner"),
    ],
)
async def test_every_dead_letter_endpoint_refuses_and_changes_nothing(
    broker: RunningBroker,
    signer: str | None,
    partner: str,
    dead_id: str | None,
    status: int,
    code: str,
) -> None:
    await poison(broker)
    (real_id,) = [i.decode() for i, _ in broker.redis().xrange(dead_key("USA"))]
    who = {"stranger": A_STRANGER, "forger": A_FORGER}.get(signer or "") or (
        me(signer) if signer else None
    )
    target = dead_id or real_id
    after = f"&after={dead_id}" if dead_id else ""
    before = snapshot(broker)
    calls = [
        ("GET", f"/v1/dead-letters?partner={partner}{after}"),
        ("GET", f"/v1/dead-letters/{partner}/{target}"),
        ("POST", f"/v1/dead-letters/{partner}/{target}/replay"),
    ]
    for method, path in calls:
        response = operator_call(broker, who, method, path)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), path
    assert snapshot(broker) == before
    assert audit_of(broker, "replayed") == []


# --- the command line -----------------------------------------------------------------------


def tearline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TEARLINE, *args], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


async def test_the_cli_lists_shows_and_replays_a_dead_letter(
    broker: RunningBroker, tmp_path: Path
) -> None:
    (receipt,) = await poison(broker)
    broker.change_policies()
    keys = tmp_path / "keys"
    for pid in ("OPS-HQ", "GBR"):
        write_keypair(me(pid), keys)
    ops = ["--broker", broker.url, "--identity", str(keys / "OPS-HQ.identity.json")]

    listed = tearline("dead-letters", "list", "--partner", "USA", *ops, "--json")
    assert listed.returncode == 0, listed.stderr
    (dead,) = json.loads(listed.stdout)["dead_letters"]
    assert (dead["report_id"], dead["originator"]) == (receipt.id, "GBR")

    table = tearline("dead-letters", "list", "--partner", "USA", *ops)
    assert table.returncode == 0, table.stderr
    assert dead["id"] in table.stdout
    assert "undeliverable" in table.stdout

    # The broker and the identity from the environment, as an operator's shell would set them.
    env = {"TEARLINE_BROKER": broker.url, "TEARLINE_IDENTITY": str(keys / "OPS-HQ.identity.json")}
    shown = tearline("dead-letters", "show", "USA", dead["id"], "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["report"]["envelope_sha256"] == receipt.envelope_sha256

    replayed = tearline("dead-letters", "replay", "USA", dead["id"], *ops, "--json")
    assert replayed.returncode == 0, replayed.stderr
    entry_id = json.loads(replayed.stdout)["entry_id"]
    async with AsyncPartner(broker.url, me("USA")) as usa:
        assert [(d.id, d.entry_id) for d in await usa.inbox(wait_s=2)] == [(receipt.id, entry_id)]

    again = tearline("dead-letters", "replay", "USA", dead["id"], *ops)
    assert again.returncode == 1
    assert again.stderr.startswith("error: ")
    assert again.stderr.rstrip().endswith("(no_such_dead_letter)")
    assert "Traceback" not in again.stderr

    as_partner = ["--broker", broker.url, "--identity", str(keys / "GBR.identity.json")]
    refused = tearline("dead-letters", "list", "--partner", "USA", *as_partner)
    assert refused.returncode == 1
    assert refused.stderr.rstrip().endswith("(unknown_key)")

    for bad in (["list", "--partner", "usa"], ["show", "USA", "not-an-id"], ["replay", "USA"]):
        usage = tearline("dead-letters", *bad, *ops)
        assert usage.returncode == 2, (bad, usage.stderr)
        assert "Traceback" not in usage.stderr


def test_the_sync_operator_reads_the_same_dead_letters(broker: RunningBroker) -> None:
    (receipt,) = asyncio.run(poison(broker))
    with Operator(broker.url, me("OPS-HQ")) as ops:
        (dead,) = ops.dead_letters("USA").dead_letters
        assert ops.dead_letter("USA", dead.id).dead_letter == dead
        assert ops.replay("USA", dead.id).partner == "USA"
        assert ops.audit(receipt.id).entries[0]["event"] == "replayed"
