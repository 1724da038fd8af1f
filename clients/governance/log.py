"""The transparency log's signed tree heads, and what a node concludes from two of them. Pure.

The broker appends every governance document it puts in force to an append-only log hashed as
RFC 9162 §2.1 (:mod:`clients.governance.merkle`) and signs its heads. A leaf is the document's
exact bytes (a root, a registry version, an agreement status), except for an agreement, whose
terms only its parties may read: its leaf is a commitment (:func:`log_leaf`) naming the
agreement, its parties and the SHA-256 of its bytes, which the broker serves only to its
parties. Every partner can then read the whole log and check it is complete, without learning
the terms of agreements it is not in::

    {"signed": {"type": "tree-head", "log": <broker kid>, "tree_size": n,
                "root_hash": <b64url>, "timestamp": <RFC 3339>},
     "signatures": [{"keyid": <broker kid>, "sig": <b64url Ed25519>}]}
    sig = Ed25519(PAE("application/vnd.tearline.tree-head+json;version=1", canonical_json(signed)))

The broker's signature makes a head evidence: two heads it signed that no consistency proof can
join (the same size with other roots, or a proof that fails) prove that it showed two views of
its log, and anyone holding both can show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tearline.clients.errors import TearlineError
from tearline.clients.governance.documents import parse_agreement, parse_envelope
from tearline.clients.governance.merkle import (
    HASH_SIZE,
    LogProofError,
    TreeHead,
    verify_consistency,
    verify_inclusion,
)
from tearline.clients.protocol import crypto
from tearline.clients.protocol.encoding import (
    EncodingError,
    b64d,
    b64e,
    canonical_json,
    dsse_pae,
    format_time,
    parse_time,
    strict_loads,
)

PAYLOAD_TYPE: Final = b"application/vnd.tearline.tree-head+json;version=1"
COMMITMENT_TYPE: Final = "agreement-commitment"


class LogError(TearlineError):
    """The log's answers do not add up: a bad signature, a head that is not consistent with
    one seen before (``log_fork``, ``log_rollback``), a document not in the log
    (``not_in_log``). The message says which, and that the broker cannot be trusted on it."""

    code = "log_error"


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    log: str  # the broker key id that signs it
    head: TreeHead
    timestamp: datetime
    raw: dict[str, Any]  # the document as served, to keep and to show

    @property
    def tree_size(self) -> int:
        return self.head.tree_size

    @property
    def root_hash(self) -> bytes:
        return self.head.root_hash


def _signed(log: str, head: TreeHead, timestamp: datetime) -> dict[str, Any]:
    return {
        "type": "tree-head",
        "log": log,
        "tree_size": head.tree_size,
        "root_hash": b64e(head.root_hash),
        "timestamp": format_time(timestamp),
    }


def sign_tree_head(
    head: TreeHead, *, kid: str, signer: crypto.SigningKey, now: datetime
) -> dict[str, Any]:
    """The signed head document for ``head`` (the broker signs with its receipt key)."""
    signed = _signed(kid, head, now)
    sig = signer.sign(dsse_pae(PAYLOAD_TYPE, canonical_json(signed)))
    return {"signed": signed, "signatures": [{"keyid": kid, "sig": b64e(sig)}]}


def verify_tree_head(document: Any, *, kid: str, public: bytes) -> SignedTreeHead:
    """Parse a signed head and check the log key's signature on it; :class:`LogError` if not."""
    if isinstance(document, bytes | str):
        try:
            document = strict_loads(document.encode() if isinstance(document, str) else document)
        except EncodingError as exc:
            raise LogError(f"not a tree head: {exc}", code="bad_tree_head") from None
    try:
        signed = document["signed"]
        if set(signed) != {"type", "log", "tree_size", "root_hash", "timestamp"}:
            raise ValueError("unexpected fields")
        if signed["type"] != "tree-head" or type(signed["tree_size"]) is not int:
            raise ValueError("not a tree head")
        root = b64d(signed["root_hash"])
        if len(root) != HASH_SIZE:
            raise ValueError("root hash size")
        head = TreeHead(signed["tree_size"], root)
        timestamp = parse_time(signed["timestamp"])
        sigs = document["signatures"]
        if not isinstance(sigs, list) or len(sigs) != 1:
            raise ValueError("one signature")
        sig = b64d(sigs[0]["sig"])
        keyid, log = sigs[0]["keyid"], signed["log"]
    except (KeyError, TypeError, ValueError, EncodingError) as exc:
        raise LogError(f"not a tree head: {exc}", code="bad_tree_head") from None
    if keyid != kid or log != kid:
        raise LogError(
            f"the tree head is signed by {keyid}, not by this broker's key {kid}",
            code="bad_tree_head_signature",
        )
    try:
        crypto.VerifyKey(crypto.ED25519, public).verify(
            sig, dsse_pae(PAYLOAD_TYPE, canonical_json(signed))
        )
    except crypto.CryptoFailure:
        raise LogError(
            "the tree head's signature does not verify", code="bad_tree_head_signature"
        ) from None
    return SignedTreeHead(log, head, timestamp, document)


