"""``tearline dead-letters``: an operator lists, inspects and replays a partner's dead letters.

Only the SDK is needed (``clients.operator``), not the broker extra: an operator can work from a
machine that runs no broker. The identity is an operator's: its key is in the broker's
``policies/operators.yaml``, not in the partners' registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer

# The operator's client (and its HTTP stack) and rich are imported by the commands that use
# them: `tearline --help` imports this module for the commands' signatures alone.
from tearline.clients.cli.common import (
    DEFAULT_BROKER,
    DEFAULT_IDENTITY,
    BrokerOption,
    IdentityOption,
    JsonOption,
    broker_url,
    describe,
    echo_json,
    fail,
    load_identity,
)
from tearline.clients.errors import TearlineError
from tearline.clients.help_format import group
from tearline.clients.protocol.encoding import format_time
from tearline.clients.terminal import console as make_console

if TYPE_CHECKING:
    from tearline.clients.operator import DeadLetter, DeadLetterDetail, Operator

T = TypeVar("T")

# What the broker accepts, checked here first so a typo is a usage error, not a round trip.
STREAM_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}", re.ASCII)

dead_letters_app = group("List, inspect and replay a partner's dead letters (operators only).")

PartnerArgument = Annotated[str, typer.Argument(help="The partner whose inbox it was.")]
DeadIdArgument = Annotated[str, typer.Argument(help="The dead letter's id, as listed.")]


def _check_ids(partner: str, dead_id: str | None = None) -> None:
    from tearline.clients.protocol.identity import PARTNER_ID

    if not PARTNER_ID.fullmatch(partner):
        raise fail(f"{partner!r} is not a partner id (like GBR or EE-CERT)", 2)
    if dead_id is not None and not STREAM_ID.fullmatch(dead_id):
        raise fail(f"{dead_id!r} is not a dead letter id (like 1767225600000-0)", 2)


def _as_operator(broker: str, identity: Path, act: Callable[[Operator], T]) -> T:
    """Run ``act`` signed as the operator; a refusal or an outage is one line and exit 1."""
    from tearline.clients.operator import Operator

    url = broker_url(broker)
    me = load_identity(identity)
    try:
        with Operator(url, me) as operator:
            return act(operator)
    except TearlineError as exc:
        # Said as the partner commands say it, without their hint about a partner's keys.
        raise fail(describe(exc, url), 1) from None


def _letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as the broker's API spells it."""
    gap = {"lost": letter.lost, "before": letter.before} if letter.kind == "gap" else None
    return {
        "id": letter.id,
        "entry_id": letter.entry_id,
        "kind": letter.kind,
        "report_id": letter.report_id,
        "originator": letter.originator,
        "reason": letter.reason,
        "dead_at": format_time(letter.dead_at),
        "gap": gap,
    }


def _what(letter: DeadLetter) -> str:
    if letter.kind == "gap":
        return f"gap notice: {letter.lost} entries lost before {letter.before}"
    if letter.kind == "recall":
        return f"recall of {letter.report_id}"
    return letter.report_id


@dead_letters_app.command("list")
def list_dead_letters(
    partner: Annotated[str, typer.Option("--partner", help="The partner whose dead letters.")],
    after: Annotated[str | None, typer.Option(help="Start after this dead letter id.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, metavar="<n>", help="At most this many.")
    ] = 100,
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
    as_json: JsonOption = False,
) -> None:
    """List PARTNER's dead letters, oldest first, with why each was set aside."""
    _check_ids(partner, after)
    page = _as_operator(
        broker, identity, lambda op: op.dead_letters(partner, after=after, limit=limit)
    )
    if as_json:
        out = {
            "partner": page.partner,
            "dead_letters": [_letter_json(d) for d in page.dead_letters],
            "next": page.next,
        }
        echo_json(out)
        return
    from rich.table import Table
    from rich.text import Text

    console = make_console()
    if not page.dead_letters:
        since = f" after {after}" if after else ""
        console.print(Text(f"{page.partner} has no dead letters{since}"))
        return
    table = Table(title=Text(f"dead letters of {page.partner}"))
    for column in ("id", "dead at", "from", "report", "reason"):
        table.add_column(column, overflow="fold")
    for d in page.dead_letters:
        # Text, not str: a reason or an id is data, never rich markup.
        table.add_row(
            *(Text(v) for v in (d.id, format_time(d.dead_at), d.originator, _what(d), d.reason))
        )
    console.print(table)
    if page.next is not None:
        console.print(Text(f"more: --after {page.next}"))


def _print_detail(detail: DeadLetterDetail) -> None:
    from rich.table import Table
    from rich.text import Text

    d = detail.dead_letter
    rows: list[tuple[str, str]] = [
        ("dead letter", f"{d.id} of {detail.partner}"),
        ("was entry", f"{d.entry_id} ({d.kind})"),
        ("report", _what(d)),
        ("from", d.originator),
        ("dead at", format_time(d.dead_at)),
        ("reason", d.reason),
    ]
    held = detail.report
    if held is not None and not held.exists:
        rows.append(("held", "no: the report outlived retention; a replay would be withheld"))
    elif held is not None:
        rows += [
            ("held", f"{held.envelope_bytes} bytes, sha256 {held.envelope_sha256}"),
            ("suite", str(held.suite)),
            ("recalled", "yes" if held.recalled else "no"),
            ("label", json.dumps(held.label, separators=(", ", ": "))),
        ]
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(Text(name), Text(value))
    make_console().print(table)


@dead_letters_app.command("show")
def show(
    partner: PartnerArgument,
    dead_id: DeadIdArgument,
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
    as_json: JsonOption = False,
) -> None:
    """Show one dead letter and what the broker holds of its report (never its content)."""
    _check_ids(partner, dead_id)
    detail = _as_operator(broker, identity, lambda op: op.dead_letter(partner, dead_id))
    if as_json:
        held = detail.report
        report = None
        if held is not None:
            report = {
                "exists": held.exists,
                "originator": held.originator,
                "label": held.label,
                "suite": held.suite,
                "recalled": held.recalled,
                "envelope_bytes": held.envelope_bytes,
                "envelope_sha256": held.envelope_sha256,
            }
        out = {
            "partner": detail.partner,
            "dead_letter": _letter_json(detail.dead_letter),
            "report": report,
        }
        echo_json(out)
        return
    _print_detail(detail)


@dead_letters_app.command("replay")
def replay(
    partner: PartnerArgument,
    dead_id: DeadIdArgument,
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
    as_json: JsonOption = False,
) -> None:
    """Put a dead letter back in PARTNER's inbox as a new entry; audited with your operator id.

    Fix the cause first: delivery re-checks the policy, and a poison entry dead-letters again."""
    _check_ids(partner, dead_id)
    done = _as_operator(broker, identity, lambda op: op.replay(partner, dead_id))
    if as_json:
        out = {"partner": done.partner, "dead_letter": done.dead_letter, "entry_id": done.entry_id}
        echo_json(out)
        return
    typer.echo(
        f"replayed {done.dead_letter}: back in {done.partner}'s inbox as entry {done.entry_id}"
    )
