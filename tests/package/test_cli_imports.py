"""What ``tearline`` imports for a command, so that a fast command cannot silently turn slow.

Not a wall-time assertion (the machines are shared and noisy): each probe runs the command in a
fresh interpreter and lists the heavy packages it imported. ``tearline --help`` (and a command's
``--help``) needs only typer and the commands' signatures; ``policy check`` needs yaml and
jsonschema but not the IRI grammar jsonschema would build at import (2.5 s); help is plain text,
with nothing rich would have drawn (``--help <bool>``) or left behind (escaped markup).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Heavy packages, none of which a command's help needs. rich is among them: help is rendered
#: by click's plain formatter (typer's rich panels cost a third of `tearline --help`).
HEAVY = (
    "cryptography",
    "fastapi",
    "http_message_signatures",
    "httpx",
    "httpx_sse",
    "jsonschema",
    "lark",
    "misp_stix_converter",
    "nacl",
    "pydantic",
    "redis",
    "referencing",
    "rich",
    "starlette",
    "stix2",
    "stix2validator",
    "uvicorn",
    "yaml",
)

PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["tearline", *json.loads(sys.argv[1])]
from tearline.clients.cli import main
try:
    main()
except SystemExit:
    pass
loaded = {m: type(sys.modules[m]).__name__ for m in heavy if sys.modules.get(m) is not None}
print("\\nLOADED " + json.dumps(loaded))
"""


def run(*args: str, cwd: Path = ROOT) -> tuple[str, dict[str, str]]:
    """The command's output, and which of HEAVY it imported (name -> its module's type)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=True,
    )
    out, _, loaded = done.stdout.rpartition("\nLOADED ")
    return out, json.loads(loaded)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("publish", "--help"),
        ("subscribe", "--help"),
        ("policy", "explain", "--help"),
        ("registry", "--help"),
        ("dead-letters", "list", "--help"),
        ("log", "compare", "--help"),
        ("gateway", "serve", "--help"),
        ("serve", "--help"),
    ],
)
def test_help_imports_no_heavy_package(args: tuple[str, ...]) -> None:
    out, loaded = run(*args)
    assert "Usage: tearline" in out
    if args != ("--help",):
        # typer's own: it coerces a command's parameters with pydantic, help among them.
        loaded.pop("pydantic", None)
    assert loaded == {}, f"tearline {' '.join(args)} imported {sorted(loaded)}"


def test_policy_check_builds_no_iri_grammar() -> None:
    out, loaded = run("policy", "check", "--policies", "policies")
    assert out.startswith("ok: scheme")
    assert "jsonschema" in loaded  # it does validate
    assert "yaml" in loaded
    # rfc3987-syntax is the stand-in that builds its grammar on the first `iri` checked.
    assert "lark" not in loaded
    assert loaded.get("rfc3987_syntax", "_Deferred") == "_Deferred"
    assert not {"httpx", "rich", "fastapi", "uvicorn", "redis", "stix2validator"} & set(loaded)


HELPS = """
import json
import typer.main
from importlib.metadata import entry_points
from typer.testing import CliRunner
from tearline.clients import cli
for entry in entry_points(group="tearline.commands"):
    cli._load_plugin(cli.app, entry)
root = typer.main.get_command(cli.app)

def walk(command, path):
    yield path
    for name in getattr(command, "commands", {}):
        yield from walk(command.commands[name], [*path, name])

runner = CliRunner()
helps = {}
for path in walk(root, []):
    done = runner.invoke(cli.app, [*path, "--help"], prog_name="tearline")
    helps[" ".join(path)] = [done.exit_code, done.output]
print(json.dumps(helps))
"""


def test_every_commands_help_renders_as_plain_text() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HELPS], capture_output=True, text=True, cwd=ROOT, check=True
    )
    helps = json.loads(done.stdout)
    assert len(helps) > 30  # every group and command, the plugins' among them
    for path, (code, text) in helps.items():
        assert code == 0, (path, text)
        assert text.startswith("Usage: tearline"), path
        assert "<bool>" not in text, path  # a flag takes no value
        for markup in ("\\[", "[/", "[bold", "\u2500", "\u256d"):  # escapes, tags, panels
            assert markup not in text, (path, markup)
        assert "..." not in text.partition("Commands:")[2], path  # summaries whole


def test_the_deferred_iri_grammar_checks_what_the_grammar_checks() -> None:
    probe = """
import json, sys
from tearline.clients import iri_grammar
iri_grammar.defer()
import jsonschema
before = "lark" in sys.modules
check = jsonschema.Draft202012Validator.FORMAT_CHECKER
values = ["http://example.com/a b", "http://example.com/\\u00e4", "::", "urn:x", "#frag", ""]
iri = [check.conforms(v, "iri") for v in values]
ref = [check.conforms(v, "iri-reference") for v in values]
import rfc3987_syntax
real = [rfc3987_syntax.is_valid_syntax("iri", v) for v in values]
real_ref = [rfc3987_syntax.is_valid_syntax("iri_reference", v) for v in values]
print(json.dumps([before, iri == real, ref == real_ref, iri, hasattr(rfc3987_syntax, "parse")]))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    before, same, same_ref, iri, real_module = json.loads(done.stdout)
    assert before is False  # importing jsonschema built no grammar
    assert same  # and the checks are rfc3987-syntax's own
    assert same_ref
    assert iri == [False, True, False, True, False, False]
    assert real_module  # later importers get the real module


DEFERRED = """
import sys
from tearline.clients import iri_grammar
from tearline.clients.cli.deferred import held_back
iri_grammar.defer()
with held_back("requests"):
    import stix2validator.validator  # it imports requests, to fetch a custom schema by URL
bound = stix2validator.validator.requests
after_import = [type(bound).__name__, "requests" in sys.modules]
from requests.auth import AuthBase  # as pymisp imports it: an ordinary import, the real module
real = type(sys.modules["requests"]).__name__
get = bound.get  # the first attribute asked of the stand-in: the real module's
print("\\nDEFERRED", *after_import, real, get is sys.modules["requests"].get, AuthBase.__module__)
"""


def test_the_stix_validator_loads_requests_only_when_something_uses_it() -> None:
    # stix2-validator's `requests` is never used by a `tearline` command: held back while the
    # validator is imported, it loads (the real module) the moment anything does use it, and
    # every other import of it is an ordinary one.
    done = subprocess.run(
        [sys.executable, "-c", DEFERRED], capture_output=True, text=True, cwd=ROOT, check=True
    )
    said = done.stdout.rpartition("\nDEFERRED ")[2].split()
    assert said == ["Deferred", "False", "module", "True", "requests.auth"]
