"""The ``tearline`` CLI (§4, §8): ``keygen``, ``policy check`` and ``policy explain``.

Commands run through typer's CliRunner on the real app, with the operator commands plugged in
from the ``tearline.commands`` entry point exactly as ``clients.cli.main`` does; one test runs
the installed ``tearline`` script itself.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner, Result

from tearline.broker.policy.fingerprint import fingerprint
from tearline.broker.policy.folder import read_policy_folder
from tearline.broker.policy.load import load_policies
from tearline.clients import cli as client_cli
from tearline.clients.keyfile import Identity
from tearline.clients.policy.engine import Reason
from tearline.clients.protocol.encoding import b64e, format_time, parse_time
from tearline.clients.protocol.identity import Partner
from tearline.clients.protocol.label import Label

POLICIES = Path(__file__).resolve().parents[2] / "policies"
# The shipped demo keys are valid for two years from when the registry was made; agreements
# run from 2026 to 2028-2031. AT lies inside both; LATER after nordic-baltic-cyber ended.
AT = "2027-06-01T00:00:00Z"
LATER = "2028-06-01T00:00:00Z"


def _app() -> typer.Typer:
    """The ``tearline`` app with the operator commands registered, as ``main()`` does it."""
    app = client_cli.app
    if not any(group.name == "policy" for group in app.registered_groups):
        for entry in entry_points(group="tearline.commands"):
            entry.load()(app)
    return app


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(_app(), [str(a) for a in args])


def write_label(tmp_path: Path, **fields: Any) -> Path:
    path = tmp_path / "label.json"
    path.write_text(json.dumps(fields), encoding="utf-8")
    return path


def explain(label: Path, *extra: str, originator: str = "GBR") -> dict[str, dict[str, str]]:
    """``policy explain --json``: the machine-readable decisions (a table without --json)."""
    result = run(
        "policy", "explain", "--policies", POLICIES, "--from", originator, "--label", label,
        "--json", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.stdout)  # the whole of stdout is one JSON value
    assert isinstance(parsed, dict)
    return parsed


# --- keygen -----------------------------------------------------------------------------------


def test_keygen_writes_a_private_identity_file_with_mode_0600(tmp_path: Path) -> None:
    result = run("keygen", "--partner", "NOR", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    private = tmp_path / "NOR.identity.json"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    identity = Identity.load(private)  # refuses files other users can read
    assert identity.partner == "NOR"
    assert {k.record.alg for k in identity.keys} == {"Ed25519", "X25519"}


def test_keygen_writes_a_public_entry_that_loads_as_a_partner(tmp_path: Path) -> None:
    result = run("keygen", "--partner", "NOR", "--out", tmp_path, "--name", "Norway")
    assert result.exit_code == 0, result.output
    entry = yaml.safe_load((tmp_path / "NOR.public.yaml").read_text(encoding="utf-8"))
    partner = Partner.from_dict(entry)
    assert (partner.id, partner.name, partner.status) == ("NOR", "Norway", "active")
    identity = Identity.load(tmp_path / "NOR.identity.json")
    assert {k.kid: k.public for k in partner.keys} == {
        k.record.kid: k.record.public for k in identity.keys
    }
    public_text = (tmp_path / "NOR.public.yaml").read_text(encoding="utf-8")
    assert all("private" not in key for key in entry["keys"])
    assert all(b64e(k.private) not in public_text for k in identity.keys)


def test_keygen_never_prints_a_private_key(tmp_path: Path) -> None:
    result = run("keygen", "--partner", "NOR", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    identity = json.loads((tmp_path / "NOR.identity.json").read_text(encoding="utf-8"))
    for key in identity["keys"]:
        assert key["private"] not in result.output


def test_keygen_keys_are_valid_from_now_for_valid_days(tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = run("keygen", "--partner", "NOR", "--out", tmp_path, "--valid-days", "10")
    after = datetime.now(UTC)
    assert result.exit_code == 0, result.output
    partner = Partner.from_dict(yaml.safe_load((tmp_path / "NOR.public.yaml").read_text()))
    for key in partner.keys:
        assert before <= key.not_before <= after
        assert key.not_after - key.not_before == timedelta(days=10)
        assert not key.revoked


def test_keygen_refuses_to_overwrite_an_identity(tmp_path: Path) -> None:
    assert run("keygen", "--partner", "NOR", "--out", tmp_path).exit_code == 0
    private = tmp_path / "NOR.identity.json"
    original = private.read_bytes()
    result = run("keygen", "--partner", "NOR", "--out", tmp_path)
    assert result.exit_code != 0
    assert "already exists" in result.stderr
    assert str(private) in result.stderr
    assert private.read_bytes() == original


def test_pq_hybrid_keygen_yields_classic_and_post_quantum_keys(tmp_path: Path) -> None:
    result = run("keygen", "--partner", "NOR", "--out", tmp_path, "--suite", "pq-hybrid")
    assert result.exit_code == 0, result.output
    partner = Partner.from_dict(yaml.safe_load((tmp_path / "NOR.public.yaml").read_text()))
    assert {(k.alg, k.use) for k in partner.keys} == {
        ("Ed25519", "sig"),
        ("ML-DSA-65", "sig"),
        ("X25519", "enc"),
        ("ML-KEM-768+X25519", "enc"),
    }
    identity = Identity.load(tmp_path / "NOR.identity.json")
    assert {k.record.alg for k in identity.keys} == {k.alg for k in partner.keys}
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert partner.enc_key("pq-hybrid", now) is not None
    assert partner.enc_key("classic", now) is not None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(("--partner", "nor"), "partner id", id="lowercase_partner_id"),
        pytest.param(("--partner", "N"), "partner id", id="one_letter_partner_id"),
        pytest.param(("--partner", "NOR", "--suite", "rsa"), "suite", id="unknown_suite"),
    ],
)
def test_keygen_refuses_bad_arguments_on_stderr(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    result = run("keygen", "--out", tmp_path, *args)
    assert result.exit_code != 0
    assert says in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_keygen_entry_added_to_the_registry_passes_policy_check(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    assert run("keygen", "--partner", "NOR", "--out", tmp_path / "keys").exit_code == 0
    entry = yaml.safe_load((tmp_path / "keys/NOR.public.yaml").read_text())
    registry = yaml.safe_load((folder / "partners.yaml").read_text())
    registry["partners"].append(entry)
    (folder / "partners.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    result = run("policy", "check", "--policies", folder)
    assert result.exit_code == 0, result.output
    assert "NOR" in load_policies(folder).registry


# --- policy check -------------------------------------------------------------------------------


def test_policy_check_accepts_the_shipped_policies() -> None:
    result = run("policy", "check", "--policies", POLICIES)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok:")
    assert result.stderr == ""
    # The digest a running broker shows for the policy in force (GET /v1/status).
    digest = fingerprint(read_policy_folder(POLICIES)).digest
    assert result.stdout.rstrip().endswith(f"operators; fingerprint {digest}")


def test_policy_check_refuses_a_file_the_broker_would_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    (folder / "agreements/fvey-cyber.yaml").rename(folder / "agreements/fvey-cyber.yml")
    result = run("policy", "check", "--policies", folder)
    assert result.exit_code == 1
    assert "agreements/fvey-cyber.yml: not read by the broker" in result.stderr
    assert "rename it agreements/fvey-cyber.yaml" in result.stderr
    assert "the policy folder holds only scheme.yaml, partners.yaml" in result.stderr
    assert result.stdout == ""


def test_policy_check_names_file_line_and_field_of_a_broken_copy(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    path = folder / "agreements/fvey-cyber.yaml"
    lines = path.read_text().splitlines(keepends=True)
    (index,) = [i for i, line in enumerate(lines) if line.startswith("ceiling:")]
    lines[index] = "ceiling: COSMIC\n"
    path.write_text("".join(lines))
    result = run("policy", "check", "--policies", folder)
    assert result.exit_code != 0
    assert f"agreements/fvey-cyber.yaml:{index + 1}" in result.stderr
    assert "field ceiling" in result.stderr
    assert "COSMIC" in result.stderr
    assert result.stdout == ""


def test_policy_check_on_a_missing_folder_fails(tmp_path: Path) -> None:
    result = run("policy", "check", "--policies", tmp_path / "nowhere")
    assert result.exit_code != 0
    assert "does not exist" in result.stderr


MAIN = "import sys; sys.argv[0] = 'tearline'; from tearline.clients.cli import main; main()"


def test_installed_tearline_script_runs_the_operator_commands() -> None:
    script = Path(sys.executable).with_name("tearline")
    # The console script when the package is installed in this environment, else main() itself.
    command = [str(script)] if script.exists() else [sys.executable, "-c", MAIN]
    done = subprocess.run(
        [*command, "policy", "check", "--policies", str(POLICIES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok:")


# --- policy explain -----------------------------------------------------------------------------


def test_explain_prints_one_decision_per_registry_partner(tmp_path: Path) -> None:
    label = write_label(
        tmp_path,
        classification="RESTRICTED",
        releasable_to=["FVEY", "EST"],
        tlp="AMBER",
        topics=["apt"],
    )
    out = explain(label, "--at", AT)
    assert sorted(out) == load_policies(POLICIES).registry.ids
    for verdict in out.values():
        if verdict["decision"] == "grant":
            assert set(verdict) == {"decision", "agreement"}
        else:
            assert verdict["decision"] == "deny"
            assert set(verdict) == {"decision", "reason"}
            assert verdict["reason"] in {r.value for r in Reason}
    assert out["GBR"] == {"decision": "deny", "reason": "ORIGINATOR"}
    assert out["USA"] == {"decision": "grant", "agreement": "fvey-cyber"}
    assert out["EST"] == {"decision": "grant", "agreement": "gbr-est-maritime"}
    assert out["FIN"] == {"decision": "deny", "reason": "NOT_RELEASABLE_TO"}


def test_explain_matches_the_engine(tmp_path: Path) -> None:
    fields = {
        "classification": "CONFIDENTIAL",
        "releasable_to": ["FVEY", "EU-CERTS"],
        "tlp": "GREEN",
        "caveats": ["CYBER-OPS"],
        "topics": ["ransomware"],
    }
    out = explain(write_label(tmp_path, **fields), "--at", AT, originator="EST")
    policy = load_policies(POLICIES)
    decisions = policy.decide(Label.from_dict(fields), "EST", "classic", parse_time(AT))
    assert out == policy.explain(decisions)


@pytest.mark.parametrize(
    ("suite", "expected"),
    [
        pytest.param(
            "classic",
            {
                "USA": {"decision": "deny", "reason": "SUITE_TOO_WEAK"},
                "CAN": {"decision": "deny", "reason": "SUITE_TOO_WEAK"},
                "AUS": {"decision": "deny", "reason": "CLASSIFICATION_ABOVE_CLEARANCE"},
            },
            id="classic_is_too_weak_for_secret_under_fvey",
        ),
        pytest.param(
            "pq-hybrid",
            {
                "USA": {"decision": "grant", "agreement": "fvey-cyber"},
                "CAN": {"decision": "deny", "reason": "NO_ENCRYPTION_KEY"},
                "AUS": {"decision": "deny", "reason": "NO_ENCRYPTION_KEY"},
            },
            id="pq_hybrid_reaches_partners_with_pq_keys_only",
        ),
    ],
)
def test_explain_honours_suite(
    tmp_path: Path, suite: str, expected: dict[str, dict[str, str]]
) -> None:
    label = write_label(tmp_path, classification="SECRET", releasable_to=["FVEY"], tlp="AMBER")
    out = explain(label, "--at", AT, "--suite", suite)
    assert {pid: out[pid] for pid in expected} == expected


def test_explain_suite_defaults_to_classic(tmp_path: Path) -> None:
    label = write_label(tmp_path, classification="SECRET", releasable_to=["FVEY"], tlp="AMBER")
    assert explain(label, "--at", AT) == explain(label, "--at", AT, "--suite", "classic")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(AT, {"decision": "grant", "agreement": "nordic-baltic-cyber"}, id="in_force"),
        pytest.param(
            LATER,
            {"decision": "deny", "reason": "CLASSIFICATION_ABOVE_CEILING"},
            id="after_it_ended_the_other_agreement_got_furthest",
        ),
        pytest.param(
            "2030-01-01T00:00:00+02:00",
            {"decision": "deny", "reason": "NO_ENCRYPTION_KEY"},
            id="after_the_keys_expired_with_an_offset",
        ),
    ],
)
def test_explain_honours_at(tmp_path: Path, at: str, expected: dict[str, str]) -> None:
    label = write_label(
        tmp_path,
        classification="CONFIDENTIAL",
        releasable_to=["FIN"],
        tlp="AMBER",
        topics=["apt"],
    )
    out = explain(label, "--at", at, "--suite", "pq-hybrid", originator="EST")
    assert out["FIN"] == expected


def test_explain_time_defaults_to_now(tmp_path: Path) -> None:
    label = write_label(
        tmp_path, classification="RESTRICTED", releasable_to=["FVEY", "EST"], tlp="AMBER"
    )
    now = format_time(datetime.now(UTC).replace(microsecond=0))
    assert explain(label) == explain(label, "--at", now)


def test_explain_honours_label_expiry(tmp_path: Path) -> None:
    label = write_label(
        tmp_path,
        classification="RESTRICTED",
        releasable_to=["USA"],
        tlp="AMBER",
        expires=AT,
    )
    assert explain(label, "--at", AT)["USA"] == {"decision": "deny", "reason": "EXPIRED"}


def _explain_fails(*args: str | Path) -> Result:
    result = run("policy", "explain", "--policies", POLICIES, *args)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param("{not json", "not valid JSON", id="not_json"),
        pytest.param(
            '{"classification": "SECRET", "classification": "UNCLASSIFIED", '
            '"releasable_to": ["USA"], "tlp": "AMBER"}',
            "duplicate key",
            id="duplicate_key",
        ),
        pytest.param('["USA"]', "JSON object", id="not_an_object"),
        pytest.param(
            '{"classification": "SECRET", "releasable_to": ["USA"], "tlp": "AMBER", "x": 1}',
            "unknown field",
            id="unknown_field",
        ),
        pytest.param(
            '{"classification": "SECRET", "tlp": "AMBER"}', "releasable_to", id="missing_rel_to"
        ),
        pytest.param(
            '{"classification": "COSMIC", "releasable_to": ["USA"], "tlp": "AMBER"}',
            "COSMIC",
            id="level_outside_the_scheme",
        ),
        pytest.param(
            '{"classification": "SECRET", "releasable_to": ["FVEY"], "tlp": "RED"}',
            "TLP RED",
            id="tlp_red_with_a_group",
        ),
    ],
)
def test_explain_refuses_a_malformed_label_on_stderr(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "label.json"
    path.write_text(content, encoding="utf-8")
    result = _explain_fails("--from", "GBR", "--label", path, "--at", AT)
    assert says in result.stderr


def test_explain_refuses_a_missing_label_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    result = _explain_fails("--from", "GBR", "--label", path, "--at", AT)
    assert str(path) in result.stderr


def test_explain_refuses_an_unknown_originator(tmp_path: Path) -> None:
    label = write_label(tmp_path, classification="SECRET", releasable_to=["USA"], tlp="AMBER")
    result = _explain_fails("--from", "ATLANTIS", "--label", label, "--at", AT)
    assert "--from ATLANTIS" in result.stderr
    assert "not a partner" in result.stderr


@pytest.mark.parametrize(
    "at",
    [
        pytest.param("yesterday", id="words"),
        pytest.param("2027-06-01T00:00:00", id="no_time_zone"),
        pytest.param("2027-06-01", id="date_only"),
        pytest.param("2027-13-01T00:00:00Z", id="month_13"),
    ],
)
def test_explain_refuses_a_bad_at(tmp_path: Path, at: str) -> None:
    label = write_label(tmp_path, classification="SECRET", releasable_to=["USA"], tlp="AMBER")
    result = _explain_fails("--from", "GBR", "--label", label, "--at", at)
    assert "--at" in result.stderr
    assert at in result.stderr


def test_explain_refuses_an_unknown_suite(tmp_path: Path) -> None:
    label = write_label(tmp_path, classification="SECRET", releasable_to=["USA"], tlp="AMBER")
    result = _explain_fails("--from", "GBR", "--label", label, "--at", AT, "--suite", "rsa")
    assert "suite" in result.stderr


def test_explain_on_a_broken_policy_folder_names_the_problem(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    (folder / "scheme.yaml").unlink()
    label = write_label(tmp_path, classification="SECRET", releasable_to=["USA"], tlp="AMBER")
    result = run("policy", "explain", "--policies", folder, "--from", "GBR", "--label", label)
    assert result.exit_code != 0
    assert "scheme.yaml" in result.stderr
    assert result.stdout == ""
