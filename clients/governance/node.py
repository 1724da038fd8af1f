"""A partner node checking its broker: fetch the governance documents and the log, verify both.

The I/O edge of :mod:`clients.governance`: the checks are :class:`TrustedState`'s and
:mod:`clients.governance.log`'s; this module asks the broker, feeds them, and keeps what a node
must remember between runs in one file of its own (:class:`NodeMemory`): the last tree head it
accepted (a later head must extend it), the newest root it walked to, and the highest registry
version it trusted (an older one is a rollback however it is served).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tearline.clients.errors import TearlineError
from tearline.clients.governance.documents import (
    GovernanceError,
    parse_envelope,
    parse_registry,
    parse_root,
    parse_status,
)
from tearline.clients.governance.log import (
    LogError,
    SignedTreeHead,
    check_consistent,
    log_leaf,
    parse_commitment,
    verify_tree_head,
)
from tearline.clients.governance.merkle import root_hash
from tearline.clients.governance.trust import TrustedState
from tearline.clients.protocol.encoding import b64d, b64e

#: GET a broker path with query parameters; the JSON answer.
Fetch = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


@dataclass
class NodeMemory:
    """What a node keeps between runs, in ``path`` (JSON, written whole or not at all)."""

    path: Path | None = None
    head: dict[str, Any] | None = None
    root: bytes | None = None
    registry_version: int = 0

    @classmethod
    def load(cls, path: Path | None) -> NodeMemory:
        if path is None or not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            return cls(
                path,
                data.get("head"),
                b64d(data["root"]) if data.get("root") else None,
                int(data.get("registry_version", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GovernanceError(
                f"the node's governance memory {path} is unreadable ({exc}): restore it from a "
                "backup; deleting it forgets which log and registry versions were seen",
                code="bad_node_memory",
            ) from None

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "head": self.head,
            "root": b64e(self.root) if self.root else None,
            "registry_version": self.registry_version,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path)  # a crash leaves the old file or the new, never half


@dataclass(frozen=True)
class Verified:
    """The outcome of one check of the broker: what to trust, the head it was checked under,
    and each document that is not trusted, with why (an agreement not every party signed)."""

    trust: TrustedState
    head: SignedTreeHead
    not_trusted: Mapping[str, str]


def _path(proof: Mapping[str, Any]) -> list[bytes]:
    return [b64d(h) for h in proof["path"]]


async def checked_head(
    fetch: Fetch, memory: NodeMemory, *, kid: str, public: bytes, head_doc: Any = None
) -> SignedTreeHead:
    """The broker's current head, signature checked and consistent with the one in memory."""
    head = verify_tree_head(
        head_doc if head_doc is not None else await fetch("/v1/log/head", {}),
        kid=kid,
        public=public,
    )
    if memory.head is not None:
        old = (
            verify_tree_head(memory.head, kid=kid, public=public)
            if _same_log(memory.head, kid)
            else None
        )
        if old is None:
            raise LogError(
                "the broker's log is signed by another key than the log this node saw before: "
                "a new log cannot be checked against the old one",
                code="log_key_changed",
            )
        proof: list[bytes] = []
        if 0 < old.tree_size < head.tree_size:
            proof = _path(
                await fetch(
                    "/v1/log/proofs/consistency",
                    {"first": old.tree_size, "second": head.tree_size},
                )
            )
        check_consistent(old, head, proof)
    return head


def _same_log(head_doc: Mapping[str, Any], kid: str) -> bool:
    signed = head_doc.get("signed")
    return isinstance(signed, dict) and signed.get("log") == kid


