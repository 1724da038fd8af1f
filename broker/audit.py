"""The audit trail's integrity (DESIGN §7): a hash chain over ``tl:audit``, signed checkpoints.

Every audit entry is linked, in stream order, into a SHA-256 chain::

    chain_0 = SHA-256("tearline audit v1")
    chain_i = SHA-256(chain_{i-1} ‖ canonical JSON {"id": entry id, "fields": {…}})

The broker periodically signs a checkpoint — the chain value and entry count up to an entry —
with its receipt key. Deleting, reordering or altering any entry before a checkpoint changes the
chain at that checkpoint, which ``tearline audit verify`` recomputes offline. The functions here
are pure; :func:`seal` is the one that reads and writes Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tearline.broker.state import BrokerState
from tearline.clients.errors import InputError
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import (
    EncodingError,
    b64d,
    b64e,
    canonical_json,
    dsse_pae,
    format_time,
    strict_loads,
)

GENESIS: Final = crypto.sha256(b"tearline audit v1")
CHECKPOINT_TYPE: Final = b"application/vnd.tearline.audit-checkpoint+json;version=1"
Entry = tuple[str, Mapping[str, str]]
#: Audit entries indexed per Redis round trip (one XRANGE and one script).
INDEX_CHUNK: Final = 1000


class AuditError(InputError):
    """The audit trail does not match its signed checkpoints."""

    code = "audit_broken"


def link(previous: bytes, entry_id: str, fields: Mapping[str, str]) -> bytes:
    return crypto.sha256(previous + canonical_json({"id": entry_id, "fields": dict(fields)}))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    upto: str  # the last entry covered
    count: int  # how many entries are covered, from the first
    chain: bytes
    at: str

    def body(self) -> bytes:
        return canonical_json(
            {"upto": self.upto, "count": self.count, "chain": b64e(self.chain), "at": self.at}
        )

    def signed(self, kid: str, key: crypto.SigningKey) -> dict[str, str]:
        body = self.body()
        return {
            "body": body.decode(),
            "kid": kid,
            "sig": b64e(key.sign(dsse_pae(CHECKPOINT_TYPE, body))),
        }

    @classmethod
    def verified(cls, fields: Mapping[str, str], public: bytes) -> Checkpoint:
        """A stored checkpoint, after checking the broker's signature on it."""
        try:
            body = fields["body"].encode()
            crypto.VerifyKey(crypto.ED25519, public).verify(
                b64d(fields["sig"]), dsse_pae(CHECKPOINT_TYPE, body)
            )
            data = strict_loads(body)
            return cls(data["upto"], int(data["count"]), b64d(data["chain"]), data["at"])
        except (KeyError, TypeError, ValueError, EncodingError, crypto.CryptoFailure) as exc:
            raise AuditError(f"checkpoint does not verify: {exc}") from None


@dataclass(frozen=True, slots=True)
class Verified:
    entries: int
    checkpoints: int
    covered: int  # entries protected by the last checkpoint


def verify_trail(
    entries: Iterable[Entry], checkpoints: Sequence[Mapping[str, str]], public: bytes
) -> Verified:
    """Recompute the chain over ``entries`` and check every signed checkpoint against it."""
    pending = [Checkpoint.verified(c, public) for c in checkpoints]
    pending.sort(key=lambda c: c.count)
    chain, count, covered, index = GENESIS, 0, 0, 0
    for entry_id, fields in entries:
        chain = link(chain, entry_id, fields)
        count += 1
        while index < len(pending) and pending[index].count == count:
            checkpoint = pending[index]
            if checkpoint.upto != entry_id or checkpoint.chain != chain:
                raise AuditError(
                    f"the trail does not match the checkpoint of {checkpoint.at} at entry "
                    f"{count} ({checkpoint.upto}): entries before it were removed or altered"
                )
            covered, index = count, index + 1
    if index < len(pending):
        missing = pending[index]
        raise AuditError(
            f"the checkpoint of {missing.at} covers {missing.count} entries but the trail has "
            f"{count}: entries were removed"
        )
    return Verified(entries=count, checkpoints=len(pending), covered=covered)


async def index(state: BrokerState, *, chunk: int = INDEX_CHUNK) -> int:
    """Bring the per-report lists of audit entry ids up to the trail's end; how many entries
    were added. An operator's lookup by report reads the lists, so it finds every entry of a
    report however many came after it (a flood of other reports cannot push a trail out of
    reach); the sealer's rounds keep the lists close behind, so a lookup has little to add."""
    added = 0
    while read := await state.store.index_audit(chunk):
        added += read
    return added


async def seal(state: BrokerState, *, batch: int = 1000) -> Checkpoint | None:
    """Sign a checkpoint over the entries added since the last one (None if there are none).
    Each round also brings the per-report index up to date (:func:`index`)."""
    store = state.store
    await index(state)
    last = await store.last_checkpoint()
    if last is None:
        upto, count, chain = "0-0", 0, GENESIS
    else:
        previous = Checkpoint.verified(last, state.key.public)
        upto, count, chain = previous.upto, previous.count, previous.chain
    entries = await store.audit_after(upto, batch)
    if not entries:
        return None
    for entry_id, fields in entries:
        chain = link(chain, entry_id, fields)
    checkpoint = Checkpoint(entries[-1][0], count + len(entries), chain, format_time(state.clock()))
    await store.add_checkpoint(checkpoint.signed(state.key.kid, state.key.signer))
    return checkpoint


def as_rows(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    rows = []
    for entry_id, fields in entries:
        row: dict[str, Any] = {"entry": entry_id, **fields}
        if "data" in row and row["data"].startswith("{"):
            row["data"] = strict_loads(row["data"])
        rows.append(row)
    return rows
