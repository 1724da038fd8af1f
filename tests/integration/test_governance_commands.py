"""``tearline log head|compare``, ``keys monitor`` and ``registry|agreement publish`` against a
real governed broker: what the people who run nodes and who govern see."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tearline.broker.reload import reload_now
from tearline.clients import cli
from tearline.clients.keyfile import write_keypair
from tests.integration.conftest import RunningBroker, me, running_broker
from tests.integration.governed import (
    agreement_doc,
    partner_entries,
    put,
    registry_doc,
    status_doc,
    write_governed,
)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.app, [str(a) for a in args])


@pytest.fixture
def governed(redis_server: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    write_governed(tmp_path / "policies")
    with running_broker(redis_server.url, tmp_path) as broker:
        yield broker


def identity_file(tmp_path: Path, partner: str) -> Path:
    private, _ = write_keypair(me(partner), tmp_path / "keys")
    return private


def reload(broker: RunningBroker) -> None:
    assert broker.run(reload_now(broker.state)), broker.state.policy_error


def test_log_head_prints_a_signed_head_and_remembers_it(
    governed: RunningBroker, tmp_path: Path
) -> None:
    usa = identity_file(tmp_path, "USA")
    memory = tmp_path / "usa-memory.json"
    result = run("log", "head", "--broker", governed.url, "--identity", usa, "--memory", memory)
    assert result.exit_code == 0, result.output
    head = json.loads(result.stdout)
    assert head["signed"]["tree_size"] == 4  # root, registry, two agreements
    assert json.loads(memory.read_text())["head"] == head


def test_log_compare_says_two_heads_of_one_log_are_consistent(
    governed: RunningBroker, tmp_path: Path
) -> None:
    usa = identity_file(tmp_path, "USA")
    before = tmp_path / "before.json"
    after = tmp_path / "after.json"
    out = run("log", "head", "--broker", governed.url, "--identity", usa)
    before.write_text(out.stdout)
    put(governed.policies, "registry.json", registry_doc(2))
    reload(governed)
    after.write_text(run("log", "head", "--broker", governed.url, "--identity", usa).stdout)
    result = run("log", "compare", before, after, "--broker", governed.url, "--identity", usa)
    assert result.exit_code == 0, result.output
    assert "consistent: 4 and 5 entries" in result.stdout


def test_log_compare_detects_a_split_view(governed: RunningBroker, tmp_path: Path) -> None:
    usa = identity_file(tmp_path, "USA")
    mine = tmp_path / "mine.json"
    theirs = tmp_path / "theirs.json"
    mine.write_text(run("log", "head", "--broker", governed.url, "--identity", usa).stdout)
    # The operator rewrites history: the log wiped and refilled with another registry 1.
    governed.redis().delete("tl:log", "tl:log:index")
    governed.state.log.clear()
    other = partner_entries()
    other[0] = {**other[0], "name": "Renamed by the operator's second log"}
    put(governed.policies, "registry.json", registry_doc(1, partners=other))
    reload(governed)
    theirs.write_text(run("log", "head", "--broker", governed.url, "--identity", usa).stdout)
    result = run("log", "compare", mine, theirs, "--broker", governed.url, "--identity", usa)
    assert result.exit_code == 1
    assert "split view" in result.output
    assert "two different logs" in result.output


def test_keys_monitor_flags_a_key_its_owner_never_made(
    governed: RunningBroker, tmp_path: Path
) -> None:
    usa = identity_file(tmp_path, "USA")
    clean = run("keys", "monitor", "--broker", governed.url, "--identity", usa)
    assert clean.exit_code == 0, clean.output
    assert "NOT IN YOUR IDENTITY FILE" not in clean.stdout
    # Three governance key holders were persuaded to sign a registry with an extra USA key.
    entries = partner_entries()
    stranger = dict(me("DEU").public_entry()["keys"][1], kid="USA-enc-stranger")
    for entry in entries:
        if entry["id"] == "USA":
            entry["keys"] = [*entry["keys"], stranger]
    put(governed.policies, "registry.json", registry_doc(2, partners=entries))
    reload(governed)
    flagged = run("keys", "monitor", "--broker", governed.url, "--identity", usa)
    assert flagged.exit_code == 1
    assert "USA-enc-stranger" in flagged.output
    assert "NOT IN YOUR IDENTITY FILE" in flagged.stdout
    watched = run("keys", "monitor", "--partner", "USA", "--json", "--broker", governed.url,
                  "--identity", identity_file(tmp_path, "GBR"))  # fmt: skip
    assert watched.exit_code == 0, watched.output
    kids = {k["kid"]: k["registry_versions"] for k in json.loads(watched.stdout)["keys"]}
    assert kids["USA-enc-stranger"] == [2]
    assert kids["USA-enc-1"] == [1, 2]


PUBLISH_REFUSALS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "registry signed by one holder": (
        "registry",
        lambda: registry_doc(2, "GBR"),
        "1 of 3 required signatures",
    ),
    "registry rolled back": ("registry", lambda: registry_doc(1, "GBR", "USA", "EST", "FIN"), ""),
    "agreement signed by one party": (
        "agreement",
        lambda: agreement_doc("gbr-usa", "GBR"),
        "missing: a key held by USA",
    ),
    "status signed by a stranger": (
        "agreement",
        lambda: status_doc("gbr-usa", "suspended", "DEU"),
        "not a party",
    ),
}


@pytest.mark.parametrize("case", list(PUBLISH_REFUSALS), ids=list(PUBLISH_REFUSALS))
def test_publish_refuses_a_document_the_broker_would_refuse_and_writes_nothing(
    case: str, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    write_governed(policies, **{"registry.json": registry_doc(2)})
    before = {p.name: p.read_bytes() for p in (policies / "governance").iterdir()}
    group, make, message = PUBLISH_REFUSALS[case]
    document = tmp_path / "doc.json"
    document.write_bytes(make())
    result = run(group, "publish", document, "--policies", policies)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert {p.name: p.read_bytes() for p in (policies / "governance").iterdir()} == before


def test_publish_puts_a_signed_registry_in_force(governed: RunningBroker, tmp_path: Path) -> None:
    document = tmp_path / "registry-2.json"
    document.write_bytes(registry_doc(2))
    result = run("registry", "publish", document, "--policies", governed.policies)
    assert result.exit_code == 0, result.output
    reload(governed)
    assert governed.state.policy.governance is not None
    assert governed.state.policy.governance.registry.version == 2
    status = tmp_path / "suspend.json"
    status.write_bytes(status_doc("gbr-usa", "suspended", "USA"))
    result = run("agreement", "publish", status, "--policies", governed.policies)
    assert result.exit_code == 0, result.output
    reload(governed)
    assert governed.state.policy.agreements["gbr-usa"].suspended


def test_publish_with_a_pinned_root_checks_the_broker_first(
    governed: RunningBroker, tmp_path: Path
) -> None:
    gbr = identity_file(tmp_path, "GBR")
    root = tmp_path / "root-1.json"
    root.write_bytes((governed.policies / "governance" / "root-1.json").read_bytes())
    label = tmp_path / "label.json"
    label.write_text(json.dumps({"classification": "SECRET", "releasable_to": ["USA"],
                                 "tlp": "AMBER", "topics": ["apt"]}))  # fmt: skip
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(BUNDLE))
    common = ("--broker", governed.url, "--identity", gbr, "--label", label)
    wrong = run("publish", bundle, *common, "--root", "sha256:" + "0" * 64)
    assert wrong.exit_code == 1
    assert "serves no root whose SHA-256" in wrong.output
    assert list(governed.redis().scan_iter("tl:report:*")) == []
    memory = tmp_path / "memory.json"
    sent = run("publish", bundle, *common, "--root", root, "--memory", memory)
    assert sent.exit_code == 0, sent.output
    assert "USA" in sent.stdout
    assert json.loads(memory.read_text())["registry_version"] == 1


BUNDLE = {"type": "bundle", "id": "bundle--6ba7b810-9dad-41d1-80b4-00c04fd430c8", "objects": []}
