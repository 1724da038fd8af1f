"""The ``tearline`` command. Partner commands live here; operator commands plug in from
``broker.cli`` through the ``tearline.commands`` entry point, so the SDK never imports the broker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clients.errors import RateLimitedError, TearlineError, TransportError
from clients.keyfile import Identity, generate, write_keypair
from clients.operator_cli import dead_letters_app
from clients.partner import Delivery, Gap, Recall, Report
from clients.protocol.encoding import EncodingError, format_time, strict_loads
from clients.protocol.envelope import STIX_CONTENT_TYPE
from clients.protocol.identity import check_suite
from clients.protocol.label import Label
from clients.sync import Partner

# The SDK's logger: subscribe shows its lines on stderr, and logs its own failed acks there.
log = logging.getLogger("tearline.client")

app = typer.Typer(
    name="tearline",
    help="Share signed, end-to-end encrypted threat reports under partnership agreements.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(dead_letters_app, name="dead-letters")  # operators; needs only the SDK


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


BrokerOption = Annotated[
    str, typer.Option("--broker", envvar="TEARLINE_BROKER", help="The broker's base URL.")
]
IdentityOption = Annotated[
    Path, typer.Option("--identity", envvar="TEARLINE_IDENTITY", help="This node's identity file.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def publish(
    payload: Annotated[Path, typer.Argument(help="The report: a STIX 2.1 bundle or any file.")],
    label: Annotated[Path, typer.Option(help="A JSON file holding the security label (§3).")],
    broker: BrokerOption = "http://127.0.0.1:8000",
    identity: IdentityOption = Path("identity.json"),
    suite: Annotated[str, typer.Option(help="classic or pq-hybrid.")] = "classic",
    content_type: Annotated[str, typer.Option()] = STIX_CONTENT_TYPE,
    only: Annotated[list[str] | None, typer.Option(help="Share with only these partners.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Seal PAYLOAD for every partner entitled to LABEL, post it, print the broker's receipt."""
    try:
        me = Identity.load(identity)
        parsed = Label.from_dict(strict_loads(label.read_bytes()))
        with Partner(broker, me) as node:
            receipt = node.publish(
                payload.read_bytes(), parsed, suite=suite, content_type=content_type, only=only
            )
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}", 2) from None
    except EncodingError as exc:
        raise fail(f"{label}: {exc}", 2) from None
    except TearlineError as exc:
        raise fail(_describe(exc)) from None
    if as_json:
        typer.echo(json.dumps(receipt.to_dict()))
        return
    console = Console()
    console.print(f"report [bold]{receipt.id}[/] accepted at {receipt.accepted_at}")
    for r in receipt.recipients:
        console.print(f"  → {r.partner} under {r.agreement} (entry {r.position})")


@app.command()
def subscribe(
    broker: BrokerOption = "http://127.0.0.1:8000",
    identity: IdentityOption = Path("identity.json"),
    out: Annotated[Path | None, typer.Option(help="Write each payload to OUT/<id>.")] = None,
    once: Annotated[bool, typer.Option(help="One long poll, then exit.")] = False,
    wait: Annotated[float, typer.Option(help="With --once: seconds to wait.")] = 5.0,
    consumer: Annotated[str, typer.Option(help="Subscriber session name.")] = "default",
    as_json: JsonOption = False,
) -> None:
    """Receive reports: verified, decrypted, written out, then acknowledged.

    Without --once it runs until Ctrl-C or SIGTERM, reconnecting on its own when the broker
    restarts or its store is away; each outage is logged on stderr when it begins and ends."""
    with _client_log_on_stderr(), _sigterm_interrupts():
        try:
            me = Identity.load(identity)
            with Partner(broker, me) as node:
                reports = (
                    iter(node.inbox(wait_s=wait, consumer=consumer, limit=100))
                    if once
                    else node.subscribe(consumer=consumer)
                )
                for item in reports:
                    if isinstance(item, Gap):
                        _print_gap(item, as_json)
                    elif isinstance(item, Recall):
                        # The originator withdrew it: so does this node.
                        if out is not None:
                            (out / item.id).unlink(missing_ok=True)
                        _print_recall(item, as_json)
                    else:
                        if out is not None:
                            out.mkdir(parents=True, exist_ok=True)
                            (out / item.id).write_bytes(item.payload)
                        _print_report(item, as_json)
                    _acknowledge(item)
        except OSError as exc:
            raise fail(f"{exc.filename}: {exc.strerror}", 2) from None
        except TearlineError as exc:
            raise fail(_describe(exc)) from None
        except KeyboardInterrupt:
            pass  # Ctrl-C or SIGTERM: the subscription closed its connection on the way out


