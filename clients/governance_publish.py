"""``tearline registry publish`` and ``tearline agreement publish``: signed documents into force.

What an operator runs to copy a document its signers finished into the broker's policy folder
(``policies/governance/``). It is checked first as the broker will check it: the root chain in
the folder, the threshold, no rollback against the registry there, every party's signature. A
document that would be refused is not copied, and the message says which signatures are
missing. The file is written aside and renamed into place, so the broker never reads half of it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tearline.clients.errors import TearlineError
from tearline.clients.governance_cli import _fail, _refusals, agreement_app, registry_app

if TYPE_CHECKING:
    from tearline.clients.governance.trust import TrustedState

PoliciesOption = Annotated[
    Path, typer.Option("--policies", help="The broker's policy folder (governed).")
]
DocArgument = Annotated[Path, typer.Argument(help="The signed document file.")]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}", 2) from None


def _trusted_folder(policies: Path, now: datetime) -> TrustedState:
    """The trust the folder's roots establish, walked from root-1.json up, as the broker does."""
    from tearline.clients.governance.trust import TrustedState

    folder = policies / "governance"
    roots = sorted(folder.glob("root-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not roots:
        raise _fail(
            f"{folder} holds no root-1.json: a governed folder starts with the root its key "
            "holders signed (`tearline governance root new`, then `root sign`)",
            2,
        )
    state = TrustedState(_read(roots[0]), now)
    for path in roots[1:]:
        state.update_root(_read(path), now)
    state.check_root_not_expired(now)
    return state


def _install(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


@registry_app.command("publish")
def registry_publish(document: DocArgument, policies: PoliciesOption = Path("policies")) -> None:
    """Check a registry version against the folder's roots and its registry (threshold,
    expiry, no rollback), then put it in force: policies/governance/registry.json."""
    from tearline.clients.governance import documents as gd

    now = datetime.now(UTC)
    data = _read(document)
    target = policies / "governance" / "registry.json"
    with _refusals():
        state = _trusted_folder(policies, now)
        if target.exists():
            old_data = _read(target)
            try:
                old = gd.parse_registry(old_data)
                # As it was judged while current: expired since says nothing about a rollback.
                state.update_registry(old_data, min(now, old.expires - timedelta(microseconds=1)))
            except TearlineError:
                pass  # the one in the folder is broken: the new one replaces it on its own merit
        new = state.update_registry(data, now)
    _install(target, data)
    typer.echo(f"published registry version {new.version} to {target}")


@agreement_app.command("publish")
def agreement_publish(document: DocArgument, policies: PoliciesOption = Path("policies")) -> None:
    """Check an agreement (every party signed it) or a suspension or termination (a party
    signed it) against the folder's roots, then put it in the folder."""
    from tearline.clients.governance import documents as gd

    now = datetime.now(UTC)
    data = _read(document)
    folder = policies / "governance"
    with _refusals():
        state = _trusted_folder(policies, now)
        kind = gd.parse_envelope(data).doc_type
        if kind == "agreement":
            signed = state.verify_agreement(data)
            target = folder / f"agreement-{signed.id}.json"
            what = f"agreement {signed.id}"
        elif kind == "agreement-status":
            status = gd.parse_status(data)
            agreement = folder / f"agreement-{status.agreement}.json"
            if not agreement.exists():
                raise _fail(f"{agreement} is not there: no agreement {status.agreement} to stop", 1)
            state.verify_agreement(_read(agreement))
            state.apply_status(data)
            target = folder / f"status-{status.agreement}.json"
            what = f"{status.status} of {status.agreement}"
        else:
            raise _fail(f"{document} is a {kind} document, not an agreement or its status", 2)
    _install(target, data)
    typer.echo(f"published {what} to {target}")
