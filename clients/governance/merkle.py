"""RFC 9162 (Certificate Transparency v2) Merkle trees, for the key transparency log.

The log appends one leaf per registry version. A client that kept an earlier tree head checks,
with a consistency proof, that the log only appended since (no version was rewritten or dropped),
and, with an inclusion proof, that the version it was shown is one the log committed to.

Pure: leaf data in, hashes and proofs out; no I/O, no clock. Hashes are RFC 9162 §2.1.1's with
SHA-256. The 0x00 / 0x01 prefixes keep a leaf from ever passing for an inner node, which would let a
log prove "inclusion" of something that was never a leaf (a second-preimage attack on the tree).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tearline.clients.errors import TearlineError

HASH_SIZE: Final = 32
#: MTH({}) = HASH(): the root of the empty tree (RFC 9162 §2.1.1).
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


class LogProofError(TearlineError):
    """A proof from the log did not verify against the tree head(s) it was checked with."""

    code = "log_proof_invalid"


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A tree's size and root hash: what the log signs, and what a client keeps to check the
    next head against."""

    tree_size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if self.tree_size < 0:
            raise ValueError(f"a tree cannot have {self.tree_size} leaves")
        if len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"a root hash is {HASH_SIZE} bytes, not {len(self.root_hash)}")


def leaf_hash(data: bytes) -> bytes:
    """HASH(0x00 || data): the hash of one leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right): the hash of an inner node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_hash(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]): the root hash of the tree over ``leaves`` (leaf data, not hashes)."""
    return _mth([leaf_hash(d) for d in leaves])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162 §2.1.3.1): the sibling hashes from leaf ``index`` up to the
    root of the tree over all of ``leaves``, lowest first."""
    hashes = [leaf_hash(d) for d in leaves]
    if not 0 <= index < len(hashes):
        raise ValueError(f"leaf {index} is not in a tree of {len(hashes)} leaves")
    # PATH(m, D[n]) is PATH(m, D[0:k]) : MTH(D[k:n]) when m < k, else PATH(m - k, D[k:n]) :
    # MTH(D[0:k]). Walking down from the root finds the siblings top first, hence the reverse.
    path: list[bytes] = []
    lo, hi = 0, len(hashes)
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            path.append(_mth(hashes[mid:hi]))
            hi = mid
        else:
            path.append(_mth(hashes[lo:mid]))
            lo = mid
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1) over the first ``new_size`` leaves."""
    if not 0 <= old_size <= new_size <= len(leaves):
        raise ValueError(
            f"no consistency proof from {old_size} to {new_size} leaves in a log of {len(leaves)}"
        )
    # The RFC defines PROOF only for 0 < m < n: the empty tree is a prefix of every tree, and a
    # tree is its own prefix, so neither needs a hash.
    if old_size in (0, new_size):
        return []
    hashes = [leaf_hash(d) for d in leaves[:new_size]]
    # SUBPROOF(m, D[n], b), unrolled: m <= k recurses left, keeping b, and adds MTH(D[k:n]);
    # m > k recurses right with b false and adds MTH(D[0:k]). Top first again, hence the reverse.
    proof: list[bytes] = []
    lo, hi, m, whole_old_tree = 0, new_size, old_size, True
    while m != hi - lo:
        mid = lo + _split(hi - lo)
        if m <= mid - lo:
            proof.append(_mth(hashes[mid:hi]))
            hi = mid
        else:
            proof.append(_mth(hashes[lo:mid]))
            m -= mid - lo
            lo = mid
            whole_old_tree = False
    # SUBPROOF(m, D[m], b): nothing when this subtree is the old tree itself (the verifier holds
    # its root), else its hash.
    if not whole_old_tree:
        proof.append(_mth(hashes[lo:hi]))
    proof.reverse()
    return proof


def verify_inclusion(
    leaf_data: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_data`` is leaf ``index`` of the tree of ``tree_size`` leaves with hash
    ``root``, by RFC 9162 §2.1.3.2 step by step. Raises LogProofError if not."""
    _check_sizes(proof, root)
    if not 0 <= index < tree_size:  # step 1
        raise LogProofError(f"leaf {index} cannot be in a tree of {tree_size} leaves")
    fn, sn, r = index, tree_size - 1, leaf_hash(leaf_data)  # steps 2 and 3
    for p in proof:  # step 4
        if sn == 0:
            raise LogProofError(
                f"the inclusion proof has more hashes than the path from leaf {index} to the "
                f"root of a tree of {tree_size} leaves"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Skip the levels where this node is the last on its level and has no sibling.
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 5
        raise LogProofError(
            f"the inclusion proof has too few hashes to reach the root of a tree of {tree_size} "
            f"leaves from leaf {index}"
        )
    if r != root:
        raise LogProofError(
            f"the data is not leaf {index} of the tree of {tree_size} leaves with that root: the "
            "inclusion proof leads to another root"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` leaves with ``new_root`` extends the one of
    ``old_size`` leaves with ``old_root``, by RFC 9162 §2.1.4.2 step by step. Raises
    LogProofError if not: the log rewrote or forked its history, or the proof is wrong."""
    _check_sizes(proof, old_root, new_root)
    if not 0 <= old_size <= new_size:
        raise LogProofError(
            f"a tree of {old_size} leaves cannot be a prefix of one of {new_size}: a log only grows"
        )
    # §2.1.4.2 covers 0 < first < second. An empty or an unchanged tree needs no proof (§2.1.4.1
    # defines none), so any hash offered is wrong; what is left is checking the heads themselves.
    if old_size in (0, new_size):
        if proof:
            raise LogProofError(
                f"from {old_size} to {new_size} leaves there is nothing to prove, yet the "
                f"consistency proof has {len(proof)} hashes"
            )
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise LogProofError("the old tree head has 0 leaves but not the empty tree's root")
        if old_size == new_size and old_root != new_root:
            raise LogProofError(
                f"two tree heads of {new_size} leaves with different roots: the log forked"
            )
        return
    if not proof:  # step 1
        raise LogProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: the old tree is a complete subtree of the new
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise LogProofError(
                f"the consistency proof from {old_size} to {new_size} leaves has too many hashes"
            )
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)  # a node only the new tree has: it changes sr, not fr
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 7
        raise LogProofError(
            f"the consistency proof from {old_size} to {new_size} leaves has too few hashes"
        )
    if fr != old_root:
        raise LogProofError(
            f"the consistency proof does not lead to the old root: the tree of {new_size} leaves "
            f"does not extend the tree of {old_size} leaves you hold"
        )
    if sr != new_root:
        raise LogProofError(
            f"the consistency proof does not lead to the new root of {new_size} leaves: the new "
            "tree head is not the one the proof was made for"
        )


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): where MTH splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, built bottom up rather than by the RFC's recursion (same result, no
    recursion depth, linear time): pairing neighbours level by level makes the same complete
    subtrees as the split at the largest power of two, and an odd last node is the root of the
    smaller right part, which the recursion joins only higher up, so it moves up unchanged."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _check_sizes(proof: Sequence[bytes], *roots: bytes) -> None:
    # Not one of the RFC's steps, which would fail later at a compare: this says what is wrong.
    for root in roots:
        if len(root) != HASH_SIZE:
            raise LogProofError(f"a root hash is {len(root)} bytes, not {HASH_SIZE}")
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise LogProofError(f"hash {i} of the proof is {len(p)} bytes, not {HASH_SIZE}")
