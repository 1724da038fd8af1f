"""The broker's side of the transparency log: appending what it puts in force, signing heads.

The documents live in Redis (:meth:`broker.store.Store.log_append`), appended once each and
never removed, so every worker serves the same log. Each worker keeps them and their leaves in
memory and reads only the documents appended since it last looked; proofs are computed from the
leaves (:mod:`clients.governance.merkle`). A leaf is the document itself, or for an agreement a
commitment to it (:func:`clients.governance.log.log_leaf`), so the log can be served whole to
every partner while an agreement's terms go only to its parties. The log is small (a document
per registry version, agreement and status) and read rarely, so nothing cleverer is needed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tearline.broker.keys import BrokerKey
from tearline.broker.store import Store
from tearline.clients.errors import TearlineError
from tearline.clients.governance.log import log_leaf, sign_tree_head
from tearline.clients.governance.merkle import (
    TreeHead,
    consistency_proof,
    inclusion_proof,
    root_hash,
)


def _leaf(document: bytes) -> bytes:
    try:
        return log_leaf(document)
    except TearlineError:  # not a document the broker would append; hashed as it is
        return document


@dataclass
class TransparencyLog:
    #: The documents, in the order they were appended.
    documents: list[bytes] = field(default_factory=list)
    #: The leaf of each document: what the tree is hashed over and what partners are served.
    leaves: list[bytes] = field(default_factory=list)
    # One refresh at a time: two requests must not both append the same new leaves.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def refresh(self, store: Store) -> int:
        """Read the documents other workers appended; the log's size."""
        async with self.lock:
            new = await store.log_leaves(len(self.documents))
            self.documents += new
            self.leaves += [_leaf(d) for d in new]
            return len(self.leaves)

    def clear(self) -> None:
        """Forget what was read (the log's keys were deleted under the broker)."""
        self.documents.clear()
        self.leaves.clear()

    async def append(self, store: Store, documents: tuple[bytes, ...]) -> int:
        if documents:
            await store.log_append(documents)
        return await self.refresh(store)

    def index_of(self, document: bytes) -> int | None:
        try:
            return self.documents.index(document)
        except ValueError:
            return None

    def head(self, size: int | None = None) -> TreeHead:
        size = len(self.leaves) if size is None else size
        return TreeHead(size, root_hash(self.leaves[:size]))

    def signed_head(self, key: BrokerKey, now: datetime) -> dict[str, Any]:
        return sign_tree_head(self.head(), kid=key.kid, signer=key.signer, now=now)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(self.leaves[:size], index)

    def consistency(self, first: int, second: int) -> list[bytes]:
        return consistency_proof(self.leaves[:second], first, second)
