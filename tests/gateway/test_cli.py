"""`tearline gateway`: the command is registered, makes hashes, and refuses a bad config."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import typer
from typer.testing import CliRunner

from tearline.gateway.cli import register
from tearline.gateway.config import verify_secret


def app() -> typer.Typer:
    root = typer.Typer()
    root.command("version")(lambda: None)  # a second command, so "gateway" stays a group
    register(root)
    return root


def test_the_entry_point_is_registered() -> None:
    names = {e.name: e.value for e in entry_points(group="tearline.commands")}
    assert names.get("gateway") == "tearline.gateway.cli:register"


def test_hash_secret_reads_stdin_and_prints_a_hash() -> None:
    result = CliRunner().invoke(app(), ["gateway", "hash-secret"], input="a long enough secret\n")
    assert result.exit_code == 0, result.output
    assert verify_secret("a long enough secret", result.output.strip())
    short = CliRunner().invoke(app(), ["gateway", "hash-secret"], input="short\n")
    assert short.exit_code == 2


def test_new_token_prints_a_token_and_its_hash() -> None:
    result = CliRunner().invoke(app(), ["gateway", "new-token"])
    token, hashed = (line.split(":", 1)[1].strip() for line in result.output.splitlines())
    assert verify_secret(token, hashed)


def test_serve_refuses_a_bad_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(app(), ["gateway", "serve", "--config", str(tmp_path / "no.yaml")])
    assert result.exit_code == 2
    assert "cannot read the gateway configuration" in result.output
