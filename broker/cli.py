"""Operator commands of ``tearline``: ``init``, ``serve``, ``policy check`` and ``policy explain``,
``partner add``, ``audit verify``, ``demo``."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from tearline.broker import installed  # noqa: F401  (first: an SDK-only install stops here)

# What a command does (the policy loader and its yaml and jsonschema, the server, rich) is
# imported in the command: registering this plugin, and `tearline --help`, import none of it.
# The options, `fail` and the label reader every `tearline` command group shares.
from tearline.clients.cli.common import (
    DEFAULT_POLICIES,
    JsonOption,
    LabelOption,
    PoliciesOption,
    SuiteOption,
    echo_json,
    fail,
    read_label,
)
from tearline.clients.errors import TearlineError
from tearline.clients.help_format import group
from tearline.clients.protocol.encoding import EncodingError, format_time, parse_time
from tearline.clients.terminal import console

policy_app = group("Check and explain the policy folder.")

#: Where the broker keeps its key and its embedded Redis's data, for `serve` and `audit verify`.
DEFAULT_DATA_DIR = Path("data")
DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="TEARLINE_DATA_DIR",
        help="The broker's data folder: its key, and its embedded Redis's data in redis/.",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(policy_app, name="policy")
    app.add_typer(partner_app, name="partner")
    app.command("serve")(serve)
    app.command("demo")(demo)
    app.add_typer(audit_app, name="audit")


@policy_app.command("check")
def check(policies: PoliciesOption = DEFAULT_POLICIES) -> None:
    """Exit 0 when the policy folder is valid; otherwise list every problem (file:line, field),
    files the broker would not read included. On success, print the folder's fingerprint: a
    running broker shows the one in force in GET /v1/status."""
    from tearline.broker.policy.check import check_files
    from tearline.broker.policy.fingerprint import fingerprint
    from tearline.broker.policy.folder import read_policy_folder

    files = read_policy_folder(policies)
    policy, problems = check_files(files, now=datetime.now(UTC))
    if policy is None:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1)
    s = policy.summary()
    typer.echo(
        f"ok: scheme {s['policy']}, {s['partners']} partners, {s['agreements']} agreements, "
        f"{s['operators']} operators; fingerprint {fingerprint(files).digest}"
    )


@policy_app.command("explain")
def explain(
    originator: Annotated[str, typer.Option("--from", help="The originating partner id.")],
    label: LabelOption,
    policies: PoliciesOption = DEFAULT_POLICIES,
    suite: SuiteOption = "classic",
    at: Annotated[str | None, typer.Option(help="RFC 3339 time; default now.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show, for every partner, whether a report with LABEL from ORIGINATOR reaches it, and why.

    A table: the agreement the decision turns on and, for a refusal, the term that fails
    (ceiling, clearance, topic, caveat, suite). --json prints the decisions as one object, each
    partner's {"decision", "agreement"} or {"decision", "reason"}."""
    from rich.table import Table
    from rich.text import Text

    from tearline.broker.policy.load import check_policies
    from tearline.broker.policy.why import explain_all

    policy, problems = check_policies(policies)
    if policy is None:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1)
    try:
        now = parse_time(at) if at is not None else datetime.now(UTC)
    except EncodingError as exc:
        raise fail(f"--at: {exc}", 2) from None
    if originator not in policy.registry:
        raise fail(f"--from {originator}: not a partner in {policies}/partners.yaml", 2)
    parsed = read_label(label)
    try:
        decisions = policy.decide(parsed, originator, suite, now)
    except TearlineError as exc:  # a label the policy's scheme does not know
        raise fail(f"label file {label}: {exc.message}", 2) from None
    if as_json:
        echo_json(policy.explain(decisions), indent=2)
        return
    out = console()
    what = f"{parsed.classification} REL TO {', '.join(parsed.releasable_to)}"
    if parsed.caveats:
        what += f", caveats {', '.join(parsed.caveats)}"
    if parsed.topics:
        what += f", topics {', '.join(parsed.topics)}"
    out.print(
        Text(f"{originator} sends {what}, TLP:{parsed.tlp}; suite {suite}, at {format_time(now)}")
    )
    table = Table()
    for column in ("partner", "decision", "agreement", "why"):
        table.add_column(column)
    for line in explain_all(policy, parsed, originator, suite, now, decisions):
        d = line.decision
        if d.granted:
            decision, why = Text("grant", style="green"), Text(line.term)
        else:
            reason = d.reason.value if d.reason else ""
            decision = Text("deny", style="red")
            why = Text(f"{reason}: {line.term}" if line.term else reason)
        table.add_row(Text(line.partner), decision, Text(line.agreement or "-"), why)
    out.print(table)


