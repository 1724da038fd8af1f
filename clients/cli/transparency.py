"""``tearline log head|compare`` and ``tearline keys monitor``: a node watching the broker's log.

``log head`` fetches the broker's signed tree head, checks its signature and that it extends
the last head this node accepted (kept in ``--memory``), and prints it: nodes that exchange
their heads (by mail, in a chat, on a wiki) and run ``log compare`` on them detect a broker
that shows them two different logs. ``keys monitor`` lists every key the log ever published
under a partner id, so a key its owner never made is noticed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# The SDK, its HTTP stack and the governance log are imported by the commands that use them:
# `tearline --help` imports this module for the commands' signatures alone.
from tearline.clients.cli.common import (
    DEFAULT_BROKER,
    DEFAULT_IDENTITY,
    BrokerOption,
    IdentityOption,
    JsonOption,
    MemoryOption,
    broker_url,
    describe,
    echo_json,
    fail,
    load_identity,
)
from tearline.clients.errors import TearlineError
from tearline.clients.help_format import group
from tearline.clients.protocol.encoding import format_time

if TYPE_CHECKING:
    from tearline.clients.keyfile import Identity
    from tearline.clients.protocol.identity import KeyRecord

log_app = group("The broker's transparency log (online).")
keys_app = group("Watch the keys published under a partner id.")


def _head_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read a tree head from {path}: {exc}", 2) from None


@log_app.command("head")
def head(
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
    memory: MemoryOption = None,
) -> None:
    """Print the broker's signed tree head (JSON) after checking its signature and, with
    --memory, that it extends the last head this node accepted."""
    from tearline.clients.sync import Partner

    url = broker_url(broker)
    me = load_identity(identity)
    try:
        with Partner(url, me) as node:
            signed = node.log_head(memory=memory)
    except TearlineError as exc:
        raise fail(describe(exc, url, me.partner), 1) from None
    echo_json(signed.raw, indent=2)


@log_app.command("compare")
def compare(
    mine: Annotated[Path, typer.Argument(help="A head this node got (log head's output).")],
    theirs: Annotated[Path, typer.Argument(help="A head another node got from the broker.")],
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
) -> None:
    """Exit 0 when both heads can be one log's (the smaller is a prefix of the larger, by the
    broker's consistency proof); exit 1, saying why, when the broker showed two logs."""
    from tearline.clients.governance.log import split_view, verify_tree_head
    from tearline.clients.sync import Partner

    url = broker_url(broker)
    me = load_identity(identity)
    try:
        with Partner(url, me) as node:
            directory = node.directory()
            a, b = (
                verify_tree_head(
                    _head_file(p), kid=directory.broker_kid, public=directory.broker_public
                )
                for p in (mine, theirs)
            )
            small, large = sorted((a, b), key=lambda h: h.tree_size)
            proof = None
            if 0 < small.tree_size < large.tree_size:
                proof = node.log_consistency(small.tree_size, large.tree_size)
    except TearlineError as exc:
        raise fail(describe(exc, url, me.partner), 1) from None
    why = split_view(a, b, proof if small.tree_size else [])
    if why is not None:
        raise fail(f"split view: {why}", 1)
    typer.echo(f"consistent: {small.tree_size} and {large.tree_size} entries, one log")


@keys_app.command("monitor")
def monitor(
    partner: Annotated[
        str | None, typer.Option(help="The partner id to watch (default: this node's).")
    ] = None,
    broker: BrokerOption = DEFAULT_BROKER,
    identity: IdentityOption = DEFAULT_IDENTITY,
    as_json: JsonOption = False,
) -> None:
    """List every key the log ever published under PARTNER, with the registry versions that
    held it. Watching its own id, a node flags (exit 1) each key its identity file lacks: a
    key it never made."""
    from tearline.clients.governance.documents import parse_envelope, parse_registry
    from tearline.clients.governance.log import parse_commitment
    from tearline.clients.sync import Partner

    url = broker_url(broker)
    me = load_identity(identity)
    who = partner or me.partner
    try:
        with Partner(url, me) as node:
            signed, leaves = node.log_entries()
    except TearlineError as exc:
        raise fail(describe(exc, url, me.partner), 1) from None
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for index, leaf in enumerate(leaves):
        if parse_commitment(leaf) is not None or parse_envelope(leaf).doc_type != "registry":
            continue  # an agreement is logged as a commitment to it
        version = parse_registry(leaf)
        for p in version.partners:
            if p.id != who:
                continue
            for key in p.keys:
                entry = seen.setdefault(
                    (key.kid, key.public.hex()),
                    {"kid": key.kid, "use": key.use, "alg": key.alg, "registry_versions": []},
                )
                entry["registry_versions"].append(version.version)
                entry["log_index"] = entry.get("log_index", index)
    mine = {(k.kid, k.public.hex()) for k in _public_keys(me)} if who == me.partner else None
    rows = []
    for ident, entry in sorted(seen.items(), key=lambda kv: kv[1]["log_index"]):
        entry["yours"] = None if mine is None else ident in mine
        rows.append(entry)
    strangers = [r for r in rows if r["yours"] is False]
    if as_json:
        echo_json({"partner": who, "tree_size": signed.tree_size, "keys": rows})
    else:
        typer.echo(
            f"{who}: {len(rows)} key(s) in {signed.tree_size} log entries "
            f"(head of {format_time(signed.timestamp)})"
        )
        for r in rows:
            flag = {None: "", True: "  yours", False: "  NOT IN YOUR IDENTITY FILE"}[r["yours"]]
            versions = ", ".join(map(str, r["registry_versions"]))
            typer.echo(f"  {r['kid']}  {r['use']}  {r['alg']}  registry {versions}{flag}")
    if strangers:
        kids = ", ".join(r["kid"] for r in strangers)
        raise fail(
            f"the log published key(s) under {who} that this node's identity does not hold: "
            f"{kids}; if {who} never made them, tell the registry's signers",
            1,
        )


def _public_keys(identity: Identity) -> list[KeyRecord]:
    from tearline.clients.protocol.identity import KeyRecord

    return [KeyRecord.from_dict(k) for k in identity.public_entry()["keys"]]
