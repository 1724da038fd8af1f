"""A partner node's commands: ``keygen``, ``publish``, ``subscribe`` and ``recall``.

They drive the SDK (``clients.sync.Partner``): ``publish`` asks it who the report goes to
(``release``), shows that and has it seal and post (``publish``); nothing here seals or decides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

# Only what `--help` needs is imported here: typer, the error tree and the shared options. What
# a command does (the SDK and its HTTP stack, the STIX validator, rich) is imported in the
# command, so `tearline --help` stays fast (tests/unit/test_cli_imports.py).
from tearline.clients.cli.common import (
    DEFAULT_BROKER,
    DEFAULT_IDENTITY,
    BrokerOption,
    IdentityOption,
    JsonOption,
    LabelOption,
    MemoryOption,
    RootOption,
    SuiteOption,
    broker_url,
    describe,
    echo_json,
    fail,
    load_identity,
    pinned_root,
    read_label,
)
from tearline.clients.errors import (
    InputError,
    RateLimitedError,
    StixError,
    TearlineError,
    TransportError,
)
from tearline.clients.protocol.encoding import STIX_CONTENT_TYPE, compact_json, format_time
from tearline.clients.terminal import console, reason_text

if TYPE_CHECKING:
    from tearline.clients.inbox_folder import InboxFolder, Written
    from tearline.clients.partner import Delivery, Gap, Recall, Release, Report
    from tearline.clients.protocol.receipt import Receipt

# The SDK's logger: subscribe shows its lines on stderr, and logs its own failed acks there.
log = logging.getLogger("tearline.client")


def keygen(
    partner: Annotated[str, typer.Option(help="Partner id, e.g. GBR or EE-CERT.")],
    out: Annotated[Path, typer.Option(help="Folder to write the two files into.")],
    suite: SuiteOption = "classic",
    name: Annotated[str | None, typer.Option(help="Display name for the registry.")] = None,
    valid_days: Annotated[
        int, typer.Option(min=1, metavar="<days>", help="Key validity in days.")
    ] = 730,
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


def _read_payload(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the payload {path}: {exc.strerror}", 2) from None


def publish(
    payload: Annotated[Path, typer.Argument(help="The report: a STIX 2.1 bundle or any file.")],
    label: LabelOption,
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
    suite: SuiteOption = "classic",
    content_type: Annotated[
        str,
        typer.Option(
            help="The payload's media type; a STIX 2.1 payload (this default) is checked "
            "before it is sealed."
        ),
    ] = STIX_CONTENT_TYPE,
    only: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<partner>",
            help="Share with this partner only, of those entitled; repeat for several.",
        ),
    ] = None,
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
    A STIX payload (the default content type) is checked before it is sealed: one that is not
    valid STIX 2.1, or holds objects marked more restrictively than the label's TLP, is not
    sent."""
    from tearline.clients.sync import Partner

    url = broker_url(broker)
    me = load_identity(identity)
    body = _read_payload(payload)
    parsed = read_label(label)
    if from_misp and unsafe_skip_stix_checks:
        raise fail(
            "--from-misp always checks the bundle it makes; drop --unsafe-skip-stix-checks", 2
        )
    if not (unsafe_skip_stix_checks or from_misp):
        _load_stix_validator(content_type)
    if from_misp:
        from tearline.clients.stix.misp import bundle_from_misp

        try:
            body = compact_json(bundle_from_misp(body, parsed))
        except StixError as exc:
            _refuse_stix(exc, payload, as_json, from_misp)
        content_type = STIX_CONTENT_TYPE
    pin = pinned_root(root)
    try:
        with Partner(url, me) as node:
            if pin:  # from then on the node decides who is entitled, not the broker
                node.verify_governance(pin, memory=memory)
            plan = node.release(parsed, suite=suite, only=only)
            why = _why_not(plan, me.partner)
            if require_all and plan.refused:
                _refuse_to_send(
                    "--require-all, and not every partner named in REL TO is entitled",
                    "require_all", plan, why, as_json,
                )  # fmt: skip
            if not plan.recipients:
                _refuse_to_send(
                    "no partner named in REL TO is entitled to a report with this label"
                    if only is None
                    else f"none of --only {', '.join(sorted(set(only)))} is entitled to it",
                    "no_recipients", plan, why, as_json,
                )  # fmt: skip
            # Sealed to the release just shown, not to a second one: what is said here is what
            # was sent (the broker checks it again, and refuses the whole report if the policy
            # changed meanwhile). The SDK checks a STIX payload first; bundle_from_misp has
            # checked the bundle it made, and the validator is not run on it twice.
            receipt = node.publish(
                body,
                parsed,
                suite=suite,
                content_type=content_type,
                unsafe_skip_stix_checks=unsafe_skip_stix_checks or from_misp,
                release=plan,
            )
    except StixError as exc:
        _refuse_stix(exc, payload, as_json, from_misp)
    except TearlineError as exc:
        raise fail(describe(exc, url, me.partner)) from None
    _print_receipt(receipt, plan, why, as_json)