def pinned(root: bytes | str, served: Sequence[tuple[str, bytes]]) -> bytes:
    """The root a node pinned: its bytes, or ``sha256:<hex>`` of them (short enough for a
    config file), then found among the documents the broker serves."""
    if isinstance(root, bytes):
        return root
    digest = root.removeprefix("sha256:").lower()
    if not root.startswith("sha256:") or len(digest) != 64:
        raise GovernanceError(
            f"a pinned root is its file's bytes or sha256:<64 hex digits>, not {root!r}",
            code="bad_pin",
        )
    for kind, data in served:
        if kind == "root" and hashlib.sha256(data).hexdigest() == digest:
            return data
    raise GovernanceError(
        f"the broker serves no root whose SHA-256 is {digest}: it is not the governance this "
        "node pinned (or the pin is wrong)",
        code="pinned_root_not_served",
    )


async def verify_broker(
    fetch: Fetch,
    pinned_root: bytes | str,
    memory: NodeMemory,
    *,
    kid: str,
    public: bytes,
    now: datetime,
) -> Verified:
    """Check everything the broker serves about governance against the pinned root and the
    whole log; on success remember the head, root and registry version (``memory.save()``).

    The log is read in full and must hash to the signed head, so what it holds cannot be hidden:
    every root in it is walked to, the newest registry version in it is the one trusted, and
    every status in it about an agreement this node verified is applied. What ``GET
    /v1/governance`` serves must agree: a newer root or registry, or a status that changes what
    is in force, that the log holds and the broker did not serve is an attack (the freeze of
    ``root_withheld`` / ``registry_withheld``, the ``status_withheld`` that would keep a
    suspended agreement sharing), and nothing is trusted."""
    served = await fetch("/v1/governance", {})
    head = await checked_head(fetch, memory, kid=kid, public=public, head_doc=served["head"])
    leaves = await all_entries(fetch, head)
    documents = _served(served, leaves)
    logged = _logged(leaves)

    start = memory.root or pinned(pinned_root, [*documents, *logged])
    trust = TrustedState(start, now)
    newest = memory.root
    for root, data in sorted(
        ((parse_root(d), d) for t, d in logged if t == "root"), key=lambda r: r[0].version
    ):
        if root.version > trust.root.version:
            trust.update_root(data, now)
            newest = data
    if newest is not None and ("root", newest) not in documents:
        raise GovernanceError(
            f"the broker's log holds root version {trust.root.version}, which it did not serve: "
            "it withholds the current governance keys",
            code="root_withheld",
        )
    trust.check_root_not_expired(now)

    registry = _newest_registry(
        [d for t, d in documents if t == "registry"], [d for t, d in logged if t == "registry"]
    )
    version = trust.update_registry(registry, now)
    if version.version < memory.registry_version:
        raise GovernanceError(
            f"registry version {version.version} is older than version "
            f"{memory.registry_version}, which this node trusted before: a rollback",
            code="registry_rollback",
        )
    not_trusted: dict[str, str] = {}
    for kind, data in documents:
        try:
            if kind == "agreement":
                trust.verify_agreement(data)
        except TearlineError as exc:
            not_trusted[f"agreement {_id_of(data)}"] = exc.message
    for kind, data in documents:
        try:
            if kind == "agreement-status":
                trust.apply_status(data)
        except TearlineError as exc:
            not_trusted[f"status of {_id_of(data)}"] = exc.message
    _check_no_status_withheld(trust, documents, logged)
    memory.head = head.raw
    memory.root = newest
    memory.registry_version = version.version
    memory.save()
    return Verified(trust, head, not_trusted)


