"""The ``tearline`` commands a person runs, as subprocesses against a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tearline.clients.keyfile import write_keypair
from tests.integration.conftest import RunningBroker, me

TEARLINE = [sys.executable, "-c", "from tearline.clients.cli import main; main()"]


def run(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TEARLINE, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_demo_shows_who_received_the_report_and_who_was_refused_why() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [*TEARLINE, "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    report_id = outcome["receipt"]["id"]
    assert outcome["received"] == {"DEU": [], "EST": [report_id], "FIN": [], "USA": [report_id]}
    assert outcome["preview"] == {
        "DEU": "NO_AGREEMENT",
        "EST": "baltic-ransomware",
        "FIN": "CLASSIFICATION_ABOVE_CLEARANCE",
        "GBR": "ORIGINATOR",
        "USA": "gbr-usa",
    }
    assert outcome["refused"] == {
        "code": "recipient_not_entitled",
        "details": {"denied": {"DEU": "NO_AGREEMENT"}},
    }


def test_publish_then_subscribe_once_delivers_the_payload_to_the_recipient(
    broker: RunningBroker, tmp_path: Path
) -> None:
    for pid in ("GBR", "USA"):
        write_keypair(me(pid), tmp_path / "keys")
    label = tmp_path / "label.json"
    label.write_text(
        json.dumps({"classification": "SECRET", "releasable_to": ["USA"], "tlp": "RED"})
    )
    payload = tmp_path / "bundle.json"
    payload.write_text(
        '{"type":"bundle","id":"bundle--1b2c3d4e-0000-4000-8000-000000000001","objects":[]}'
    )

    published = run(
        "publish",
        str(payload),
        "--label",
        str(label),
        "--broker",
        broker.url,
        "--identity",
        str(tmp_path / "keys/GBR.identity.json"),
        "--json",
    )
    assert published.returncode == 0, published.stderr
    receipt = json.loads(published.stdout)
    assert [r["partner"] for r in receipt["recipients"]] == ["USA"]

    out = tmp_path / "inbox"
    received = run(
        "subscribe",
        "--once",
        "--wait",
        "2",
        "--out",
        str(out),
        "--broker",
        broker.url,
        "--identity",
        str(tmp_path / "keys/USA.identity.json"),
        "--json",
    )
    assert received.returncode == 0, received.stderr
    lines = [json.loads(line) for line in received.stdout.splitlines()]
    assert [(r["id"], r["originator"]) for r in lines] == [(receipt["id"], "GBR")]
    # The payload as <id>.json (STIX is JSON) beside its label file, both for this user only.
    assert (out / f"{receipt['id']}.json").read_bytes() == payload.read_bytes()
    assert json.loads((out / f"{receipt['id']}.label.json").read_text())["tlp"] == "RED"


def test_publish_with_a_malformed_label_file_fails_with_a_clear_message(
    broker: RunningBroker, tmp_path: Path
) -> None:
    write_keypair(me("GBR"), tmp_path / "keys")
    label = tmp_path / "label.json"
    label.write_text('{"classification": "SECRET", "releasable_to": []}')
    payload = tmp_path / "bundle.json"
    payload.write_text("{}")
    result = run(
        "publish",
        str(payload),
        "--label",
        str(label),
        "--broker",
        broker.url,
        "--identity",
        str(tmp_path / "keys/GBR.identity.json"),
    )
    assert result.returncode != 0
    assert "label is missing required field(s): tlp" in result.stderr
