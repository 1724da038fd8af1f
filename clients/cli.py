"""The ``tearline`` command. Partner commands live here; operator commands plug in from
``broker.cli`` through the ``tearline.commands`` entry point, so the SDK never imports the broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final, NoReturn

import typer

# Only what `--help` needs is imported here: typer, the error tree and the modules that declare
# commands. What a command does (the SDK and its HTTP stack, the STIX validator, rich) is
# imported in the command, so `tearline --help` stays fast (tests/unit/test_cli_imports.py).
from tearline.clients import governance_publish  # noqa: F401 - adds `registry|agreement publish`
from tearline.clients.errors import (
    AuthenticationError,
    IdentityError,
    InputError,
    RateLimitedError,
    StixError,
    TearlineError,
    TransportError,
    UnavailableError,
)
from tearline.clients.governance_cli import agreement_app, governance_app, registry_app
from tearline.clients.help_format import Group
from tearline.clients.operator_cli import dead_letters_app
from tearline.clients.protocol.encoding import (
    STIX_CONTENT_TYPE,
    EncodingError,
    compact_json,
    format_time,
    strict_loads,
)
from tearline.clients.terminal import (
    LABEL_HELP,
    broker_url_problem,
    console,
    reason_text,
    unreachable,
)
from tearline.clients.transparency_cli import keys_app, log_app

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from tearline.clients.inbox_folder import InboxFolder, Written
    from tearline.clients.keyfile import Identity
    from tearline.clients.partner import Delivery, Gap, Recall, Report
    from tearline.clients.protocol.label import Label
    from tearline.clients.protocol.receipt import Receipt

# The SDK's logger: subscribe shows its lines on stderr, and logs its own failed acks there.
log = logging.getLogger("tearline.client")

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
app.add_typer(dead_letters_app, name="dead-letters")  # operators; needs only the SDK
# Offline governance tools: files only, so they run on an air-gapped machine too.
app.add_typer(governance_app, name="governance")
app.add_typer(registry_app, name="registry")
app.add_typer(agreement_app, name="agreement")
# A node watching the broker's transparency log.
app.add_typer(log_app, name="log")
app.add_typer(keys_app, name="keys")


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
    from tearline.clients.keyfile import generate, write_keypair
    from tearline.clients.protocol.identity import check_suite

    try:
        now = datetime.now(UTC).replace(microsecond=0)
        identity = generate(partner, check_suite(suite), now, timedelta(days=valid_days))
        private_path, public_path = write_keypair(identity, out, name)
    except TearlineError as exc:
        raise fail(exc.message, 2) from None
    typer.echo(f"wrote {private_path} (private: keep it on this node, mode 0600)")
    typer.echo(
        f"wrote {public_path} (public: give it to the broker operator, who adds it with "
        f"`tearline partner add {public_path} --policies POLICY-FOLDER`)"
    )


BrokerOption = Annotated[
    str, typer.Option("--broker", envvar="TEARLINE_BROKER", help="The broker's base URL.")
]
IdentityOption = Annotated[
    Path, typer.Option("--identity", envvar="TEARLINE_IDENTITY", help="This node's identity file.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
RootOption = Annotated[
    str | None,
    typer.Option(
        "--root",
        envvar="TEARLINE_ROOT",
        help="The governance root this node pins: its file (policies/governance/root-1.json as "
        "the partners signed it), or sha256:<hex> of it. The broker's documents and log are then "
        "checked against it, and only keys and agreements they vouch for are used.",
    ),
]
MemoryOption = Annotated[
    Path | None,
    typer.Option(
        "--memory",
        envvar="TEARLINE_GOVERNANCE_MEMORY",
        help="With --root: the file where this node keeps the last log head and registry "
        "version it accepted (a rollback or a forked log is then refused).",
    ),
]


def _pin(root: str | None) -> bytes | str | None:
    """--root as verify_governance takes it: a digest as given, a file as its bytes."""
    if root is None or root.startswith("sha256:"):
        return root
    try:
        return Path(root).read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the pinned root {root} (--root): {exc.strerror}", 2) from None


def _broker(url: str) -> str:
    problem = broker_url_problem(url)
    if problem is not None:
        raise fail(problem, 2)
    return url.strip()


def _identity(path: Path) -> Identity:
    """This node's identity, or a usage error that says which file to give instead."""
    from tearline.clients.keyfile import Identity

    try:
        return Identity.load(path)
    except IdentityError as exc:
        hint = ""
        if not path.exists():
            hint = (
                "; pass --identity FILE or set TEARLINE_IDENTITY to this node's ID.identity.json "
                "(tearline keygen, or tearline init, writes one)"
            )
        raise fail(f"{exc.message}{hint}", 2) from None


