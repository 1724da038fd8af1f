"""The partner and operator commands against a real broker, as subprocesses: what ``publish``
says about every partner of REL TO, ``--require-all``, what ``subscribe --out`` writes and with
which modes, a closed pipe, a key the broker does not know, ``partner add`` into a running
broker's folder, ``audit verify`` beside a running broker, and ``serve`` stopping with exit 0.

The world is the integration tests' (``tests/integration/conftest.py``): GBR shares everything
with USA (``gbr-usa``) and ransomware and APT work up to CONFIDENTIAL with EST and FIN, FIN
cleared to RESTRICTED (``baltic``); DEU shares nothing with GBR.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tearline.broker.reload import reload_now
from tearline.clients.keyfile import write_keypair
from tearline.clients.sync import Partner
from tests.integration.conftest import RunningBroker, me, write_policies
from tests.processes import BrokerProcess

MAIN = "import sys; sys.argv[0] = 'tearline'; from tearline.clients.cli import main; main()"
TEARLINE = [sys.executable, "-c", MAIN]
BUNDLE = '{"type":"bundle","id":"bundle--1b2c3d4e-0000-4000-8000-000000000001","objects":[]}'


def env_without_tearline(extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TEARLINE_")}
    base.pop("COLUMNS", None)
    return {**base, **(extra or {})}


def tearline(
    *args: str | Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TEARLINE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env_without_tearline(env),
        check=False,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


class Node:
    """The files one partner's node works with, and its commands against ``broker``."""

    def __init__(self, broker: RunningBroker, folder: Path) -> None:
        self.broker = broker
        self.folder = folder
        self.keys = folder / "keys"
        for pid in ("GBR", "USA", "EST", "FIN", "DEU"):
            if not (self.keys / f"{pid}.identity.json").exists():
                write_keypair(me(pid), self.keys)
        self.bundle = folder / "bundle.json"
        self.bundle.write_text(BUNDLE)

    def identity(self, pid: str) -> Path:
        return self.keys / f"{pid}.identity.json"

    def label(self, **fields: Any) -> Path:
        path = self.folder / "label.json"
        path.write_text(json.dumps({"tlp": "AMBER", **fields}))
        return path

    def publish(self, label: Path, *extra: str | Path, who: str = "GBR") -> Any:
        return tearline(
            "publish", self.bundle, "--label", label, "--identity", self.identity(who),
            "--broker", self.broker.url, *extra,
        )  # fmt: skip

    def subscribe(self, who: str, *extra: str | Path) -> Any:
        return tearline(
            "subscribe", "--once", "--wait", "1", "--identity", self.identity(who),
            "--broker", self.broker.url, *extra,
        )  # fmt: skip

    def inbox_ids(self, who: str) -> list[str]:
        with Partner(self.broker.url, me(who)) as node:
            return [d.id for d in node.inbox(wait_s=0, limit=100)]


@pytest.fixture
def node(broker: RunningBroker, tmp_path: Path) -> Node:
    return Node(broker, tmp_path)


# --- publish: the whole truth -----------------------------------------------------------------


def test_publish_names_every_partner_of_rel_to_left_out_and_why(node: Node) -> None:
    label = node.label(
        classification="CONFIDENTIAL", releasable_to=["USA", "BALTIC", "DEU"], topics=["apt"]
    )
    done = node.publish(label)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("report ")
    assert " accepted at " in lines[0]
    assert [line.split(" (entry")[0] for line in lines[1:3]] == [
        "  → EST under baltic",
        "  → USA under gbr-usa",
    ]
    assert lines[3:] == [
        "  not sent to DEU: NO_AGREEMENT (GBR and DEU share no agreement)",
        "  not sent to FIN: CLASSIFICATION_ABOVE_CLEARANCE (CONFIDENTIAL is above FIN's "
        "clearance under the agreement)",
    ]
    report_id = lines[0].split()[1]
    assert node.inbox_ids("FIN") == []
    assert node.inbox_ids("DEU") == []
    assert node.inbox_ids("USA") == [report_id]


def test_publish_json_carries_the_same_facts(node: Node) -> None:
    label = node.label(
        classification="CONFIDENTIAL", releasable_to=["USA", "BALTIC", "DEU"], topics=["apt"]
    )
    done = node.publish(label, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["partner"] for r in out["recipients"]] == ["EST", "USA"]
    assert out["not_sent"] == {"DEU": "NO_AGREEMENT", "FIN": "CLASSIFICATION_ABOVE_CLEARANCE"}
    assert out["originator"] == "GBR"  # the receipt's own fields, as before


