"""Editing policies/ in a running broker: a good edit takes effect, a bad one is refused.

The broker here polls its folder every ``POLL_S`` and the tests let its watcher find each change
by itself, the way an operator's edit, restore or rsync is found in production: content decides,
never timestamps. Every effect is checked over real HTTP against the real Redis, and every
refusal both ways: what the caller is told, and that nothing was stored or delivered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import redis
import yaml

from tearline import Label
from tearline.broker.app import create_app
from tearline.broker.policy.fingerprint import fingerprint
from tearline.broker.policy.folder import read_policy_folder
from tearline.broker.policy.record import Outcome
from tearline.broker.reload import reload_now
from tearline.broker.runner import broker_in_thread
from tearline.broker.settings import Settings
from tearline.broker.store import AUDIT_KEY, GROUP, inbox_key
from tearline.clients.httpsig import sign_as
from tearline.clients.partner import AsyncPartner
from tests.integration.conftest import AGREEMENTS, PARTNERS, RunningBroker, me, write_policies
from tests.integration.test_adversarial import envelope, snapshot

# The watcher's interval in these tests (TEARLINE_POLICY_POLL_S, 5 s by default).
POLL_S: Final = 0.05
SETTLE_S: Final = 10.0
LABEL: Final = Label("RESTRICTED", ["USA"], "AMBER")
# GBR → USA under gbr-usa only: above the Baltic ceiling.
USA_ONLY: Final = Label("SECRET", ["USA"], "AMBER", topics=["apt"])
DEU_ONLY: Final = Label("RESTRICTED", ["DEU"], "AMBER", topics=["apt"])
BUNDLE: Final = {
    "type": "bundle",
    "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8",
    "objects": [],
}
LOG: Final = "tearline.broker"


@pytest.fixture
def broker(redis_server: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    """conftest's broker, with the policy watcher polling every POLL_S."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    policies = tmp_path / "policies"
    write_policies(policies)
    settings = Settings(
        redis_url=redis_server.url,
        policies_dir=policies,
        data_dir=tmp_path / "data",
        visibility_timeout_ms=1000,
        max_deliveries=3,
        sse_heartbeat_s=1,
        policy_poll_s=POLL_S,
    )
    with broker_in_thread(create_app(settings)) as threaded:
        yield RunningBroker(threaded, policies, settings)


# --- helpers ----------------------------------------------------------------------------------


def settled(broker: RunningBroker) -> Outcome:
    """Wait for the watcher to act on what the folder holds now: applied, or refused."""
    expected = fingerprint(read_policy_folder(broker.policies))
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        record = broker.state.reloads
        # In force and nothing refused outstanding: a folder put back as it was is "applied"
        # only once the watcher has seen it (the policy in force never changed meanwhile).
        if record.fingerprint == expected and not record.outstanding:
            return Outcome.APPLIED
        if record.outstanding and record.refused and record.refused.fingerprint == expected:
            return Outcome.REFUSED
        time.sleep(POLL_S)
    raise AssertionError(f"the watcher did not act on the folder within {SETTLE_S} s")