def _read_payload(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the payload {path}: {exc.strerror}", 2) from None


def _read_label(path: Path) -> Label:
    from tearline.clients.protocol.label import Label

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the label file {path} (--label): {exc.strerror}", 2) from None
    try:
        return Label.from_dict(strict_loads(data))
    except EncodingError as exc:
        raise fail(f"label file {path}: {exc}", 2) from None
    except TearlineError as exc:
        raise fail(f"label file {path}: {exc.message}", 2) from None


@app.command()
def publish(
    payload: Annotated[Path, typer.Argument(help="The report: a STIX 2.1 bundle or any file.")],
    label: Annotated[Path, typer.Option(help=LABEL_HELP)],
    broker: BrokerOption = "http://127.0.0.1:8000",
    identity: IdentityOption = Path("identity.json"),
    suite: Annotated[str, typer.Option(help="classic or pq-hybrid.")] = "classic",
    content_type: Annotated[str, typer.Option()] = STIX_CONTENT_TYPE,
    only: Annotated[list[str] | None, typer.Option(help="Share with only these partners.")] = None,
    require_all: Annotated[
        bool,
        typer.Option(
            "--require-all",
            help="Send nothing unless every partner named in REL TO (groups expanded) is "
            "entitled to it.",
        ),
    ] = False,
    from_misp: Annotated[
        bool,
        typer.Option(
            "--from-misp",
            help="PAYLOAD is a MISP event (JSON, as MISP exports it): send it as a STIX 2.1 "
            "bundle, converted with misp-stix; its tlp:* tags must be no more restrictive "
            "than the label's TLP.",
        ),
    ] = False,
    unsafe_skip_stix_checks: Annotated[
        bool,
        typer.Option(
            "--unsafe-skip-stix-checks",
            help="Send a STIX payload without checking that it is valid STIX 2.1 and marked no "
            "more restrictively than the label's TLP.",
        ),
    ] = False,
    root: RootOption = None,
    memory: MemoryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Seal PAYLOAD for every partner entitled to LABEL, post it, print the broker's receipt.

    Each partner named in REL TO (groups expanded) that does not get it is listed with the
    reason, like "not sent to DEU: NO_AGREEMENT"; --require-all sends nothing in that case.
    A STIX payload (the default content type) is checked first: one that is not valid STIX 2.1,
    or holds objects marked more restrictively than the label's TLP, is not sent."""
    from tearline.clients.protocol.envelope import seal
    from tearline.clients.stix.check import check_bundle, is_stix_content_type
    from tearline.clients.sync import Partner

    url = _broker(broker)
    me = _identity(identity)
    body = _read_payload(payload)
    parsed = _read_label(label)
    if from_misp and unsafe_skip_stix_checks:
        raise fail(
            "--from-misp always checks the bundle it makes; drop --unsafe-skip-stix-checks", 2
        )
    try:
        if from_misp:
            from tearline.clients.stix.misp import bundle_from_misp

            body = compact_json(bundle_from_misp(body, parsed))
            content_type = STIX_CONTENT_TYPE
        elif not unsafe_skip_stix_checks and is_stix_content_type(content_type):
            check_bundle(body, parsed)
    except StixError as exc:
        _refuse_stix(exc, payload, as_json, from_misp)
    pin = _pin(root)
    try:
        with Partner(url, me) as node:
            if pin:  # from then on the node decides who is entitled, not the broker
                node.verify_governance(pin, memory=memory)
            decisions = node.releasability(parsed, suite=suite)
            scheme = node.scheme() or node.directory().scheme
            rel_to = sorted(scheme.expand(parsed.releasable_to) - {me.partner})
            wanted = set(only) if only is not None else None
            refused: dict[str, str] = {}
            for pid in rel_to:
                decision = decisions.get(pid)
                if decision is None:  # REL TO may name an id the registry does not hold
                    refused[pid] = "UNKNOWN_PARTNER"
                elif not decision.granted:
                    refused[pid] = decision.reason or "DENIED"
            recipients = [
                (pid, d.keys[0])
                for pid, d in sorted(decisions.items())
                if d.granted and d.keys and (wanted is None or pid in wanted)
            ]
            left_out = {
                pid: "EXCLUDED_BY_ONLY"
                for pid in rel_to
                if pid not in refused and wanted is not None and pid not in wanted
            }
            not_sent = dict(sorted({**refused, **left_out}.items()))
            why = _why_not(not_sent, me.partner, parsed, suite)
            if require_all and refused:
                _refuse_to_send(
                    "--require-all, and not every partner named in REL TO is entitled",
                    "require_all", not_sent, why, as_json,
                )  # fmt: skip
            if not recipients:
                _refuse_to_send(
                    "no partner named in REL TO is entitled to a report with this label"
                    if wanted is None
                    else f"none of --only {', '.join(sorted(wanted))} is entitled to it",
                    "no_recipients", not_sent, why, as_json,
                )  # fmt: skip
            # Sealed from the preview just shown, not from a second one: what is said here
            # is what was sent (the broker checks it again, and refuses the whole report if
            # the policy changed meanwhile).
            envelope = seal(
                body,
                parsed,
                recipients,
                me,
                now=datetime.now(UTC),
                suite=suite,
                content_type=content_type,
            )
            receipt = node.post_envelope(envelope)
    except TearlineError as exc:
        raise fail(_describe(exc, url, me.partner)) from None
    _print_receipt(receipt, not_sent, why, as_json)


def _why_not(not_sent: dict[str, str], me: str, label: Label, suite: str) -> dict[str, str]:
    return {
        pid: reason_text(
            code, partner=pid, originator=me, classification=label.classification, suite=suite
        )
        for pid, code in not_sent.items()
    }


def _refuse_to_send(
    message: str, code: str, not_sent: dict[str, str], why: dict[str, str], as_json: bool
) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"posted": False, "refused": code, "not_sent": not_sent}))
    lines = "".join(f"\n  not sent to {pid}: {c} ({why[pid]})" for pid, c in not_sent.items())
    raise fail(f"nothing sent: {message}{lines}")