@dataclass(frozen=True, slots=True)
class Commitment:
    """An agreement's leaf: who it binds and the digest of its bytes, not its terms."""

    agreement: str
    parties: frozenset[str]
    sha256: bytes

    def commits_to(self, document: bytes) -> bool:
        return crypto.sha256(document) == self.sha256


def log_leaf(document: bytes) -> bytes:
    """The leaf the log holds for a governance document: its bytes, or for an agreement the
    canonical JSON ``{"agreement": id, "parties": [sorted ids], "sha256": b64url(SHA-256(
    document)), "type": "agreement-commitment"}``. The document's signatures are in what the
    digest covers, so nobody can confirm a guess of the terms from it."""
    if parse_envelope(document).doc_type != "agreement":
        return document
    agreement = parse_agreement(document)
    return log_leaf_of(Commitment(agreement.id, agreement.parties, crypto.sha256(document)))


def parse_commitment(leaf: bytes) -> Commitment | None:
    """The commitment a leaf is, or None when the leaf is a document (or not a commitment)."""
    try:
        obj = strict_loads(leaf)
    except EncodingError:
        return None
    if not isinstance(obj, dict) or obj.get("type") != COMMITMENT_TYPE:
        return None
    try:
        parties = obj["parties"]
        if set(obj) != {"agreement", "parties", "sha256", "type"} or not isinstance(parties, list):
            raise TypeError
        commitment = Commitment(
            str(obj["agreement"]), frozenset(str(p) for p in parties), b64d(obj["sha256"])
        )
    except (KeyError, TypeError, EncodingError):
        raise LogError(
            "a log entry claims to be an agreement commitment but is malformed",
            code="bad_log_entry",
        ) from None
    if leaf != log_leaf_of(commitment):
        raise LogError(
            "a log entry is an agreement commitment in other than its canonical form",
            code="bad_log_entry",
        )
    return commitment


def log_leaf_of(commitment: Commitment) -> bytes:
    return canonical_json(
        {
            "agreement": commitment.agreement,
            "parties": sorted(commitment.parties),
            "sha256": b64e(commitment.sha256),
            "type": COMMITMENT_TYPE,
        }
    )


def check_consistent(old: SignedTreeHead, new: SignedTreeHead, proof: Sequence[bytes]) -> None:
    """Refuse ``new`` unless it extends ``old``: the log only ever grew, and ``proof`` (the
    broker's consistency proof from ``old``'s size to ``new``'s) joins the two roots."""
    if new.tree_size < old.tree_size:
        raise LogError(
            f"the log's head has {new.tree_size} entries, fewer than the {old.tree_size} it "
            "showed before: an append-only log never shrinks",
            code="log_rollback",
        )
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
    except LogProofError as exc:
        raise LogError(
            f"the log's head of {new.tree_size} entries is not consistent with the head of "
            f"{old.tree_size} seen before ({exc.message}): the broker is showing another "
            "history than before",
            code="log_fork",
        ) from None


def check_included(
    document: bytes, index: int, head: SignedTreeHead, proof: Sequence[bytes]
) -> None:
    """Refuse unless ``document`` is leaf ``index`` of the tree ``head`` signs."""
    try:
        verify_inclusion(document, index, head.tree_size, proof, head.root_hash)
    except LogProofError as exc:
        raise LogError(
            f"a governance document is not in the log at the index the broker gave "
            f"({exc.message}): it was never published to every node",
            code="not_in_log",
        ) from None


def split_view(a: SignedTreeHead, b: SignedTreeHead, proof: Sequence[bytes] | None) -> str | None:
    """Why two heads of one log cannot both be honest, or None when they can be: the same size
    with different roots, or (sizes differing) no ``proof`` from the smaller to the larger that
    verifies."""
    if a.log != b.log:
        return f"the heads come from two logs ({a.log}, {b.log})"
    small, large = (a, b) if a.tree_size <= b.tree_size else (b, a)
    if small.tree_size == large.tree_size:
        if small.root_hash != large.root_hash:
            return (
                f"both heads have {small.tree_size} entries but different root hashes: the "
                "broker signed two different logs"
            )
        return None
    if proof is None:
        return "no consistency proof joins the two heads"
    try:
        verify_consistency(
            small.tree_size, large.tree_size, small.root_hash, large.root_hash, proof
        )
    except LogProofError as exc:
        return (
            f"the head of {small.tree_size} entries is not a prefix of the head of "
            f"{large.tree_size} ({exc.message}): the broker signed two different logs"
        )
    return None
