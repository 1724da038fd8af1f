"""The offline governance tools: ``tearline governance``, ``registry`` and ``agreement``.

Run through typer's CliRunner on the real ``tearline`` app, with real Ed25519 governance keys and
real partner identities, on files only, as on an air-gapped machine. What a command writes is
checked again with the pure core (:class:`TrustedState`), not only by the command's own words.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from tearline.clients import cli
from tearline.clients.governance.trust import TrustedState
from tearline.clients.protocol.identity import Identity

POLICIES = Path(__file__).resolve().parents[2] / "policies"
EXPIRES = "2030-01-01T00:00:00Z"
HOLDERS = ("GBR", "USA", "CAN")

AGREEMENT_YAML = """\
# as an operator writes it: timestamps unquoted
id: gbr-can-cyber
title: UK-Canada cyber exchange
valid_from: 2026-01-01T00:00:00Z
valid_until: 2029-01-01T00:00:00Z
ceiling: SECRET
topics: [apt, ransomware]
parties:
  GBR: {}
  CAN: {clearance: SECRET, caveats: [CYBER-OPS]}
"""


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli.app, [str(a) for a in args])


def ok(*args: str | Path) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(*args: str | Path, exit_code: int = 1) -> str:
    """The one line on stderr of a command that must fail cleanly."""
    result = run(*args)
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit, not an escaped exception
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def key(folder: Path, holder: str) -> Path:
    return folder / f"{holder.lower()}.governance.json"


def public(folder: Path, holder: str) -> Path:
    return folder / f"{holder.lower()}.governance.pub.json"


@pytest.fixture
def signed_root(tmp_path: Path) -> Path:
    """A 2-of-3 root held by GBR, USA and CAN, made and signed with the commands alone."""
    for holder in HOLDERS:
        ok("governance", "keygen", "--holder", holder, "--out", key(tmp_path, holder))
    root = tmp_path / "root.json"
    pubs = [arg for h in HOLDERS for arg in ("--key", public(tmp_path, h))]
    new = ("governance", "root", "new", "--threshold", "2", "--version", "1")
    ok(*new, *pubs, "--expires", EXPIRES, "--out", root)
    for holder in HOLDERS:
        said = ok("governance", "root", "sign", root, "--key", key(tmp_path, holder))
    assert "signed by GBR, USA, CAN (3 signed, 2 required)" in said
    return root


def partners_yaml(tmp_path: Path) -> Path:
    now = datetime.now(UTC).replace(microsecond=0)
    entries = [Identity.generate(p, "classic", now).public_entry() for p in HOLDERS]
    path = tmp_path / "partners.yaml"
    path.write_text(yaml.safe_dump({"partners": entries}, sort_keys=False), encoding="utf-8")
    return path


def propose(partners: Path, version: int, out: Path) -> tuple[str | Path, ...]:
    """``registry propose`` of ``partners`` with the shipped scheme."""
    scheme = POLICIES / "scheme.yaml"
    return ("registry", "propose", "--partners", partners, "--scheme", scheme,
            "--version", str(version), "--expires", EXPIRES, "--out", out)  # fmt: skip


def propose_registry(tmp_path: Path, version: int) -> Path:
    out = tmp_path / f"registry-{version}.json"
    ok(*propose(partners_yaml(tmp_path), version, out))
    return out


def propose_agreement(tmp_path: Path) -> Path:
    source = tmp_path / "gbr-can-cyber.yaml"
    source.write_text(AGREEMENT_YAML, encoding="utf-8")
    out = tmp_path / "gbr-can-cyber.agreement.json"
    said = ok("agreement", "propose", source, "--out", out)
    assert "each of CAN, GBR signs it" in said
    return out


# --- keys ---------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_file_with_mode_0600_and_a_public_one_beside_it(
    tmp_path: Path,
) -> None:
    said = ok("governance", "keygen", "--holder", "GBR", "--out", key(tmp_path, "GBR"))
    private = json.loads(key(tmp_path, "GBR").read_text())
    assert stat.S_IMODE(key(tmp_path, "GBR").stat().st_mode) == 0o600
    assert set(private) == {"holder", "public", "private"}
    assert private["holder"] == "GBR"
    assert json.loads(public(tmp_path, "GBR").read_text()) == {
        "holder": "GBR",
        "public": private["public"],
    }
    assert f"public key {private['public']}" in said
    assert "keyid " in said


def test_keygen_never_overwrites_a_key_file(tmp_path: Path) -> None:
    ok("governance", "keygen", "--holder", "GBR", "--out", key(tmp_path, "GBR"))
    before = key(tmp_path, "GBR").read_bytes(), public(tmp_path, "GBR").read_bytes()
    line = refused(
        "governance", "keygen", "--holder", "GBR", "--out", key(tmp_path, "GBR"), exit_code=2
    )
    assert "already exists; refusing to overwrite a key" in line
    assert (key(tmp_path, "GBR").read_bytes(), public(tmp_path, "GBR").read_bytes()) == before


def test_keygen_writes_neither_file_when_the_public_one_already_exists(tmp_path: Path) -> None:
    public(tmp_path, "GBR").write_text("someone else's", encoding="utf-8")
    refused("governance", "keygen", "--holder", "GBR", "--out", key(tmp_path, "GBR"), exit_code=2)
    assert not key(tmp_path, "GBR").exists()
    assert public(tmp_path, "GBR").read_text() == "someone else's"


def test_signing_with_a_public_key_file_is_refused(signed_root: Path) -> None:
    gbr = public(signed_root.parent, "GBR")
    line = refused("governance", "root", "sign", signed_root, "--key", gbr, exit_code=2)
    assert "holds only a public key" in line


# --- the registry -------------------------------------------------------------------------


def test_registry_signed_by_one_of_a_two_of_three_root_fails_naming_the_missing_holders(
    signed_root: Path, tmp_path: Path
) -> None:
    registry = propose_registry(tmp_path, 1)
    ok("registry", "sign", registry, "--key", key(tmp_path, "GBR"))
    line = refused("registry", "verify", registry, "--root", signed_root)
    assert "1 of 2 required signatures; missing: a key held by CAN or USA" in line
    assert "(registry_threshold)" in line


def test_registry_signed_by_two_of_a_two_of_three_root_verifies(
    signed_root: Path, tmp_path: Path
) -> None:
    registry = propose_registry(tmp_path, 1)
    for holder in ("GBR", "USA"):
        ok("registry", "sign", registry, "--key", key(tmp_path, holder))
    said = ok("registry", "verify", registry, "--root", signed_root)
    assert said.strip() == "ok: version 1, signed by GBR, USA (2 of 2 required)"
    # The file is what a node trusts, not only what the command says.
    state = TrustedState(signed_root.read_bytes(), datetime.now(UTC))
    assert state.update_registry(registry.read_bytes(), datetime.now(UTC)).version == 1
    assert sorted(state.registry.ids) == sorted(HOLDERS)


def test_signing_twice_with_one_key_counts_once(signed_root: Path, tmp_path: Path) -> None:
    registry = propose_registry(tmp_path, 1)
    for _ in range(2):
        ok("registry", "sign", registry, "--key", key(tmp_path, "GBR"))
    assert "1 of 2 required" in refused("registry", "verify", registry, "--root", signed_root)


def test_registry_verify_refuses_a_version_older_than_the_previous_one(
    signed_root: Path, tmp_path: Path
) -> None:
    old, new = propose_registry(tmp_path, 1), propose_registry(tmp_path, 2)
    for document in (old, new):
        for holder in ("GBR", "CAN"):
            ok("registry", "sign", document, "--key", key(tmp_path, holder))
    ok("registry", "verify", new, "--root", signed_root, "--previous", old)
    line = refused("registry", "verify", old, "--root", signed_root, "--previous", new)
    assert "older than the trusted version 2 (registry_rollback)" in line


def test_registry_propose_reads_the_shipped_policy_files(tmp_path: Path) -> None:
    out = tmp_path / "registry.json"
    ok(*propose(POLICIES / "partners.yaml", 1, out))
    signed = json.loads(out.read_text())["signed"]
    assert signed["scheme"] == yaml.safe_load((POLICIES / "scheme.yaml").read_text())
    assert "GBR" in {p["id"] for p in signed["partners"]}


def test_a_proposal_never_overwrites_a_document(tmp_path: Path) -> None:
    registry = propose_registry(tmp_path, 1)
    before = registry.read_bytes()
    line = refused(*propose(partners_yaml(tmp_path), 1, registry), exit_code=2)
    assert "already exists" in line
    assert registry.read_bytes() == before


# --- agreements ---------------------------------------------------------------------------


def test_agreement_signed_by_one_party_fails_naming_the_other(
    signed_root: Path, tmp_path: Path
) -> None:
    agreement = propose_agreement(tmp_path)
    ok("agreement", "sign", agreement, "--key", key(tmp_path, "GBR"))
    line = refused("agreement", "verify", agreement, "--root", signed_root)
    assert "signed by GBR; missing: a key held by CAN (agreement_unsigned)" in line


def test_agreement_signed_by_both_parties_verifies(signed_root: Path, tmp_path: Path) -> None:
    agreement = propose_agreement(tmp_path)
    for holder in ("GBR", "CAN"):
        ok("agreement", "sign", agreement, "--key", key(tmp_path, holder))
    said = ok("agreement", "verify", agreement, "--root", signed_root)
    assert said.strip() == "ok: agreement gbr-can-cyber, signed by all its parties: CAN, GBR"
    trusted = TrustedState(signed_root.read_bytes(), datetime.now(UTC))
    terms = trusted.verify_agreement(agreement.read_bytes()).agreement
    assert terms["valid_from"] == "2026-01-01T00:00:00Z"  # the string written, not a datetime


def test_a_key_of_no_party_cannot_sign_an_agreement(signed_root: Path, tmp_path: Path) -> None:
    agreement = propose_agreement(tmp_path)
    before = agreement.read_bytes()
    line = refused("agreement", "sign", agreement, "--key", key(tmp_path, "USA"), exit_code=2)
    assert "USA is not a party of agreement gbr-can-cyber (parties: CAN, GBR)" in line
    assert agreement.read_bytes() == before


@pytest.mark.parametrize("command", ["suspend", "terminate"])
def test_one_party_suspends_or_terminates_an_agreement(
    signed_root: Path, tmp_path: Path, command: str
) -> None:
    agreement = propose_agreement(tmp_path)
    for holder in ("GBR", "CAN"):
        ok("agreement", "sign", agreement, "--key", key(tmp_path, holder))
    status = tmp_path / "status.json"
    can = key(tmp_path, "CAN")
    ok("agreement", command, "--id", "gbr-can-cyber", "--key", can, "--out", status)
    state = TrustedState(signed_root.read_bytes(), datetime.now(UTC))
    state.verify_agreement(agreement.read_bytes())
    applied = state.apply_status(status.read_bytes())
    assert applied.status == {"suspend": "suspended", "terminate": "terminated"}[command]
    assert state.agreements == {}


# --- garbled input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("garble", "exit_code", "says"),
    [
        (lambda data: b"\x00\xff not json", 2, "not a governance document"),
        (lambda data: data[: len(data) // 2], 2, "not a governance document"),
        (lambda data: data.replace(b'"type":"registry"', b'"type":"ledger"'), 2, "ledger"),
        (lambda data: data.replace(b'"version":1', b'"version":7'), 1, "0 of 2 required"),
        (lambda data: data.replace(b'"sig":"', b'"sig":"AA', 1), 2, "signatures[0]"),
    ],
    ids=["binary", "truncated", "unknown-type", "content-changed", "signature-garbled"],
)
def test_a_garbled_registry_is_one_line_and_a_nonzero_exit(
    signed_root: Path,
    tmp_path: Path,
    garble: Callable[[bytes], bytes],
    exit_code: int,
    says: str,
) -> None:
    registry = propose_registry(tmp_path, 1)
    for holder in ("GBR", "USA"):
        ok("registry", "sign", registry, "--key", key(tmp_path, holder))
    registry.write_bytes(garble(registry.read_bytes()))
    line = refused("registry", "verify", registry, "--root", signed_root, exit_code=exit_code)
    assert says in line


def test_a_document_of_the_wrong_type_is_named(signed_root: Path, tmp_path: Path) -> None:
    line = refused("registry", "verify", signed_root, "--root", signed_root, exit_code=2)
    assert f"{signed_root}: expected a registry document, got a root document" in line


# --- --root: the governance root you trust, as every command means it ---------------------------


@pytest.mark.parametrize("group", ["registry", "agreement"])
def test_an_offline_verify_refuses_a_digest_for_root_as_a_usage_error(
    signed_root: Path, tmp_path: Path, group: str
) -> None:
    # A digest is enough where the broker serves the root (publish, subscribe); offline, with
    # nobody to serve it, the command needs the root's keys: its file.
    document = propose_registry(tmp_path, 1) if group == "registry" else propose_agreement(tmp_path)
    digest = "sha256:" + hashlib.sha256(signed_root.read_bytes()).hexdigest()
    line = refused(group, "verify", document, "--root", digest, exit_code=2)
    assert f"--root {digest}: this command checks documents offline and needs the root's file" in (
        line
    )
    assert "a digest names a root but does not hold its keys" in line


def test_an_offline_verify_takes_the_root_from_tearline_root(
    signed_root: Path, tmp_path: Path
) -> None:
    registry = propose_registry(tmp_path, 1)
    for holder in ("GBR", "USA"):
        ok("registry", "sign", registry, "--key", key(tmp_path, holder))
    result = CliRunner().invoke(
        cli.app, ["registry", "verify", str(registry)], env={"TEARLINE_ROOT": str(signed_root)}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: version 1, signed by GBR, USA (2 of 2 required)"


def test_a_root_file_that_cannot_be_read_is_a_usage_error(tmp_path: Path) -> None:
    agreement = propose_agreement(tmp_path)
    missing = tmp_path / "no-root.json"
    line = refused("agreement", "verify", agreement, "--root", missing, exit_code=2)
    assert f"cannot read the governance root {missing} (--root): No such file" in line


def test_a_garbled_key_file_is_one_line(signed_root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.governance.json"
    bad.write_text('{"holder": "GBR", "public": "!!", "private": "x"}', encoding="utf-8")
    bad.chmod(0o600)
    line = refused("governance", "root", "sign", signed_root, "--key", bad, exit_code=2)
    assert "is not a governance key file" in line


def test_garbled_yaml_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "x.yaml"
    source.write_text("id: x\nparties: [GBR\n", encoding="utf-8")
    line = refused("agreement", "propose", source, "--out", tmp_path / "x.json", exit_code=2)
    assert f"{source}:" in line
    assert "not valid YAML" in line
    assert not (tmp_path / "x.json").exists()
