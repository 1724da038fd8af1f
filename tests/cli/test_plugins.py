"""``tearline.commands`` plugins: one that cannot be loaded disables its own commands and no
others (issue 16, item 18).

The image once lacked the ``gateway`` package its metadata declares; the gateway's entry point
failed to import and ``clients.cli`` replaced *every* operator command with a stand-in, so the
container looped on "`tearline serve` ... needs the broker's packages (gateway is not
installed)". The first tests run the real ``main()`` in a subprocess where ``gateway`` cannot be
imported; the others drive the loader with plugins that fail in each way it tells apart.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tearline.clients import cli as client_cli

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
GROUP = "tearline.commands"

# `tearline` with the modules named in argv[1] made unimportable, as in an installation that
# lacks them (a meta-path finder first in line, so site-packages and the source tree are both
# out of reach); the rest of argv is the command line.
BLOCKED = """
import importlib.abc, sys
blocked = sys.argv.pop(1).split(",")
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
sys.argv[0] = "tearline"
from tearline.clients.cli import main
main()
"""


def tearline(blocked: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEARLINE_")}
    env["COLUMNS"] = "200"  # one line per command in --help: piped, rich would fold at 80
    return subprocess.run(
        [sys.executable, "-c", BLOCKED, blocked, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def help_line(out: str, command: str) -> str:
    lines = [line for line in out.splitlines() if line.strip("│ ").startswith(command + " ")]
    assert len(lines) == 1, out
    return lines[0]


GATEWAY_UNAVAILABLE = (
    "error: `tearline gateway` is not available: tearline.gateway.cli:register cannot be "
    "loaded (ModuleNotFoundError: No module named 'tearline.gateway'); "
    "reinstall: pip install --force-reinstall 'tearline[gateway]'\n"
)


def test_without_the_gateway_package_tearline_help_lists_the_operator_commands() -> None:
    done = tearline("tearline.gateway", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "Needs pip install 'tearline[broker]'" not in done.stdout
    assert "Serve the API" in help_line(done.stdout, "serve")  # the real command's own help
    assert "Unavailable: tearline.gateway.cli:register cannot be loaded" in help_line(
        done.stdout, "gateway"
    )


def test_without_the_gateway_package_serve_is_the_real_serve() -> None:
    done = tearline("tearline.gateway", "serve", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: tearline serve [OPTIONS]" in done.stdout
    assert "--host" in done.stdout
    assert "--workers" in done.stdout


def test_without_the_gateway_package_operator_commands_run() -> None:
    done = tearline("tearline.gateway", "policy", "check", "--policies", POLICIES)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok:")


@pytest.mark.parametrize("args", [("gateway",), ("gateway", "serve", "--config", "g.yaml")])
def test_without_the_gateway_package_the_gateway_says_what_is_wrong(args: tuple[str, ...]) -> None:
    done = tearline("tearline.gateway", *args)
    assert done.returncode == 2
    assert done.stderr == GATEWAY_UNAVAILABLE


def test_without_the_gateways_packages_the_gateway_names_its_install() -> None:
    # uvicorn is the broker's too: both say what to install, each its own extra.
    gateway = tearline("uvicorn", "gateway", "serve")
    assert gateway.returncode == 2
    assert gateway.stderr == (
        "error: `tearline gateway` needs the gateway's packages (uvicorn is not installed): "
        "pip install 'tearline[gateway]'\n"
    )
    serve = tearline("uvicorn", "serve")
    assert serve.returncode == 2
    assert serve.stderr == (
        "error: `tearline serve` is an operator command and needs the broker's packages "
        "(uvicorn is not installed): pip install 'tearline[broker]'\n"
    )


def test_partner_commands_never_depend_on_a_plugin(tmp_path: Path) -> None:
    done = tearline(
        "tearline.gateway,tearline.broker", "keygen", "--partner", "NOR", "--out", tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "NOR.public.yaml").exists()


# --- the loader, plugin by plugin ---------------------------------------------------------------


def half_registered_then_broken(app: typer.Typer) -> None:
    """A plugin with a bug: registers its group, then fails."""
    app.add_typer(typer.Typer(), name="gateway")
    raise RuntimeError("a bug in the plugin")


def needs_an_absent_package(app: typer.Typer) -> None:
    raise ImportError("No module named 'tearline_no_such_package'", name="tearline_no_such_package")


def _loaded(*extra: EntryPoint) -> typer.Typer:
    """A fresh app with the real plugins loaded, ``extra`` ones in place of those so named."""
    app = typer.Typer(no_args_is_help=True)
    app.command("keygen")(lambda: None)  # two commands: typer would otherwise run the one
    replaced = {e.name for e in extra}
    for entry in [*(e for e in entry_points(group=GROUP) if e.name not in replaced), *extra]:
        client_cli._load_plugin(app, entry)
    return app


def _entry(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{__name__}:{target}", group=GROUP)


def _names(app: typer.Typer) -> list[str | None]:
    return [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]


def test_a_plugin_that_fails_half_way_leaves_only_its_stand_ins() -> None:
    app = _loaded(_entry("gateway", "half_registered_then_broken"))
    assert _names(app).count("gateway") == 1, "its half-registered group is gone"
    done = CliRunner().invoke(app, ["gateway", "serve"])
    assert done.exit_code == 2
    assert "`tearline gateway` is not available: " in done.stderr
    assert "cannot be loaded (RuntimeError: a bug in the plugin)" in done.stderr
    served = CliRunner().invoke(app, ["policy", "check", "--policies", str(POLICIES)])
    assert served.exit_code == 0, served.stderr
    assert served.stdout.startswith("ok:")


def test_a_known_plugin_missing_an_extras_package_names_the_install() -> None:
    app = _loaded(_entry("gateway", "needs_an_absent_package"))
    done = CliRunner().invoke(app, ["gateway"])
    assert done.exit_code == 2
    assert done.stderr == (
        "error: `tearline gateway` needs the gateway's packages (tearline_no_such_package is "
        "not installed): pip install 'tearline[gateway]'\n"
    )


def test_an_unknown_broken_plugin_is_one_warning_and_takes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = _loaded(_entry("someone-elses", "half_registered_then_broken"))
    warning = capsys.readouterr().err
    assert warning == (
        f"warning: tearline.commands plugin 'someone-elses': {__name__}:"
        "half_registered_then_broken cannot be loaded (RuntimeError: a bug in the plugin)\n"
    )
    assert "gateway" in _names(app)  # the real gateway's group, not the broken one's
    done = CliRunner().invoke(app, ["gateway", "--help"])
    assert done.exit_code == 0
    assert "TAXII 2.1" in done.stdout


def test_every_known_plugin_is_a_declared_entry_point() -> None:
    # The stand-ins are named in clients.cli: a plugin renamed in pyproject.toml and not there
    # would get no stand-ins at all.
    declared = {e.name: e.value for e in entry_points(group=GROUP)}
    assert set(client_cli.PLUGINS) <= set(declared)
    for name, plugin in client_cli.PLUGINS.items():
        app = typer.Typer()
        EntryPoint(name=name, value=declared[name], group=GROUP).load()(app)
        assert set(plugin.commands) == set(_names(app)), name


def test_each_plugins_install_command_provides_the_packages_it_looks_for() -> None:
    # A stand-in that names an install which would not bring the missing package back would
    # send the operator round in circles.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for name, plugin in client_cli.PLUGINS.items():
        named = re.fullmatch(r"pip install 'tearline\[([a-z,]+)\]'", plugin.install)
        assert named, plugin.install
        provided = {
            re.split(r"[\[<>=;! ]", spec, maxsplit=1)[0].replace("-", "_")
            for extra in named.group(1).split(",")
            for spec in extras["optional-dependencies"][extra]
        }
        assert set(plugin.packages) <= provided, name