def _served(served: Mapping[str, Any], leaves: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """Each document served, with its type, once checked to be what the log holds at the index
    the broker gave (the document itself, or for an agreement the leaf committing to it)."""
    out: list[tuple[str, bytes]] = []
    for entry in served["documents"]:
        data = b64d(entry["document"])
        index = entry["index"]
        if type(index) is not int or not 0 <= index < len(leaves):
            raise LogError(
                "a governance document came without an index in the log: it was never "
                "published to every node",
                code="not_in_log",
            )
        try:
            leaf = log_leaf(data)
        except TearlineError:
            leaf = None
        if leaf != leaves[index]:
            raise LogError(
                f"the governance document served as log entry {index} is not what the log "
                "holds there: it was never published to every node",
                code="not_in_log",
            )
        out.append((parse_envelope(data).doc_type, data))
    return out


def _logged(leaves: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """The documents the log holds whole (roots, registry versions, statuses), in log order.
    Agreements are there as commitments; anything else is skipped: only a signature makes a
    document count, and the checks that follow ask for one."""
    out: list[tuple[str, bytes]] = []
    for leaf in leaves:
        if parse_commitment(leaf) is not None:
            continue
        try:
            out.append((parse_envelope(leaf).doc_type, leaf))
        except TearlineError:
            continue
    return out


def _newest_registry(served: Sequence[bytes], logged: Sequence[bytes]) -> bytes:
    """The registry version to trust: the newest the log holds, which must be the one served."""
    if len(served) != 1:
        raise GovernanceError(
            f"the broker served {len(served)} registries; a governed broker serves one",
            code="no_registry",
        )
    newest = served[0]
    newest_version = parse_registry(newest).version
    for data in logged:
        version = parse_registry(data).version
        if version == newest_version and data != newest:
            raise GovernanceError(
                f"the log holds two different registry version {version} documents: one "
                "version was signed twice, or the broker changed one",
                code="registry_version_conflict",
            )
        if version > newest_version:
            newest, newest_version = data, version
    if newest != served[0]:
        raise GovernanceError(
            f"a freeze attack: the broker serves registry version "
            f"{parse_registry(served[0]).version} but its log holds version {newest_version}, "
            "which it withheld (a key or partner removed since would still be trusted); "
            "nothing is trusted until it serves the newest",
            code="registry_withheld",
        )
    return newest


def _check_no_status_withheld(
    trust: TrustedState, served: Sequence[tuple[str, bytes]], logged: Sequence[tuple[str, bytes]]
) -> None:
    """Every status the log holds about an agreement trusted here, applied after the served
    ones, must change nothing: one that does (a suspension or termination not served) was
    withheld to keep the agreement sharing."""
    served_bytes = {d for t, d in served if t == "agreement-status"}
    for kind, data in logged:
        if kind != "agreement-status" or data in served_bytes:
            continue
        try:
            aid = parse_status(data).agreement
        except TearlineError:
            continue
        if aid not in trust.signed_agreements:
            continue  # not an agreement of this node's: not its to check
        before = trust.status(aid)
        try:
            after = trust.apply_status(data)
        except TearlineError:
            continue  # not signed by a party: it changes nothing anywhere
        if after is not before:
            raise GovernanceError(
                f"the broker's log holds a signed {after.status} status of agreement {aid}, "
                "which it did not serve: it withholds a party's decision to stop sharing; "
                "nothing is trusted",
                code="status_withheld",
            )


def _id_of(data: bytes) -> str:
    try:
        agreement = json.loads(data)["signed"]["agreement"]  # an agreement's terms, or its id
        return str(agreement.get("id") if isinstance(agreement, dict) else agreement)
    except (ValueError, KeyError, TypeError, AttributeError):
        return "?"


async def all_entries(fetch: Fetch, head: SignedTreeHead) -> list[bytes]:
    """Every leaf of the log up to ``head``, checked: their root hash must be the head's."""
    leaves: list[bytes] = []
    while len(leaves) < head.tree_size:
        page = await fetch("/v1/log/entries", {"start": len(leaves)})
        got = [b64d(e) for e in page["entries"]]
        if not got:
            break
        leaves += got
    leaves = leaves[: head.tree_size]
    if len(leaves) != head.tree_size or root_hash(leaves) != head.root_hash:
        raise LogError(
            "the log's entries do not hash to its signed head: the broker serves other entries "
            "than it signed",
            code="log_entries_mismatch",
        )
    return leaves
