"""Operator commands of ``tearline``: ``policy check`` and ``policy explain``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from broker.policy.load import check_policies
from clients.errors import TearlineError
from clients.protocol.encoding import EncodingError, parse_time, strict_loads
from clients.protocol.label import Label

policy_app = typer.Typer(help="Check and explain the policy folder.", no_args_is_help=True)

PoliciesOption = Annotated[Path, typer.Option("--policies", help="The policy folder.")]


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")


def _fail(message: str, exit_code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(exit_code)


@policy_app.command("check")
def check(policies: PoliciesOption = Path("policies")) -> None:
    """Exit 0 when the policy folder is valid; otherwise list every problem (file:line, field)."""
    policy, problems = check_policies(policies)
    if policy is None:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1)
    s = policy.summary()
    typer.echo(f"ok: scheme {s['policy']}, {s['partners']} partners, {s['agreements']} agreements")


@policy_app.command("explain")
def explain(
    originator: Annotated[str, typer.Option("--from", help="The originating partner id.")],
    label: Annotated[Path, typer.Option(help="A JSON file holding one label (§3).")],
    policies: PoliciesOption = Path("policies"),
    suite: Annotated[str, typer.Option(help="classic or pq-hybrid.")] = "classic",
    at: Annotated[str | None, typer.Option(help="RFC 3339 time; default now.")] = None,
) -> None:
    """Print, for every partner, whether a report with LABEL from ORIGINATOR reaches it, and why."""
    policy, problems = check_policies(policies)
    if policy is None:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1)
    try:
        now = parse_time(at) if at is not None else datetime.now(UTC)
        parsed = Label.from_dict(strict_loads(label.read_bytes()))
        if originator not in policy.registry:
            raise _fail(f"--from {originator}: not a partner in {policies}/partners.yaml", 2)
        decisions = policy.decide(parsed, originator, suite, now)
    except OSError as exc:
        raise _fail(f"cannot read {label}: {exc.strerror}", 2) from None
    except EncodingError as exc:
        raise _fail(
            f"{label if at is None or 'RFC' not in str(exc) else '--at'}: {exc}", 2
        ) from None
    except TearlineError as exc:
        raise _fail(exc.message, 2) from None
    typer.echo(json.dumps(policy.explain(decisions), indent=2))
