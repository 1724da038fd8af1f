"""What every ``tearline`` command group shares: the one ``fail``, the options that mean the same
thing in every command that takes them, reading the files they name, and how an error is said.

The partner groups here and the plugins' groups (``broker.cli``, ``gateway.cli``) all take
their shared options from this module, so ``--root`` or ``--broker`` cannot drift into meaning
one thing in one command and another elsewhere. Only typer and the error tree are imported at
load: ``tearline --help`` imports this module for the options alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from tearline.clients.errors import (
    AuthenticationError,
    IdentityError,
    TearlineError,
    TransportError,
    UnavailableError,
)
from tearline.clients.protocol.encoding import EncodingError, strict_loads
from tearline.clients.terminal import broker_url_problem, unreachable

if TYPE_CHECKING:
    from tearline.clients.keyfile import Identity
    from tearline.clients.protocol.label import Label


def fail(message: str, exit_code: int = 1) -> typer.Exit:
    """``error: MESSAGE`` on stderr, and the exit to raise: 1 when the command was refused or
    failed, 2 for a usage error (an input that is not what the option asks for)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(exit_code)


# --- options that several groups take -----------------------------------------------------------

#: Where a broker listens when nothing says otherwise (``tearline serve``'s default).
DEFAULT_BROKER: Final = "http://127.0.0.1:8000"
#: The identity file a command signs with when neither --identity nor TEARLINE_IDENTITY is given.
DEFAULT_IDENTITY: Final = Path("identity.json")
#: The broker's policy folder when neither --policies nor TEARLINE_POLICIES_DIR is given.
DEFAULT_POLICIES: Final = Path("policies")

BrokerOption = Annotated[
    str, typer.Option("--broker", envvar="TEARLINE_BROKER", help="The broker's base URL.")
]
IdentityOption = Annotated[
    Path,
    typer.Option(
        "--identity",
        envvar="TEARLINE_IDENTITY",
        help="The identity file to sign with (ID.identity.json, as tearline keygen writes "
        "it); for dead-letters, an operator's.",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Machine-readable output: JSON on stdout.")
]
RootOption = Annotated[
    str | None,
    typer.Option(
        "--root",
        envvar="TEARLINE_ROOT",
        metavar="<path|sha256:hex>",
        help="The governance root you trust: its file (root-1.json as its key holders "
        "signed it), or sha256:<hex> of that file where the broker serves the document. "
        "Documents and the broker's log are checked against it; only keys and agreements it "
        "vouches for are used.",
    ),
]
MemoryOption = Annotated[
    Path | None,
    typer.Option(
        "--memory",
        envvar="TEARLINE_GOVERNANCE_MEMORY",
        help="The file where this node keeps the last log head (and, with --root, registry "
        "version) it accepted: a forked log or a rollback is then refused.",
    ),
]
PoliciesOption = Annotated[
    Path,
    typer.Option(
        "--policies",
        envvar="TEARLINE_POLICIES_DIR",
        help="The broker's policy folder: partners, scheme and agreements (their signed "
        "documents in governance/ when governed).",
    ),
]
LabelOption = Annotated[
    Path,
    typer.Option(
        "--label",
        help='A JSON file holding one label, like {"classification": "CONFIDENTIAL", '
        '"releasable_to": ["USA", "FVEY"], "tlp": "AMBER"}; optional: "topics", "caveats", '
        '"expires" (RFC 3339), "policy". `tearline init` writes an example.',
    ),
]
SuiteOption = Annotated[
    str,
    typer.Option(
        "--suite",
        metavar="<classic|pq-hybrid>",
        help="The cryptographic suite: classic, or pq-hybrid (post-quantum and classic keys).",
    ),
]


# --- what the shared options name -----------------------------------------------------------------


def broker_url(url: str) -> str:
    """``--broker`` checked before anything is sent: a usage error says how to write it."""
    problem = broker_url_problem(url)
    if problem is not None:
        raise fail(problem, 2)
    return url.strip()


def load_identity(path: Path) -> Identity:
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


def is_digest(root: str) -> bool:
    return root.startswith("sha256:")


def pinned_root(root: str | None) -> bytes | str | None:
    """``--root`` as a node pins it (``verify_governance``): a digest as given, a file as its
    bytes; None when no root is given."""
    if root is None or is_digest(root):
        return root
    return _root_bytes(root)


def root_document(root: str | None) -> bytes:
    """``--root`` for a command that checks documents itself, offline: the root's file, read.
    A digest names a root but holds none of its keys, so it is refused (a usage error)."""
    if root is None:
        raise fail("give --root (or TEARLINE_ROOT): the governance root file you trust", 2)
    if is_digest(root):
        raise fail(
            f"--root {root}: this command checks documents offline and needs the root's file "
            "itself (policies/governance/root-1.json as its key holders signed it); a digest "
            "names a root but does not hold its keys",
            2,
        )
    return _root_bytes(root)


def _root_bytes(root: str) -> bytes:
    try:
        return Path(root).read_bytes()
    except OSError as exc:
        raise fail(f"cannot read the governance root {root} (--root): {exc.strerror}", 2) from None


def read_label(path: Path) -> Label:
    """The label file ``--label`` names, parsed; a usage error names the file and the problem."""
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


# --- what a command says ------------------------------------------------------------------------


def echo_json(value: Any, *, indent: int | None = None) -> None:
    """One JSON value on stdout, the whole of a --json command's output (or one line of it)."""
    typer.echo(json.dumps(value, indent=indent))


#: The broker's codes for a signature by a key it does not hold.
_UNKNOWN_KEY: Final = ("unknown_key", "signature_invalid")


def describe(exc: TearlineError, broker: str | None = None, me: str | None = None) -> str:
    """An error as one message that says what to do: the broker's URL when it cannot be
    reached; with ``me`` (a partner's id), which key to register when the broker does not know
    this node's signature (an operator's key lives elsewhere: its message is left as it is)."""
    if isinstance(exc, TransportError) and not isinstance(exc, UnavailableError) and broker:
        return unreachable(broker, exc)
    details = f" {json.dumps(exc.details)}" if exc.details else ""
    said = f"{exc.message} ({exc.code}){details}"
    if isinstance(exc, UnavailableError):
        where = f"the broker at {broker}" if broker else "the broker"
        return f"{said}; {where} is not ready, try again shortly"
    if isinstance(exc, AuthenticationError) and me and exc.code in _UNKNOWN_KEY:
        return (
            f"{said}. The broker does not hold this identity's public keys: {me}'s entry in "
            f"its partners.yaml is missing or holds other keys (a fresh keygen for an id "
            f"already registered; the example policies/, whose private keys nobody has). An "
            f"operator registers {me}.public.yaml with `tearline partner add` (--replace for "
            f"new keys); `tearline init` makes a policy folder with identities to match"
        )
    return said