def test_require_all_refuses_to_send_unless_every_rel_to_partner_is_entitled(node: Node) -> None:
    label = node.label(classification="RESTRICTED", releasable_to=["USA", "DEU"])
    done = node.publish(label, "--require-all")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "error: nothing sent: --require-all, and not every partner named in REL TO is entitled\n"
        "  not sent to DEU: NO_AGREEMENT (GBR and DEU share no agreement)\n"
    )
    assert node.inbox_ids("USA") == []  # nothing was posted
    as_json = node.publish(label, "--require-all", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "posted": False,
        "refused": "require_all",
        "not_sent": {"DEU": "NO_AGREEMENT"},
    }
    assert node.inbox_ids("USA") == []


def test_require_all_sends_when_every_rel_to_partner_is_entitled(node: Node) -> None:
    done = node.publish(node.label(classification="SECRET", releasable_to=["USA"]), "--require-all")
    assert done.returncode == 0, done.stderr
    assert "not sent" not in done.stdout
    assert len(node.inbox_ids("USA")) == 1


def test_publish_to_nobody_entitled_sends_nothing_and_says_why(node: Node) -> None:
    done = node.publish(node.label(classification="RESTRICTED", releasable_to=["DEU", "ATLANTIS"]))
    assert done.returncode == 1
    assert done.stderr == (
        "error: nothing sent: no partner named in REL TO is entitled to a report with this label\n"
        "  not sent to ATLANTIS: UNKNOWN_PARTNER (the broker knows no partner ATLANTIS)\n"
        "  not sent to DEU: NO_AGREEMENT (GBR and DEU share no agreement)\n"
    )


def test_publish_only_says_who_it_left_out(node: Node) -> None:
    label = node.label(classification="RESTRICTED", releasable_to=["USA", "EST"], topics=["apt"])
    done = node.publish(label, "--only", "USA")
    assert done.returncode == 0, done.stderr
    assert "  not sent to EST: EXCLUDED_BY_ONLY (left out by --only)" in done.stdout.splitlines()
    assert node.inbox_ids("EST") == []


def test_a_key_the_broker_does_not_hold_says_how_to_register_it(node: Node, tmp_path: Path) -> None:
    fresh = tearline("keygen", "--partner", "GBR", "--out", tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    label = node.label(classification="RESTRICTED", releasable_to=["USA"])
    fresh_gbr = tmp_path / "fresh/GBR.identity.json"
    done = tearline(
        "publish", node.bundle, "--label", label, "--identity", fresh_gbr,
        "--broker", node.broker.url,
    )  # fmt: skip
    assert done.returncode == 1
    assert "(signature_invalid)" in done.stderr
    assert "The broker does not hold this identity's public keys" in done.stderr
    assert "registers GBR.public.yaml with `tearline partner add` (--replace" in done.stderr


def test_partner_add_into_a_running_brokers_folder_lets_the_new_partner_in(
    node: Node, tmp_path: Path
) -> None:
    fresh = tearline("keygen", "--partner", "NOR", "--out", tmp_path / "nor")
    assert fresh.returncode == 0, fresh.stderr
    label = node.label(classification="RESTRICTED", releasable_to=["USA"])
    before = tearline(
        "publish", node.bundle, "--label", label, "--identity", tmp_path / "nor/NOR.identity.json",
        "--broker", node.broker.url,
    )  # fmt: skip
    assert "(unknown_key)" in before.stderr
    added = tearline(
        "partner", "add", tmp_path / "nor/NOR.public.yaml", "--policies", node.broker.policies
    )
    assert added.returncode == 0, added.stderr
    assert node.broker.run(reload_now(node.broker.state)), node.broker.state.policy_error
    after = tearline(
        "publish", node.bundle, "--label", label, "--identity", tmp_path / "nor/NOR.identity.json",
        "--broker", node.broker.url,
    )  # fmt: skip
    # Signed and heard: refused now only because NOR is in no agreement.
    assert after.returncode == 1
    assert "not sent to USA: NO_AGREEMENT (NOR and USA share no agreement)" in after.stderr


# --- subscribe --out ----------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_subscribe_out_writes_payload_and_label_file_for_this_user_only(
    node: Node, tmp_path: Path
) -> None:
    label = node.label(classification="SECRET", releasable_to=["USA"], topics=["apt"], tlp="RED")
    published = json.loads(node.publish(label, "--json").stdout)
    report_id = published["id"]
    text = node.publish(label, "--content-type", "text/plain", "--json")
    text_id = json.loads(text.stdout)["id"]
    out = tmp_path / "deep" / "inbox"
    done = node.subscribe("USA", "--out", out, "--json")
    assert done.returncode == 0, done.stderr
    assert mode(out) == 0o700
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{report_id}.json", f"{report_id}.label.json", f"{text_id}.bin", f"{text_id}.label.json"]
    )
    for path in out.iterdir():
        assert mode(path) == 0o600, path
    assert (out / f"{report_id}.json").read_text() == BUNDLE
    facts = json.loads((out / f"{report_id}.label.json").read_text())
    assert facts["report_id"] == report_id
    assert facts["originator"] == "GBR"
    assert facts["tlp"] == "RED"
    assert facts["classification"] == "SECRET"
    assert facts["content_type"] == "application/stix+json;version=2.1"
    assert facts["label"] == {
        "classification": "SECRET",
        "releasable_to": ["USA"],
        "topics": ["apt"],
        "tlp": "RED",
    }
    assert facts["payload"] == f"{report_id}.json"
    assert facts["bytes"] == len(BUNDLE)
    assert facts["received"] >= facts["created"]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["file"] for line in lines} == {
        str(out / f"{report_id}.json"),
        str(out / f"{text_id}.bin"),
    }
    # The originator recalls one: this node deletes both of its files.
    recalled = tearline(
        "recall", report_id, "--identity", node.identity("GBR"), "--broker", node.broker.url
    )
    assert recalled.returncode == 0, recalled.stderr
    again = node.subscribe("USA", "--out", out)
    assert again.returncode == 0, again.stderr
    assert f"recalled {report_id} by GBR: delete it" in again.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"{text_id}.bin", f"{text_id}.label.json"]