# Long polls and SSE streams would hold a graceful shutdown open for as long as they last; they
# are cut after this instead, which is safe: unacknowledged entries are delivered again.
SHUTDOWN_GRACE_S = 5


def serve(
    policies: PoliciesOption = DEFAULT_POLICIES,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (env TEARLINE_HOST, default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, metavar="<port>", help="Port (env TEARLINE_PORT, default 8000)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="<n>", help="Worker processes (env TEARLINE_WORKERS, default 1)."
        ),
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
) -> None:
    """Serve the API. With no REDIS_URL, run an embedded redis-server (AOF on) in DATA_DIR/redis."""
    # Imported here: the server stack is not needed by `policy check` and the partner commands.
    import uvicorn
    from pydantic import ValidationError

    from tearline.broker.embedded import EmbeddedRedis
    from tearline.broker.observability import log_config
    from tearline.broker.policy.load import check_policies
    from tearline.broker.settings import get_settings

    given = {
        "policies_dir": policies,
        "host": host,
        "port": port,
        "workers": workers,
        "data_dir": data_dir,
    }
    try:
        settings = get_settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})"
            for e in exc.errors()
        ]
        raise fail(
            "invalid settings (options or TEARLINE_* variables):\n" + "\n".join(lines), 2
        ) from None

    if settings.host in ("0.0.0.0", "::") and not settings.public_url:  # noqa: S104
        # Listening on every interface, the broker cannot tell its own name from another's: a
        # signature made for another deployment must not replay here (RFC 9421 @target-uri).
        raise fail(
            f"--host {settings.host} needs TEARLINE_PUBLIC_URL: the URL partners use to reach "
            "this broker (several, comma-separated, if they use several names)",
            2,
        )
    policy, problems = check_policies(settings.policies_dir)
    if policy is None:
        for problem in problems:
            typer.echo(str(problem), err=True)
        raise fail(f"{settings.policies_dir}: the policy folder is invalid, not serving", 1)

    # Workers build their own Settings from the environment (uvicorn spawns them): hand them
    # the command line's values, with absolute paths so no worker depends on its cwd.
    os.environ.update(
        {
            "TEARLINE_POLICIES_DIR": str(settings.policies_dir.resolve()),
            "TEARLINE_DATA_DIR": str(settings.data_dir.resolve()),
            "TEARLINE_BROKER_KEY_PATH": str(settings.broker_key_path.resolve()),
            "TEARLINE_HOST": settings.host,
            "TEARLINE_PORT": str(settings.port),
            "TEARLINE_WORKERS": str(settings.workers),
        }
    )
    if settings.workers > 1:
        from tearline.broker.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir(settings.data_dir / "metrics")
    s = policy.summary()
    typer.echo(
        f"policy ok: scheme {s['policy']}, {s['partners']} partners, {s['agreements']} agreements",
        err=True,
    )

    # Before anything opens a file: the workers and the embedded Redis inherit the limit.
    from tearline.broker.admission import raise_open_files_limit

    soft, _hard = raise_open_files_limit()
    typer.echo(f"open files limit {soft}", err=True)
    with _stop_on_signals(), contextlib.ExitStack() as stack:
        if settings.metrics_port is not None:
            from tearline.broker.metrics import metrics_listener

            try:
                stack.enter_context(metrics_listener(settings.metrics_host, settings.metrics_port))
            except OSError as exc:
                where = f"{settings.metrics_host}:{settings.metrics_port}"
                raise fail(f"cannot listen for metrics on {where}: {exc}", 1) from None
            typer.echo(
                f"metrics for Prometheus on http://{settings.metrics_host}:"
                f"{settings.metrics_port}/metrics (unauthenticated: keep it from partners)",
                err=True,
            )
        if settings.redis_url is None:
            try:
                embedded = stack.enter_context(
                    EmbeddedRedis(
                        settings.data_dir / "redis",
                        appendfsync=settings.appendfsync,
                        maxmemory_bytes=settings.redis_maxmemory_bytes,
                    )
                )
            except TearlineError as exc:
                raise fail(exc.message, 1) from None
            # The plain name, and no TEARLINE_ one left to shadow it (an empty one would).
            os.environ.pop("TEARLINE_REDIS_URL", None)
            os.environ["REDIS_URL"] = embedded.url
            typer.echo(
                f"embedded redis-server (pid {embedded.pid}) at {embedded.url}, "
                f"AOF appendfsync {settings.appendfsync} in {embedded.data_dir}, maxmemory "
                f"{settings.redis_maxmemory_bytes} bytes (noeviction)",
                err=True,
            )
        uvicorn.run(
            "tearline.broker.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            timeout_keep_alive=int(settings.keep_alive_timeout_s),
            # httptools with bounds on slow and oversized request headers.
            http="tearline.broker.http_protocol:BoundedHttpToolsProtocol",
            # X-Forwarded-For only from the proxies the operator named (uvicorn would trust
            # 127.0.0.1 by default): the per-address budget must see the real client.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
            server_header=False,
            log_config=log_config(),
        )


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    # SIGTERM's default action kills the process on the spot, skipping every `finally`, and
    # uvicorn re-raises the signal it caught once it has shut down: turned into SystemExit, it
    # unwinds through the ExitStack above, so the embedded Redis is stopped, and stopped last.
    # A stop that was asked for (Ctrl-C, or SIGTERM from a service manager or `make`) is a
    # success: exit 0, so `make serve` does not report "Error 143" after a clean shutdown.
    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def demo(
    workdir: Annotated[
        Path | None, typer.Option(help="Keep keys, policies and data here (default: a temp dir).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Start a broker on an embedded Redis with five partner nodes and share one report:
    who receives it, who does not and why, and a sender refused for over-sharing."""
    from tearline.broker.demo import (
        run_demo,  # the demo pulls in the whole broker; load it on demand
    )

    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise fail(f"--workdir {workdir} is not empty; the demo makes its own keys there", 2)
    try:
        outcome = run_demo(workdir, os.environ.get("REDIS_URL") or None, as_json)
    except TearlineError as exc:
        raise fail(exc.message, 1) from None
    if as_json:
        echo_json(outcome, indent=2)


audit_app = group("Check the audit trail.")


@audit_app.command("verify")
def audit_verify(
    data_dir: DataDirOption = DEFAULT_DATA_DIR,
    broker_key: Annotated[
        str | None,
        typer.Option(help="The broker's public key (base64url), if not read from --data-dir."),
    ] = None,
) -> None:
    """Recompute the audit hash chain and check every signed checkpoint. Uses REDIS_URL, or
    starts a redis-server on DATA_DIR/redis (the broker may be down: this works offline)."""
    import redis as sync_redis

    from tearline.broker.audit import AuditError, verify_trail
    from tearline.broker.embedded import EmbeddedRedis
    from tearline.broker.keys import load
    from tearline.broker.store import AUDIT_KEY, CHECKPOINTS_KEY
    from tearline.clients.protocol.encoding import b64d

    try:
        public = b64d(broker_key) if broker_key else load(data_dir / "broker.identity.json").public
    except (EncodingError, TearlineError) as exc:
        raise fail(
            f"broker key: {exc}; give --data-dir the broker's data folder (where `tearline serve` "
            "keeps broker.identity.json), or --broker-key",
            2,
        ) from None
    url = os.environ.get("REDIS_URL")
    with contextlib.ExitStack() as stack:
        if not url:
            try:
                url = stack.enter_context(EmbeddedRedis(data_dir / "redis")).url
            except TearlineError as exc:
                raise fail(_embedded_refusal(exc, data_dir), 1) from None
        client: Any = sync_redis.Redis.from_url(url)  # replies are bytes; the stubs say unions

        def entries(key: str) -> Iterator[tuple[str, dict[str, str]]]:
            after = "-"
            while batch := client.xrange(key, min=after, max="+", count=1000):
                for entry_id, fields in batch:
                    yield entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()}
                after = "(" + batch[-1][0].decode()

        try:
            checkpoints = [fields for _, fields in entries(CHECKPOINTS_KEY)]
            result = verify_trail(entries(AUDIT_KEY), checkpoints, public)
        except AuditError as exc:
            raise fail(f"audit trail BROKEN: {exc.message}", 1) from None
        except sync_redis.RedisError as exc:
            raise fail(
                f"cannot read the audit trail from Redis at {url}: {str(exc).rstrip('.')}; is "
                "that the broker's "
                "Redis (REDIS_URL)?",
                1,
            ) from None
    typer.echo(
        f"ok: {result.entries} entries, {result.checkpoints} signed checkpoints; "
        f"{result.covered} entries covered, {result.entries - result.covered} after the last"
    )


def _embedded_refusal(exc: TearlineError, data_dir: Path) -> str:
    """Why no redis-server could be started on ``data_dir/redis``, and what to run instead."""
    from tearline.broker.embedded import running_url

    if exc.code != "redis_data_dir_in_use":
        return exc.message
    url = running_url(data_dir / "redis")
    how = (
        f"verify against it: REDIS_URL={url} tearline audit verify --data-dir {data_dir}"
        if url
        else "set REDIS_URL to the Redis URL `tearline serve` printed when it started"
    )
    return (
        f"a running broker's embedded redis-server holds {data_dir / 'redis'} (two servers on "
        f"one AOF would corrupt it); {how}, or stop the broker first"
    )


def init(
    folder: Annotated[Path, typer.Argument(help="A new or empty folder to write into.")],
    ungoverned: Annotated[
        bool,
        typer.Option(
            "--ungoverned",
            help="Write partners.yaml, scheme.yaml and agreements/ for the operator to edit, "
            "instead of documents the partners' governance keys signed.",
        ),
    ] = False,
) -> None:
    """Write a policy folder, its partners' identities and examples; print what to run next.

    FOLDER gets policies/ (four partners, an operator, three agreements: governed, signed by
    each partner's governance key under a root of threshold 1), keys/ (the identity file and
    governance key of each, mode 0600, and its public entry), label.json and bundle.json. The
    commands printed serve it, publish as one partner and receive as another."""
    from tearline.broker.init import init_world, next_steps

    try:
        world = init_world(folder, datetime.now(UTC), ungoverned=ungoverned)
    except TearlineError as exc:
        raise fail(exc.message, 2) from None
    except OSError as exc:
        raise fail(f"cannot write {exc.filename}: {exc.strerror}", 1) from None
    s = world.summary
    typer.echo(f"wrote a Tearline world in {world.root}:")
    typer.echo(
        f"  {world.policies}/  scheme {s['policy']}, {s['partners']} partners, "
        f"{s['agreements']} agreements, {s['operators']} operator"
    )
    typer.echo(
        f"  {world.keys}/  each one's ID.identity.json (private, mode 0600) and ID.public.yaml"
        + ("" if ungoverned else ", and each partner's ID.governance.json (private, mode 0600)")
    )
    if not ungoverned:
        typer.echo(
            f"  {world.policies}/governance/  root-1.json (threshold 1: raise it before real "
            "partners join), registry.json, the agreements, each signed by its holders"
        )
    typer.echo(f"  {world.label}  CONFIDENTIAL, REL TO USA, EST, DEU, topic ransomware, TLP:AMBER")
    typer.echo(f"  {world.bundle}  a STIX 2.1 bundle with one indicator")
    typer.echo("")
    typer.echo(next_steps(world))


partner_app = group("Add partners to the policy folder.")


@partner_app.command("add")
def partner_add(
    file: Annotated[
        Path, typer.Argument(help="The partner's ID.public.yaml, as `tearline keygen` wrote it.")
    ],
    policies: PoliciesOption = DEFAULT_POLICIES,
    replace: Annotated[
        bool, typer.Option("--replace", help="Update the entry of a partner already there.")
    ] = False,
) -> None:
    """Add a partner's ID.public.yaml to the registry, POLICIES/partners.yaml.

    The folder is checked as `tearline policy check` checks it before anything is written; the
    file is replaced in one rename, its comments kept. A running broker picks it up within
    TEARLINE_POLICY_POLL_S."""
    from tearline.broker.partners_file import PartnerFileError, add_partner, read_entry

    try:
        done = add_partner(policies, read_entry(file), replace=replace)
    except PartnerFileError as exc:
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise fail(exc.message, 1) from None
    except OSError as exc:
        raise fail(f"cannot write {exc.filename or policies}: {exc.strerror}", 1) from None
    verb = "replaced" if done.replaced else "added"
    typer.echo(
        f"{verb} {done.partner} in {done.path} ({done.partners} partners); "
        f"fingerprint {done.fingerprint}"
    )
    if done.agreements:
        typer.echo(f"{done.partner} is a party to: {', '.join(done.agreements)}")
    else:
        typer.echo(
            f"{done.partner} is in no agreement yet: to share with it, add it under "
            f"`parties:` in one of {policies}/agreements/*.yaml"
        )
