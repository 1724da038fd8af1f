"""STIX checked before sealing, against a real broker: refused payloads post nothing, the unsafe
bypass posts, a MISP event published with the CLI reaches USA as a STIX bundle stamped with its
label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tearline import Label, Report, StixError
from tearline.clients.keyfile import write_keypair
from tearline.clients.protocol.envelope import STIX_CONTENT_TYPE
from tearline.clients.stix import (
    RELEASABILITY_EXTENSION_ID,
    TEARLINE_IDENTITY_ID,
    TLP1_MARKING_IDS,
    TLP2_MARKING_IDS,
    check_bundle,
    tlp_of_object,
)
from tearline.clients.sync import Partner
from tests.integration.conftest import RunningBroker, me

TEARLINE = [sys.executable, "-c", "from tearline.clients.cli import main; main()"]
MISP_EVENT = Path(__file__).parents[1] / "vectors/misp/event-tlp-amber.json"
TO_USA = Label("SECRET", ["USA"], "AMBER", topics=["ransomware"])
INDICATOR = {
    "type": "indicator",
    "spec_version": "2.1",
    "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    "created": "2026-01-01T00:00:00.000Z",
    "modified": "2026-01-01T00:00:00.000Z",
    "name": "ransomware C2",
    "pattern": "[ipv4-addr:value = '198.51.100.1']",
    "pattern_type": "stix",
    "valid_from": "2026-01-01T00:00:00Z",
}


def bundle(*objects: dict[str, Any]) -> bytes:
    return json.dumps(
        {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": objects}
    ).encode()


def usa_inbox(broker: RunningBroker) -> list[Any]:
    with Partner(broker.url, me("USA")) as usa:
        return usa.inbox(wait_s=0.5, limit=100)


REFUSED = [
    pytest.param(b"198.51.100.1 is a C2 server\n", "invalid_stix", id="a-text-file"),
    pytest.param(b'{"type": "bundle", "objects": []}', "invalid_stix", id="bundle-without-id"),
    pytest.param(bundle({**INDICATOR, "created": "yesterday"}), "invalid_stix", id="bad-time"),
    pytest.param(
        bundle({**INDICATOR, "object_marking_refs": [TLP2_MARKING_IDS["RED"]]}),
        "stix_marking_conflict",
        id="red-object-in-an-amber-report",
    ),
]


@pytest.mark.parametrize(("payload", "code"), REFUSED)
def test_publish_refuses_what_fails_the_checks_and_posts_nothing(
    broker: RunningBroker, payload: bytes, code: str
) -> None:
    with Partner(broker.url, me("GBR")) as gbr:
        with pytest.raises(StixError) as info:
            gbr.publish(payload, TO_USA)
        assert info.value.code == code
    assert usa_inbox(broker) == []


def test_the_unsafe_bypass_posts_it_unchecked_and_other_content_types_are_not_checked(
    broker: RunningBroker,
) -> None:
    text = b"198.51.100.1 is a C2 server\n"
    with Partner(broker.url, me("GBR")) as gbr:
        bypassed = gbr.publish(text, TO_USA, unsafe_skip_stix_checks=True)
        plain = gbr.publish(text, TO_USA, content_type="text/plain")
    received = usa_inbox(broker)
    assert [(r.id, r.payload, r.content_type) for r in received] == [
        (bypassed.id, text, STIX_CONTENT_TYPE),
        (plain.id, text, "text/plain"),
    ]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEARLINE_")}
    return subprocess.run(
        [*TEARLINE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    for pid in ("GBR", "USA"):
        write_keypair(me(pid), tmp_path / "keys")
    amber = tmp_path / "amber.json"
    amber.write_text(json.dumps(TO_USA.to_dict()))
    green = tmp_path / "green.json"
    green.write_text(json.dumps({**TO_USA.to_dict(), "tlp": "GREEN"}))
    bad = tmp_path / "bad.json"
    bad.write_bytes(bundle({**INDICATOR, "created": "yesterday"}))
    return {
        "amber": amber,
        "green": green,
        "bad": bad,
        "gbr": tmp_path / "keys/GBR.identity.json",
        "usa": tmp_path / "keys/USA.identity.json",
    }


def publish(broker: RunningBroker, files: dict[str, Path], *args: str | Path) -> Any:
    return run("publish", *args, "--broker", broker.url, "--identity", files["gbr"])


def test_a_misp_event_published_with_the_cli_reaches_usa_as_stamped_stix(
    broker: RunningBroker, files: dict[str, Path], tmp_path: Path
) -> None:
    done = publish(broker, files, MISP_EVENT, "--from-misp", "--label", files["amber"], "--json")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert [r["partner"] for r in receipt["recipients"]] == ["USA"]

    with Partner(broker.url, me("USA")) as usa:
        (report,) = usa.inbox(wait_s=2)
        assert isinstance(report, Report)
        assert report.id == receipt["id"]
        assert report.content_type == STIX_CONTENT_TYPE
        sent = report.stix(stamped=False)
        stamped = report.stix()
    assert check_bundle(json.dumps(stamped), report.label) == stamped
    # Stamping adds the label's markings and takes away only a TLP marking-definition no
    # stricter than the label's TLP (here MISP's TLP 1.0 AMBER: the label's TLP 2.0 AMBER
    # stands in its place, docs/stix-releasability.md).
    superseded = {o["id"] for o in sent["objects"]} - {o["id"] for o in stamped["objects"]}
    assert superseded == {"marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"}
    assert TLP1_MARKING_IDS[next(iter(superseded))] == "AMBER"
    assert len(stamped["objects"]) > len(sent["objects"]) - len(superseded)
    markings = {o["id"]: o for o in stamped["objects"] if o["type"] == "marking-definition"}
    releasability = next(
        m for m in markings.values() if RELEASABILITY_EXTENSION_ID in m.get("extensions", {})
    )
    fields = releasability["extensions"][RELEASABILITY_EXTENSION_ID]
    assert fields["originator"] == "GBR"
    assert fields["report_id"] == receipt["id"]
    assert fields["classification"] == "SECRET"
    assert fields["releasable_to"] == ["USA"]
    assert fields["tlp"] == "AMBER"
    for obj in stamped["objects"]:
        if obj["type"] in ("marking-definition", "extension-definition"):
            continue
        if obj["id"] == TEARLINE_IDENTITY_ID:  # added by the stamp, shared by every report
            continue
        assert releasability["id"] in obj["object_marking_refs"], obj["id"]
        assert tlp_of_object(obj) == "AMBER", obj["id"]


def test_subscribe_can_write_the_stamped_bundle(
    broker: RunningBroker, files: dict[str, Path], tmp_path: Path
) -> None:
    done = publish(broker, files, MISP_EVENT, "--from-misp", "--label", files["amber"], "--json")
    assert done.returncode == 0, done.stderr
    report_id = json.loads(done.stdout)["id"]
    out = tmp_path / "inbox"
    received = run(
        "subscribe", "--once", "--wait", "2", "--out", out, "--stamp-markings",
        "--broker", broker.url, "--identity", files["usa"],
    )  # fmt: skip
    assert received.returncode == 0, received.stderr
    written = json.loads((out / f"{report_id}.json").read_text())
    assert RELEASABILITY_EXTENSION_ID in {o["id"] for o in written["objects"]}


CLI_REFUSALS = [
    pytest.param(
        ("--from-misp", "--label", "green"),
        ["stix_marking_conflict", "tlp:amber"],
        id="misp-event-tagged-above-the-label",
    ),
    pytest.param(
        ("--label", "amber"),
        [
            "not a valid STIX 2.1 bundle: 3 findings (invalid_stix)\n  indicator--",
            "timestamp",
            "--unsafe-skip-stix-checks",
        ],
        id="invalid-stix-file",
    ),
]


@pytest.mark.parametrize(("args", "said"), CLI_REFUSALS)
def test_the_cli_refuses_with_the_findings_and_posts_nothing(
    broker: RunningBroker, files: dict[str, Path], args: tuple[str, ...], said: list[str]
) -> None:
    payload = MISP_EVENT if "--from-misp" in args else files["bad"]
    given: list[str | Path] = [files.get(a, a) for a in args]
    done = publish(broker, files, payload, *given)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith(f"error: nothing sent: {payload}: ")
    for words in said:
        assert words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert usa_inbox(broker) == []


def test_the_cli_bypass_posts_the_file_unchecked(
    broker: RunningBroker, files: dict[str, Path]
) -> None:
    refused = publish(broker, files, files["bad"], "--label", files["amber"], "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout.splitlines()[0])["refused"] == "invalid_stix"
    done = publish(
        broker, files, files["bad"], "--label", files["amber"], "--unsafe-skip-stix-checks"
    )
    assert done.returncode == 0, done.stderr
    assert [r.payload for r in usa_inbox(broker)] == [files["bad"].read_bytes()]