def _refuse_stix(exc: StixError, payload: Path, as_json: bool, from_misp: bool) -> NoReturn:
    """Nothing was sent: say why, each finding (or object marked above the label) on a line."""
    details = exc.details if isinstance(exc.details, dict) else {}
    if as_json:
        typer.echo(json.dumps({"posted": False, "refused": exc.code, "details": details}))
    lines = [str(f) for f in details.get("findings", [])]
    lines += [f"{o['id']}: marked {o['marking']}" for o in details.get("objects", [])]
    count = int(details.get("count", len(lines)))
    said = exc.message
    if len(lines) == 1 and "findings" in details:
        lines = []  # the one finding is in the message already
    elif "findings" in details:
        said = f"the payload is not a valid STIX 2.1 bundle: {count} findings"
    more = f"\n  … and {count - len(lines)} more" if lines and count > len(lines) else ""
    listed = "".join(f"\n  {line}" for line in lines)
    hint = (
        ""
        if exc.code != "invalid_stix" or from_misp
        else "\n(--content-type for a payload that is not STIX; --unsafe-skip-stix-checks to "
        "send it unchecked)"
    )
    raise fail(f"nothing sent: {payload}: {said} ({exc.code}){listed}{more}{hint}")


def _print_receipt(
    receipt: Receipt, not_sent: dict[str, str], why: dict[str, str], as_json: bool
) -> None:
    if as_json:
        typer.echo(json.dumps({**receipt.to_dict(), "not_sent": not_sent}))
        return
    from rich.text import Text

    out = console()
    out.print(Text(f"report {receipt.id} accepted at {receipt.accepted_at}"))
    for r in receipt.recipients:
        out.print(Text(f"  → {r.partner} under {r.agreement} (entry {r.position})"))
    for pid, code in not_sent.items():
        out.print(Text(f"  not sent to {pid}: {code} ({why[pid]})", style="yellow"))


