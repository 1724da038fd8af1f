"""How every ``tearline`` command group lists its commands in ``--help``.

The groups render help as click does, in plain text (``rich_markup_mode=None``): rich's panels
cost ``tearline --help`` a third of its time, showed a type for flags (``--help <bool>``) and
kept a docstring's line breaks mid-sentence. Click, though, cuts each command's summary in the
list at 45 characters; :class:`Group` shows it whole instead (wrapped), as the first paragraph of
its help, or its ``short_help`` when one is given.
"""

from __future__ import annotations

import inspect

import typer
import typer.core
from typer import _click


def summary(command: _click.Command) -> str:
    """A command's line in its group's list: its short help, or its help's first paragraph."""
    text = command.short_help or command.help or ""
    first = inspect.cleandoc(text).split("\n\n", 1)[0]
    return " ".join(first.split())


class Group(typer.core.TyperGroup):
    """A typer group whose command list shows each summary whole."""

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def group(help: str) -> typer.Typer:
    """A command group as every ``tearline`` group is: plain-text help listed by :class:`Group`,
    and its help shown when it is called without a command."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, cls=Group)
