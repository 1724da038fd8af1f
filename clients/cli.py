"""The ``tearline`` command. Partner commands live here; operator commands plug in from
``broker.cli`` through the ``tearline.commands`` entry point, so the SDK never imports the broker.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer

from clients.errors import TearlineError
from clients.keyfile import generate, write_keypair
from clients.protocol.identity import check_suite

app = typer.Typer(
    name="tearline",
    help="Share signed, end-to-end encrypted threat reports under partnership agreements.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, exit_code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(exit_code)


@app.command()
def keygen(
    partner: Annotated[str, typer.Option(help="Partner id, e.g. GBR or EE-CERT.")],
    out: Annotated[Path, typer.Option(help="Folder to write the two files into.")],
    suite: Annotated[str, typer.Option(help="classic or pq-hybrid.")] = "classic",
    name: Annotated[str | None, typer.Option(help="Display name for the registry.")] = None,
    valid_days: Annotated[int, typer.Option(min=1, help="Key validity in days.")] = 730,
) -> None:
    """Make a partner's keys: OUT/ID.identity.json (private, mode 0600) and OUT/ID.public.yaml."""
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        identity = generate(partner, check_suite(suite), now, timedelta(days=valid_days))
        private_path, public_path = write_keypair(identity, out, name)
    except TearlineError as exc:
        raise fail(exc.message, 2) from None
    typer.echo(f"wrote {private_path} (private: keep it on this node, mode 0600)")
    typer.echo(f"wrote {public_path} (public: give it to the broker operator)")


def main() -> None:
    for entry in entry_points(group="tearline.commands"):
        try:
            register = entry.load()
        except ImportError as exc:  # the broker extra is not installed: partner commands only
            print(f"note: operator commands unavailable ({exc.name} missing)", file=sys.stderr)
            continue
        register(app)
    app()