def test_subscribe_out_into_a_readable_folder_when_allowed(node: Node, tmp_path: Path) -> None:
    node.publish(node.label(classification="RESTRICTED", releasable_to=["USA"]))
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o755)
    done = node.subscribe("USA", "--out", out, "--allow-world-readable")
    assert done.returncode == 0, done.stderr
    assert mode(out) == 0o755  # left as the caller chose
    assert {mode(p) for p in out.iterdir()} == {0o600}
    assert len(list(out.iterdir())) == 2


def test_a_closed_output_stops_subscribe_with_one_line_and_no_ack(
    node: Node, tmp_path: Path
) -> None:
    label = node.label(classification="RESTRICTED", releasable_to=["USA"])
    first = json.loads(node.publish(label, "--json").stdout)["id"]
    reader = subprocess.Popen(
        [*TEARLINE, "subscribe", "--json", "--identity", str(node.identity("USA")),
         "--broker", node.broker.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_without_tearline(),
    )  # fmt: skip
    assert reader.stdout is not None
    line = reader.stdout.readline()
    assert json.loads(line)["id"] == first
    reader.stdout.close()  # like `| head -1`
    second = json.loads(node.publish(label, "--json").stdout)["id"]
    try:
        code = reader.wait(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.stderr is not None
    stderr = reader.stderr.read().decode()
    assert code == 1, stderr
    assert stderr.splitlines()[-1] == (
        "stopped: the output was closed (broken pipe); reports not yet shown were not "
        "acknowledged and will be delivered again"
    )
    assert "Traceback" not in stderr
    assert "None" not in stderr
    # The report that could not be shown comes back (after the visibility timeout, 1 s here).
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while time.monotonic() < deadline and second not in seen:
        seen = node.inbox_ids("USA")
        time.sleep(0.2)
    assert second in seen


# --- operators: audit verify beside a running broker, serve stopped ----------------------------


def test_audit_verify_beside_a_running_broker_says_which_redis_to_use(tmp_path: Path) -> None:
    policies, data = tmp_path / "policies", tmp_path / "data"
    write_policies(policies)
    with BrokerProcess(redis_url=None, policies=policies, data_dir=data):
        refused = tearline("audit", "verify", "--data-dir", data)
        assert refused.returncode == 1
        no_traceback(refused)
        assert refused.stderr.startswith(
            f"error: a running broker's embedded redis-server holds {data / 'redis'}"
        )
        url = refused.stderr.split("REDIS_URL=")[1].split()[0]
        assert url.startswith("redis://127.0.0.1:")
        # What it says to run works.
        done = tearline("audit", "verify", "--data-dir", data, env={"REDIS_URL": url})
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ok: ")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_exits_0_when_asked_to_stop(
    redis_server: Any, tmp_path: Path, signum: signal.Signals
) -> None:
    policies = tmp_path / "policies"
    write_policies(policies)
    broker = BrokerProcess(redis_url=redis_server.url, policies=policies, data_dir=tmp_path / "d")
    broker.start()
    try:
        assert broker.pid is not None
        os.kill(broker.pid, signum)
        assert broker.wait(timeout_s=30) == 0, broker.log()
    finally:
        broker.kill()
    assert "Traceback" not in broker.log()