@app.command()
def subscribe(
    broker: BrokerOption = "http://127.0.0.1:8000",
    identity: IdentityOption = Path("identity.json"),
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write each payload to OUT/<id>.json (or .bin) and its label, originator and "
            "TLP to OUT/<id>.label.json, mode 0600; the folder is made mode 0700."
        ),
    ] = None,
    allow_world_readable: Annotated[
        bool,
        typer.Option(
            "--allow-world-readable",
            help="Write into an --out folder that other users can list or enter.",
        ),
    ] = False,
    stamp_markings: Annotated[
        bool,
        typer.Option(
            "--stamp-markings",
            help="Write each STIX bundle with every object marked with the report's label: "
            "its TLP 2.0 marking and the Tearline releasability marking "
            "(docs/stix-releasability.md).",
        ),
    ] = False,
    once: Annotated[bool, typer.Option(help="One long poll, then exit.")] = False,
    wait: Annotated[float, typer.Option(help="With --once: seconds to wait.")] = 5.0,
    consumer: Annotated[str, typer.Option(help="Subscriber session name.")] = "default",
    root: RootOption = None,
    memory: MemoryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Receive reports: verified, decrypted, written out, then acknowledged.

    Without --once it runs until Ctrl-C or SIGTERM, reconnecting on its own when the broker
    restarts or its store is away; each outage is logged on stderr when it begins and ends."""
    from tearline.clients.inbox_folder import InboxFolder
    from tearline.clients.partner import Gap, Recall
    from tearline.clients.sync import Partner

    url = _broker(broker)
    me = _identity(identity)
    folder = None
    if out is not None:
        folder = InboxFolder(out, allow_world_readable=allow_world_readable)
        try:
            folder.prepare()  # before connecting: a folder it cannot use is a usage error
        except InputError as exc:
            raise fail(exc.message, 2) from None
    with _client_log_on_stderr(), _sigterm_interrupts(), _stdout_closed_stops():
        try:
            with Partner(url, me) as node:
                pin = _pin(root)
                if pin:  # originators' keys then come from the documents, not the broker
                    node.verify_governance(pin, memory=memory)
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
                        if folder is not None:
                            _remove(folder, item.id)
                        _print_recall(item, as_json)
                    else:
                        if stamp_markings:
                            item = _stamped(item)
                        files = _write(folder, item) if folder is not None else None
                        _print_report(item, as_json, files)
                    _acknowledge(item)  # only once it is written and shown
        except TearlineError as exc:
            raise fail(_describe(exc, url, me.partner)) from None
        except KeyboardInterrupt:
            pass  # Ctrl-C or SIGTERM: the subscription closed its connection on the way out


def _stamped(report: Report) -> Report:
    """The report with its STIX bundle stamped with its label; a payload that is not a STIX
    bundle is kept as it came, with a line on stderr."""
    from tearline.clients.stix.check import is_stix_content_type

    if not is_stix_content_type(report.content_type):
        return report
    try:
        bundle = report.stix(stamped=True)
    except StixError as exc:
        log.warning("report %s not stamped: %s", report.id, exc.message)
        return report
    return dataclasses.replace(report, payload=compact_json(bundle))


def _write(folder: InboxFolder, report: Report) -> Written:
    try:
        return folder.write(report, datetime.now(UTC))
    except OSError as exc:
        # Not acknowledged: the broker delivers it again once the folder is fixed.
        raise fail(
            f"cannot write report {report.id} to {folder.path}: {exc.strerror}; it was not "
            "acknowledged and will be delivered again"
        ) from None


def _remove(folder: InboxFolder, report_id: str) -> None:
    try:
        folder.remove(report_id)
    except OSError as exc:
        raise fail(
            f"report {report_id} was recalled but cannot be deleted from {folder.path}: "
            f"{exc.strerror}; delete it by hand"
        ) from None


@contextlib.contextmanager
def _stdout_closed_stops() -> Iterator[None]:
    """When whatever reads the output goes away (``tearline subscribe | head -1``), stop with
    one line on stderr instead of a traceback. The report whose line could not be written was
    not acknowledged: the broker delivers it again."""
    try:
        yield
    except BrokenPipeError:
        # Nothing more can be written there, and Python would complain when it flushes stdout
        # at exit: point it at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        with contextlib.suppress(OSError):
            typer.echo(
                "stopped: the output was closed (broken pipe); reports not yet shown were not "
                "acknowledged and will be delivered again",
                err=True,
            )
        raise typer.Exit(1) from None


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
    from tearline.clients.sync import Partner

    url = _broker(broker)
    me = _identity(identity)
    try:
        with Partner(url, me) as node:
            outcome = node.recall(report_id)
    except TearlineError as exc:
        raise fail(_describe(exc, url, me.partner)) from None
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
    from rich.text import Text

    console().print(
        Text("gap", style="bold yellow"),
        Text(
            f": retention dropped {gap.lost} entries before {gap.before} "
            "that this node never acknowledged"
        ),
        sep="",
    )


def _print_recall(recall: Recall, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"recalled": recall.id, "originator": recall.originator}))
        return
    from rich.text import Text

    console().print(
        Text("recalled", style="bold red"),
        Text(f" {recall.id} by {recall.originator}: delete it"),
        sep="",
    )


def _print_report(report: Report, as_json: bool, files: Written | None = None) -> None:
    if as_json:
        summary = {
            "id": report.id,
            "originator": report.originator,
            "created": format_time(report.created),
            "label": report.label.to_dict(),
            "content_type": report.content_type,
            "bytes": len(report.payload),
        }
        if files is not None:
            summary |= {"file": str(files.payload), "label_file": str(files.label)}
        typer.echo(json.dumps(summary))
        return
    from rich.text import Text

    label = report.label
    line = Text(report.id, style="bold")
    line.append(
        f" from {report.originator}: {label.classification} TLP:{label.tlp} "
        f"REL TO {', '.join(label.releasable_to)}, {len(report.payload)} bytes"
    )
    if files is not None:
        line.append(f" → {files.payload}")
    console().print(line)


def _describe(exc: TearlineError, broker: str | None = None, me: str | None = None) -> str:
    """An error as one message that says what to do: the broker's URL when it cannot be
    reached, which key to register when the broker does not know this node's signature."""
    if isinstance(exc, TransportError) and not isinstance(exc, UnavailableError) and broker:
        return unreachable(broker, exc)
    details = f" {json.dumps(exc.details)}" if exc.details else ""
    said = f"{exc.message} ({exc.code}){details}"
    if isinstance(exc, UnavailableError):
        return f"{said}; the broker at {broker} is not ready, try again shortly"
    if isinstance(exc, AuthenticationError) and exc.code in ("unknown_key", "signature_invalid"):
        who = me or "ID"
        return (
            f"{said}. The broker does not hold this identity's public keys: {who}'s entry in "
            f"its partners.yaml is missing or holds other keys (a fresh keygen for an id "
            f"already registered; the example policies/, whose private keys nobody has). An "
            f"operator registers {who}.public.yaml with `tearline partner add` (--replace for "
            f"new keys); `tearline init` makes a policy folder with identities to match"
        )
    return said


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
    from importlib.metadata import entry_points

    for entry in entry_points(group="tearline.commands"):
        _load_plugin(app, entry)
    app()