def put(path: Path, text: str) -> None:
    """Write ``path`` the way rsync and careful editors do: a hidden temporary file renamed
    into place, so the watcher never reads half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def reloads_counted(broker: RunningBroker) -> dict[str, float]:
    url = f"{broker.url}/metrics"  # operators only
    headers = sign_as(me("OPS-HQ"), "GET", url, {}, None, now=datetime.now(UTC))
    text = httpx.get(url, headers=headers).text
    found = re.findall(r'^tearline_policy_reloads_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {outcome: float(value) for outcome, value in found}


def signed(
    broker: RunningBroker, who: str, method: str, path: str, body: bytes | None = None
) -> httpx.Response:
    url = broker.url + path
    headers = {"content-type": "application/json"} if body else {}
    headers.update(sign_as(me(who), method, url, headers, body, now=datetime.now(UTC)))
    return httpx.request(method, url, headers=headers, content=body)


def status(broker: RunningBroker) -> dict[str, Any]:
    response = signed(broker, "OPS-HQ", "GET", "/v1/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def folder_digest(folder: Path) -> str:
    """The digest as the README defines it, computed independently: SHA-256 of ``sha256sum``'s
    lines for the policy files, sorted by path."""
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in [*folder.glob("*.yaml"), *folder.glob("agreements/*.yaml")]
        if not p.name.startswith(".")
    )
    lines = "".join(
        f"{hashlib.sha256((folder / f).read_bytes()).hexdigest()}  {f}\n" for f in files
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def audit_events(r: Any, event: str, report_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(fields[b"data"])
        for _, fields in r.xrange(AUDIT_KEY)
        if fields[b"event"].decode() == event and fields[b"report"].decode() == report_id
    ]


def log_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOG and r.levelno == level]


# --- the policy in force follows the folder's content -----------------------------------------


async def test_a_deleted_agreement_stops_granting_and_delivering(
    broker: RunningBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    r = broker.redis()
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        queued = await gbr.publish(BUNDLE, USA_ONLY)  # in USA's inbox, not yet read
    sealed_for_the_old_grant = envelope(("USA",), USA_ONLY)
    counted = reloads_counted(broker)

    (broker.policies / "agreements" / "gbr-usa.yaml").unlink()
    assert settled(broker) is Outcome.APPLIED

    assert any(
        "policy reloaded (removed agreements/gbr-usa.yaml)" in line
        for line in log_lines(caplog, logging.INFO)
    )
    assert reloads_counted(broker)["applied"] == counted["applied"] + 1
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        assert (await gbr.preview(USA_ONLY))["USA"].reason == "NO_AGREEMENT"
    before = snapshot(r)
    posted = signed(broker, "GBR", "POST", "/v1/reports", sealed_for_the_old_grant)
    assert posted.status_code == 403, posted.text
    assert posted.json()["error"]["code"] == "recipient_not_entitled"
    assert snapshot(r) == before  # no report stored, no inbox entry, no audit entry
    async with AsyncPartner(broker.url, me("USA")) as usa:
        assert await usa.inbox(wait_s=0) == []  # the queued report is withheld at delivery
    assert audit_events(r, "withheld", queued.id) == [{"partner": "USA", "reason": "NO_AGREEMENT"}]
    assert int(r.xpending(inbox_key("USA"), GROUP)["pending"]) == 0


async def test_a_partners_file_restored_with_an_old_mtime_takes_effect(
    broker: RunningBroker, tmp_path: Path
) -> None:
    partners = broker.policies / "partners.yaml"

    def registry(suspended: tuple[str, ...], size: int) -> str:
        entries = [
            me(p).public_entry(status="suspended" if p in suspended else "active") for p in PARTNERS
        ]
        text = yaml.safe_dump({"partners": entries}, width=1 << 16)
        return text + "#" * (size - len(text) - 1) + "\n"  # a comment: every version one size

    size = len(registry(("USA",), 0)) + 64
    put(partners, registry((), size))
    assert settled(broker) is Outcome.APPLIED
    (broker.policies / "scheme.yaml").touch()  # edited since: the newest file in the folder
    # Yesterday's backup, in which USA is suspended; rsync -t (or cp -p) keeps its mtime.
    backup = tmp_path / "backup-partners.yaml"
    backup.write_text(registry(("USA",), size), encoding="utf-8")
    month_ago = time.time() - 30 * 86400
    os.utime(backup, (month_ago, month_ago))
    newest_before = max(p.stat().st_mtime for p in broker.policies.rglob("*.yaml"))

    temporary = broker.policies / ".partners.yaml.Xy12Ab"  # as rsync names it while it copies
    shutil.copy2(backup, temporary)
    os.utime(temporary, (month_ago, month_ago))
    temporary.replace(partners)
    # What an mtime watcher sees: the same size, an older file, the newest mtime unchanged.
    assert partners.stat().st_size == size
    assert partners.stat().st_mtime < newest_before
    assert max(p.stat().st_mtime for p in broker.policies.rglob("*.yaml")) == newest_before
    assert settled(broker) is Outcome.APPLIED

    r = broker.redis()
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        assert (await gbr.preview(USA_ONLY))["USA"].reason == "PARTNER_SUSPENDED"
    before = snapshot(r)
    posted = signed(broker, "GBR", "POST", "/v1/reports", envelope(("USA",), USA_ONLY))
    assert posted.status_code == 403, posted.text
    assert snapshot(r) == before
    read = signed(broker, "USA", "GET", "/v1/inbox?wait=0")
    assert read.status_code == 401
    assert read.json()["error"]["code"] == "partner_suspended"


OFF: Final = "agreements/gbr-usa.yaml.off"
RENAMED: Final = "agreements/gbr-usa-2026.yaml"


@pytest.mark.parametrize(
    ("new_name", "says", "changes"),
    [
        pytest.param(
            OFF,
            "not read by the broker: to end an agreement, move its file out",
            {"added": [OFF], "removed": ["agreements/gbr-usa.yaml"], "changed": [], "renamed": []},
            id="to-switch-it-off",
        ),
        pytest.param(
            RENAMED,
            "id 'gbr-usa' does not match the file name 'gbr-usa-2026'",
            {
                "added": [],
                "removed": [],
                "changed": [],
                "renamed": [{"from": "agreements/gbr-usa.yaml", "to": RENAMED}],
            },
            id="to-another-id",
        ),
    ],
)
async def test_a_renamed_agreement_file_is_noticed(
    broker: RunningBroker, tmp_path: Path, new_name: str, says: str, changes: dict[str, Any]
) -> None:
    before = broker.state.policy
    (broker.policies / "agreements" / "gbr-usa.yaml").rename(broker.policies / new_name)

    assert settled(broker) is Outcome.REFUSED  # noticed, though no file's mtime changed
    refused = status(broker)["last_refused_reload"]
    assert refused["outstanding"] is True
    assert refused["changes"] == changes
    assert [p for p in refused["problems"] if p.startswith(new_name) and says in p]
    assert broker.state.policy is before  # the last good policy stays in force
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        assert (await gbr.preview(USA_ONLY))["USA"].agreement == "gbr-usa"

    (broker.policies / new_name).rename(tmp_path / "old-agreement.yaml")  # moved out: ended
    assert settled(broker) is Outcome.APPLIED
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        assert (await gbr.preview(USA_ONLY))["USA"].reason == "NO_AGREEMENT"


def policy_check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from tearline.clients.cli import main; main()", "policy", "check",
         "--policies", str(folder)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_a_yml_file_is_refused_not_silently_ignored(
    broker: RunningBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    before = broker.state.policy
    counted = reloads_counted(broker)
    gbr_deu = {**AGREEMENTS["gbr-usa"], "id": "gbr-deu", "parties": {"GBR": {}, "DEU": {}}}
    put(broker.policies / "agreements" / "gbr-deu.yml", yaml.safe_dump(gbr_deu))

    checked = policy_check(broker.policies)
    assert checked.returncode == 1
    assert "agreements/gbr-deu.yml: not read by the broker" in checked.stderr
    assert "rename it agreements/gbr-deu.yaml" in checked.stderr
    assert "the policy folder holds only scheme.yaml, partners.yaml" in checked.stderr

    assert settled(broker) is Outcome.REFUSED
    assert broker.state.policy is before
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        decisions = await gbr.preview(DEU_ONLY)
        assert decisions["DEU"].reason == "NO_AGREEMENT"  # the .yml agreement is not in force
        assert (await gbr.preview(USA_ONLY))["USA"].agreement == "gbr-usa"  # the rest is
    (refusal,) = [line for line in log_lines(caplog, logging.ERROR) if "refused" in line]
    assert "(added agreements/gbr-deu.yml)" in refusal
    assert "agreements/gbr-deu.yml: not read by the broker" in refusal
    time.sleep(10 * POLL_S)  # refused once, not again every round
    assert reloads_counted(broker)["refused"] == counted["refused"] + 1

    agreements = broker.policies / "agreements"
    (agreements / "gbr-deu.yml").rename(agreements / "gbr-deu.yaml")
    assert settled(broker) is Outcome.APPLIED
    assert policy_check(broker.policies).returncode == 0
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        assert (await gbr.preview(DEU_ONLY))["DEU"].agreement == "gbr-deu"


def _revoke_operator_key(folder: Path) -> None:
    operator = me("OPS-HQ").public_entry()
    operator["keys"] = [{**k, "revoked": True} for k in operator["keys"] if k["use"] == "sig"]
    put(folder / "operators.yaml", yaml.safe_dump({"operators": [operator]}, width=1 << 16))


def _remove_operators_file(folder: Path) -> None:
    (folder / "operators.yaml").unlink()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param(_revoke_operator_key, "key_not_valid", id="key-revoked"),
        pytest.param(_remove_operators_file, "unknown_key", id="operators-file-removed"),
    ],
)
async def test_a_revoked_operator_key_stops_reading_the_audit_trail(
    broker: RunningBroker, change: Any, code: str
) -> None:
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        receipt = await gbr.publish(BUNDLE, USA_ONLY)
    path = f"/v1/audit?report_id={receipt.id}"
    assert signed(broker, "OPS-HQ", "GET", path).json()["entries"]

    change(broker.policies)  # only operators.yaml changes
    assert settled(broker) is Outcome.APPLIED

    refused = signed(broker, "OPS-HQ", "GET", path)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == code
    assert "entries" not in refused.json()
    assert signed(broker, "OPS-HQ", "GET", "/v1/status").status_code == 401


# --- what the broker says about a refused reload, and to whom ---------------------------------


async def test_readyz_says_reload_refused_without_the_error_text(broker: RunningBroker) -> None:
    agreement = broker.policies / "agreements" / "gbr-usa.yaml"
    good = agreement.read_text(encoding="utf-8")
    in_force = status(broker)["policy"]["digest"]
    secret_terms = {**AGREEMENTS["gbr-usa"], "title": "Zebra terms", "ceiling": "NOFORN-ZEBRA"}
    put(agreement, yaml.safe_dump(secret_terms))
    assert settled(broker) is Outcome.REFUSED

    ready = httpx.get(f"{broker.url}/readyz")
    assert ready.status_code == 200  # the last good policy serves
    assert ready.json() == {
        "ready": True,
        "checks": {
            "policy": True,
            "redis": True,
            "policy_reload": "refused",
            "store": "ok",
            "inboxes": "ready",
        },
    }
    for leak in ("ZEBRA", "Zebra", "gbr-usa", "agreements", "ceiling", "classification"):
        assert leak not in ready.text

    seen = status(broker)  # the operator gets everything
    assert seen["policy"]["digest"] == in_force
    refused = seen["last_refused_reload"]
    assert refused["outstanding"] is True
    assert refused["changes"]["changed"] == ["agreements/gbr-usa.yaml"]
    assert re.search(
        r"agreements/gbr-usa\.yaml:\d+: unknown classification level NOFORN-ZEBRA", refused["error"]
    )

    put(agreement, good)  # put back as it was: nothing to reload, nothing refused any more
    assert settled(broker) is Outcome.APPLIED
    assert httpx.get(f"{broker.url}/readyz").json()["checks"]["policy_reload"] == "ok"
    seen = status(broker)
    assert seen["policy"]["digest"] == in_force
    assert seen["last_refused_reload"]["outstanding"] is False


async def test_the_status_shows_an_operator_the_policy_in_force(broker: RunningBroker) -> None:
    seen = status(broker)
    assert seen["last_refused_reload"] is None
    policy = seen["policy"]
    assert policy["digest"] == folder_digest(broker.policies)
    assert set(policy["files"]) == {
        "scheme.yaml",
        "partners.yaml",
        "operators.yaml",
        "agreements/baltic.yaml",
        "agreements/gbr-usa.yaml",
    }
    assert (
        policy["files"]["scheme.yaml"]
        == hashlib.sha256((broker.policies / "scheme.yaml").read_bytes()).hexdigest()
    )
    assert (policy["scheme"], policy["partners"], policy["agreements"], policy["operators"]) == (
        "TEARLINE-TEST",
        len(PARTNERS),
        len(AGREEMENTS),
        1,
    )
    loaded = datetime.fromisoformat(policy["loaded_at"])
    assert abs((datetime.now(UTC) - loaded).total_seconds()) < 60


@pytest.mark.parametrize(
    ("signer", "code"),
    [
        pytest.param("GBR", "unknown_key", id="a-partner-key"),
        pytest.param(None, "signature_missing", id="unsigned"),
    ],
)
async def test_only_an_operator_sees_the_status_and_the_refused_error(
    broker: RunningBroker, signer: str | None, code: str
) -> None:
    broken = {**AGREEMENTS["gbr-usa"], "ceiling": "COSMIC"}
    put(broker.policies / "agreements" / "gbr-usa.yaml", yaml.safe_dump(broken))
    assert settled(broker) is Outcome.REFUSED
    response = (
        signed(broker, signer, "GET", "/v1/status")
        if signer
        else httpx.get(f"{broker.url}/v1/status")
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert "COSMIC" not in response.text
    assert "COSMIC" in status(broker)["last_refused_reload"]["error"]


# --- reload by hand (tests and operators' scripts) --------------------------------------------


async def test_a_broken_policy_edit_keeps_the_last_good_policy_and_status_says_why(
    broker: RunningBroker,
) -> None:
    before = broker.state.policy
    put(broker.policies / "agreements" / "gbr-usa.yaml", "id: gbr-usa\nceiling: COSMIC\n")

    assert broker.run(reload_now(broker.state)) is False
    assert broker.state.policy is before
    async with httpx.AsyncClient() as client:
        ready = (await client.get(f"{broker.url}/readyz")).json()
    assert ready["ready"] is True
    assert ready["checks"]["policy_reload"] == "refused"
    assert "agreements/gbr-usa.yaml" in status(broker)["last_refused_reload"]["error"]
    async with AsyncPartner(broker.url, me("GBR")) as gbr:  # still routing under the old policy
        receipt = await gbr.publish(BUNDLE, LABEL)
    assert [r.partner for r in receipt.recipients] == ["USA"]


async def test_a_good_policy_edit_takes_effect_for_the_next_report(broker: RunningBroker) -> None:
    broker.change_policies(agreements={})  # every agreement ended
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        decisions = await gbr.preview(LABEL)
    assert decisions["USA"].reason == "NO_AGREEMENT"
    assert broker.state.policy_error is None
