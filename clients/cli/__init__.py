"""The ``tearline`` command: one typer app assembled from one module per command group.

- :mod:`.common`: the one ``fail``, the options every group shares, errors said in words;
- :mod:`.partner`: ``keygen``, ``publish``, ``subscribe``, ``recall``;
- :mod:`.operator`: ``dead-letters``;
- :mod:`.governance`: ``governance``, ``root``, ``registry``, ``agreement`` (offline, and the
  ``publish`` commands that put signed documents into a policy folder);
- :mod:`.transparency`: ``log`` and ``keys`` (a node watching the broker's log).

The operator commands of the broker and the gateway plug in through the ``tearline.commands``
entry point (``broker.cli``, ``gateway.cli``), so the SDK never imports the broker; a plugin that
cannot be loaded gets stand-ins that say what to install, and never takes another's commands.

Only what ``--help`` needs is imported here and by the group modules: typer, the error tree and
the commands' signatures. What a command does (the SDK and its HTTP stack, the STIX validator,
rich) is imported in the command, so ``tearline --help`` stays fast
(tests/unit/test_cli_imports.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib.util import find_spec
from typing import TYPE_CHECKING, Final

import typer

from tearline.clients.cli import governance, operator, partner, transparency
from tearline.clients.cli.common import fail
from tearline.clients.help_format import Group

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

app = typer.Typer(
    name="tearline",
    help="Share signed, end-to-end encrypted threat reports under partnership agreements.",
    no_args_is_help=True,
    rich_markup_mode=None,  # help in plain text, as click writes it: no panels, no markup
    cls=Group,
    # As wide as the terminal (click would stop at 80 columns); piped, 80 unless COLUMNS says.
    context_settings={"max_content_width": 10_000},
    add_completion=False,
    pretty_exceptions_enable=False,
)
# A partner node's own commands.
app.command()(partner.keygen)
app.command()(partner.publish)
app.command()(partner.subscribe)
app.command()(partner.recall)
app.add_typer(operator.dead_letters_app, name="dead-letters")  # operators; needs only the SDK
# Offline governance tools: files only, so they run on an air-gapped machine too.
app.add_typer(governance.governance_app, name="governance")
app.add_typer(governance.registry_app, name="registry")
app.add_typer(governance.agreement_app, name="agreement")
# A node watching the broker's transparency log.
app.add_typer(transparency.log_app, name="log")
app.add_typer(transparency.keys_app, name="keys")


#: The commands ``broker.cli`` adds, named here so that an SDK-only install can say what they
#: need instead of "No such command" (the broker is not imported to learn them).
OPERATOR_COMMANDS: Final = {
    "init": "Write a policy folder and identities to try Tearline with.",
    "serve": "Serve the broker's API.",
    "policy": "Check and explain the policy folder.",
    "partner": "Add partners to the policy folder.",
    "audit": "Check the audit trail.",
    "demo": "Run a broker and five partner nodes sharing one report.",
}
BROKER_INSTALL: Final = "pip install 'tearline[broker]'"
# pyproject's cti extra: `tearline gateway` serves with the broker extra's fastapi and uvicorn.
GATEWAY_INSTALL: Final = "pip install 'tearline[gateway]'"


@dataclasses.dataclass(frozen=True)
class Plugin:
    """What ``tearline`` knows of one ``tearline.commands`` entry point without importing it, so
    that when it cannot be loaded its own commands (and no others) say why and what to install.

    ``packages`` are top-level modules looked for before the plugin is imported (a plugin whose
    module imports its heavy packages lazily would otherwise load fine and fail mid-command);
    the broker looks for its own in ``broker.installed`` instead, which its module imports first.
    """

    commands: dict[str, str]  # name -> one-line summary for --help
    needs: str  # "is an operator command and needs the broker's packages"
    install: str
    packages: tuple[str, ...] = ()


PLUGINS: Final = {
    "broker": Plugin(
        OPERATOR_COMMANDS,
        "is an operator command and needs the broker's packages",
        BROKER_INSTALL,
    ),
    "gateway": Plugin(
        {"gateway": "A TAXII 2.1 server for this partner node."},
        "needs the gateway's packages",
        GATEWAY_INSTALL,
        # What gateway.app and gateway.cli import; stix2-validator is optional there (a bundle
        # is then checked for shape and markings only, with a warning).
        packages=("fastapi", "uvicorn"),
    ),
}


def _unavailable(app: typer.Typer, plugin: Plugin, why: Callable[[str], str], short: str) -> None:
    """Stand-ins for one plugin's commands: each fails with ``why(name)``, and only when it is
    asked for; ``short`` ends its line in --help."""
    for name, summary in plugin.commands.items():

        def refuse(ctx: typer.Context, name: str = name) -> None:
            raise fail(why(name), 2)

        app.command(
            name,
            help=f"{summary} {short}",
            context_settings={
                "allow_extra_args": True,
                "ignore_unknown_options": True,
                "help_option_names": [],
            },
        )(refuse)


def _absent(module: str) -> bool:
    """Whether a top-level module cannot be imported, asked without importing it."""
    try:
        return find_spec(module) is None
    except ImportError:  # a finder that refuses it outright
        return True
    except ValueError:  # in sys.modules without a spec: imported already, so present
        return False


def _load_plugin(app: typer.Typer, entry: EntryPoint) -> None:
    """Register one plugin's commands, or stand-ins for them alone: a plugin missing its
    packages, missing from this installation or broken never takes another plugin's commands."""
    plugin = PLUGINS.get(entry.name)
    commands, groups = len(app.registered_commands), len(app.registered_groups)
    try:
        missing = next((p for p in plugin.packages if _absent(p)), None) if plugin else None
        if missing is not None:
            raise ImportError(f"{missing} is not installed", name=missing)
        entry.load()(app)
        return
    except Exception as exc:
        problem = exc
    # Whatever a plugin that failed half-way registered goes: its stand-ins replace it whole.
    del app.registered_commands[commands:], app.registered_groups[groups:]
    top = (getattr(problem, "name", None) or "").split(".")[0]
    own = entry.module.split(".")[0]
    if plugin is not None and isinstance(problem, ImportError) and top != own and _absent(top):
        # A package of an extra that is not installed: say which extra to install.
        needs = f"{plugin.needs} ({problem.name} is not installed): {plugin.install}"
        _unavailable(
            app, plugin, lambda name: f"`tearline {name}` {needs}", f"Needs {plugin.install}."
        )
        return
    # The plugin's own module is absent (an installation lacking a package its metadata names,
    # as an image that copied only part of the source) or it is broken: installing an extra
    # does not fix that, and a plain `pip install` finds tearline installed and does nothing.
    reason = f"{entry.value} cannot be loaded ({type(problem).__name__}: {problem})"
    if plugin is None:  # its commands are unknown here: say it once, on stderr
        typer.echo(f"warning: tearline.commands plugin {entry.name!r}: {reason}", err=True)
        return
    reinstall = plugin.install.replace("pip install", "pip install --force-reinstall")
    _unavailable(
        app,
        plugin,
        lambda name: f"`tearline {name}` is not available: {reason}; reinstall: {reinstall}",
        f"Unavailable: {reason}.",
    )


def main() -> None:
    """The ``tearline`` console script: the plugins' commands added, then the command run."""
    import sys
    from importlib.metadata import entry_points

    # httpx imports its own command-line client when it is imported, and with it click, pygments
    # and rich's progress bars and syntax highlighting, whenever they are installed (rich is,
    # for this command's output): a fifth of an online command's start, for a client this
    # process never runs. Marked absent, httpx falls back to its stub `httpx.main`; nothing else
    # changes. Only here, in the command's own process: the SDK leaves an application's alone.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    for entry in entry_points(group="tearline.commands"):
        _load_plugin(app, entry)
    app()