def _acknowledge(item: Delivery) -> None:
    """Acknowledge ``item``; if the broker is away just now, say so and carry on: the entry
    comes back after the visibility timeout, and the subscription acknowledges the copy."""
    try:
        item.ack()  # from the sync Partner: acknowledged on return, nothing to await
    except (TransportError, RateLimitedError) as exc:
        log.warning(
            "could not acknowledge entry %s (%s: %s); it will be redelivered and acknowledged then",
            item.entry_id,
            exc.code,
            exc.message,
        )


@contextlib.contextmanager
def _client_log_on_stderr() -> Iterator[None]:
    """The SDK's lines (reconnects, failed acks) on stderr, one plain line each, while a
    command runs; stdout stays the reports alone, so --json output can be piped."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # an embedding application's root handler would print it twice
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a service manager stopping the node) ends the command the way Ctrl-C does,
    with the same clean shutdown, instead of killing it mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers; leave SIGTERM as it is
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def recall(
    report_id: Annotated[str, typer.Argument(help="The id of a report this node posted.")],
    broker: BrokerOption = "http://127.0.0.1:8000",
    identity: IdentityOption = Path("identity.json"),
    as_json: JsonOption = False,
) -> None:
    """Recall a report: undelivered copies are withdrawn, recipients that had it are told."""
    try:
        with Partner(broker, Identity.load(identity)) as node:
            outcome = node.recall(report_id)
    except TearlineError as exc:
        raise fail(_describe(exc)) from None
    if as_json:
        summary = {"report_id": outcome.report_id, "withdrawn": list(outcome.withdrawn),
                   "notified": list(outcome.notified)}  # fmt: skip
        typer.echo(json.dumps(summary))
        return
    withdrawn = ", ".join(outcome.withdrawn) or "none"
    notified = ", ".join(outcome.notified) or "none"
    typer.echo(f"recalled {outcome.report_id}: withdrawn from {withdrawn}; notified {notified}")


def _print_gap(gap: Gap, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"gap": {"lost": gap.lost, "before": gap.before}}))
        return
    Console().print(
        f"[bold yellow]gap[/]: retention dropped {gap.lost} entries before {gap.before} "
        "that this node never acknowledged"
    )


def _print_recall(recall: Recall, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"recalled": recall.id, "originator": recall.originator}))
        return
    Console().print(f"[bold red]recalled[/] {recall.id} by {recall.originator}: delete it")


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        summary = {
            "id": report.id,
            "originator": report.originator,
            "created": format_time(report.created),
            "label": report.label.to_dict(),
            "content_type": report.content_type,
            "bytes": len(report.payload),
        }
        typer.echo(json.dumps(summary))
        return
    label = report.label
    Console().print(
        f"[bold]{report.id}[/] from {report.originator}: {label.classification} "
        f"TLP:{label.tlp} REL TO {', '.join(label.releasable_to)}, {len(report.payload)} bytes"
    )


def _describe(exc: TearlineError) -> str:
    details = f" {json.dumps(exc.details)}" if exc.details else ""
    return f"{exc.message} ({exc.code}){details}"


def main() -> None:
    for entry in entry_points(group="tearline.commands"):
        try:
            register = entry.load()
        except ImportError as exc:  # the broker extra is not installed: partner commands only
            print(f"note: operator commands unavailable ({exc.name} missing)", file=sys.stderr)
            continue
        register(app)
    app()