def _load_stix_validator(content_type: str) -> None:
    """For a STIX payload, import the validator the SDK checks it with, holding back the
    ``requests`` it imports to fetch schemas by URL, which tearline never asks of it (see
    clients.cli.deferred). Without the validator installed, the SDK says so when it checks."""
    from tearline.clients import iri_grammar
    from tearline.clients.cli.deferred import held_back
    from tearline.clients.stix.check import is_stix_content_type

    if not is_stix_content_type(content_type):
        return
    iri_grammar.defer()  # before jsonschema, which the validator imports
    with held_back("requests"), contextlib.suppress(ImportError):
        import stix2validator  # noqa: F401


def _why_not(plan: Release, me: str) -> dict[str, str]:
    """Each partner left out, the reason code said as a sentence."""
    return {
        pid: reason_text(
            code,
            partner=pid,
            originator=me,
            classification=plan.label.classification,
            suite=plan.suite,
        )
        for pid, code in plan.not_sent.items()
    }


def _refuse_to_send(
    message: str, code: str, plan: Release, why: dict[str, str], as_json: bool
) -> NoReturn:
    not_sent = dict(plan.not_sent)
    if as_json:
        echo_json({"posted": False, "refused": code, "not_sent": not_sent})
    lines = "".join(f"\n  not sent to {pid}: {c} ({why[pid]})" for pid, c in not_sent.items())
    raise fail(f"nothing sent: {message}{lines}")


def _refuse_stix(exc: StixError, payload: Path, as_json: bool, from_misp: bool) -> NoReturn:
    """Nothing was sent: say why, each finding (or object marked above the label) on a line."""
    details = exc.details if isinstance(exc.details, dict) else {}
    if as_json:
        echo_json({"posted": False, "refused": exc.code, "details": details})
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


def _print_receipt(receipt: Receipt, plan: Release, why: dict[str, str], as_json: bool) -> None:
    if as_json:
        echo_json({**receipt.to_dict(), "not_sent": dict(plan.not_sent)})
        return
    # A few whole lines, one of them coloured: click's echo does it (colour only on a terminal)
    # without importing rich, a twentieth of the command's time.
    typer.echo(f"report {receipt.id} accepted at {receipt.accepted_at}")
    for r in receipt.recipients:
        typer.echo(f"  → {r.partner} under {r.agreement} (entry {r.position})")
    for pid, code in plan.not_sent.items():
        typer.secho(f"  not sent to {pid}: {code} ({why[pid]})", fg="yellow")


def subscribe(
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
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
    once: Annotated[bool, typer.Option("--once", help="One long poll, then exit.")] = False,
    wait: Annotated[
        float, typer.Option(metavar="<seconds>", help="With --once: how long to wait.")
    ] = 5.0,
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

    url = broker_url(broker)
    me = load_identity(identity)
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
                pin = pinned_root(root)
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
            raise fail(describe(exc, url, me.partner)) from None
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


def recall(
    report_id: Annotated[str, typer.Argument(help="The id of a report this node posted.")],
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
    as_json: JsonOption = False,
) -> None:
    """Recall a report: undelivered copies are withdrawn, recipients that had it are told."""
    from tearline.clients.sync import Partner

    url = broker_url(broker)
    me = load_identity(identity)
    try:
        with Partner(url, me) as node:
            outcome = node.recall(report_id)
    except TearlineError as exc:
        raise fail(describe(exc, url, me.partner)) from None
    if as_json:
        summary = {"report_id": outcome.report_id, "withdrawn": list(outcome.withdrawn),
                   "notified": list(outcome.notified)}  # fmt: skip
        echo_json(summary)
        return
    withdrawn = ", ".join(outcome.withdrawn) or "none"
    notified = ", ".join(outcome.notified) or "none"
    typer.echo(f"recalled {outcome.report_id}: withdrawn from {withdrawn}; notified {notified}")


def _print_gap(gap: Gap, as_json: bool) -> None:
    if as_json:
        echo_json({"gap": {"lost": gap.lost, "before": gap.before}})
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
        echo_json({"recalled": recall.id, "originator": recall.originator})
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
        echo_json(summary)
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
