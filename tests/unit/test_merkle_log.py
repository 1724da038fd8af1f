"""The RFC 9162 Merkle tree of the key transparency log: fixed vectors, properties, attacks.

The fixed vectors are the RFC 6962 test data as the reference Go implementation carries them
(github.com/transparency-dev/merkle at 417fb0c314750d94e53942e9f92e79b6d35915db):
``testonly/constants.go`` (leaves, node hashes, roots) and ``testdata/inclusion/*/happy-path.json``
and ``testdata/consistency/*/happy-path.json`` (proofs, there in base64, here in hex).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tearline.clients.errors import TearlineError
from tearline.clients.governance.merkle import (
    EMPTY_ROOT,
    LogProofError,
    TreeHead,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

EXAMPLES = settings(max_examples=100, deadline=None)

h = bytes.fromhex

# testonly/constants.go: LeafInputs()
LEAVES = [
    h(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
# testonly/constants.go: NodeHashes()[0], the leaf hashes
LEAF_HASHES = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
    h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
    h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
    h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
    h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
    h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
]
# testonly/constants.go: RootHashes(), indexed by tree size (EmptyRootHash() at 0)
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# testdata/inclusion/{0,1,2,3,4}/happy-path.json: (leafIdx, treeSize, proof)
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
# testdata/consistency/{0,1,2,3,4}/happy-path.json: (size1, size2, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


# --- the RFC's recursive definitions, word for word: the slow oracle the module must equal -----


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# --- strategies ----------------------------------------------------------------------------------

# Distinct leaves, so "another leaf" is really another value.
trees = st.lists(st.binary(max_size=12), min_size=1, max_size=200, unique=True)


def flip(data: bytes, at: int, bit: int) -> bytes:
    out = bytearray(data)
    out[at % len(out)] ^= 1 << bit
    return bytes(out)


def refused(fn: Callable[..., None], *args: object) -> bool:
    try:
        fn(*args)
    except LogProofError:
        return True
    return False


# --- fixed vectors -------------------------------------------------------------------------------


def test_leaf_hashes_match_the_reference() -> None:
    assert [leaf_hash(d) for d in LEAVES] == LEAF_HASHES


def test_node_hash_is_the_0x01_prefixed_hash_of_both_children() -> None:
    # testonly/constants.go: NodeHashes()[1][0] = hash of leaves 0 and 1
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[2]


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_reference_for_every_size(size: int) -> None:
    assert root_hash(LEAVES[:size]) == ROOTS[size]


def test_the_empty_tree_has_the_hash_of_the_empty_string() -> None:
    assert root_hash([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_the_reference_and_verify(
    index: int, size: int, proof: list[bytes]
) -> None:
    assert inclusion_proof(LEAVES[:size], index) == proof
    verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_the_reference_and_verify(
    old: int, new: int, proof: list[bytes]
) -> None:
    assert consistency_proof(LEAVES, old, new) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


# --- every proof of every small tree, exhaustively (covers each power-of-two boundary) -----------


def test_every_proof_of_every_tree_up_to_33_leaves_equals_the_rfc_definition() -> None:
    leaves = [i.to_bytes(2, "big") for i in range(33)]
    for n in range(1, 34):
        tree, root = leaves[:n], root_hash(leaves[:n])
        assert root == ref_mth(tree)
        for i in range(n):
            proof = inclusion_proof(tree, i)
            assert proof == ref_path(i, tree)
            verify_inclusion(tree[i], i, n, proof, root)
        for m in range(1, n + 1):
            proof = consistency_proof(tree, m, n)
            assert proof == ref_subproof(m, tree, True)
            verify_consistency(m, n, root_hash(tree[:m]), root, proof)


# --- properties over random trees ----------------------------------------------------------------


@EXAMPLES
@given(trees, st.data())
def test_every_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(leaves, i)
    assert proof == ref_path(i, leaves)
    verify_inclusion(leaves[i], i, len(leaves), proof, root_hash(leaves))


@EXAMPLES
@given(trees, st.data())
def test_every_consistency_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    n = data.draw(st.integers(1, len(leaves)))
    m = data.draw(st.integers(0, n))
    proof = consistency_proof(leaves, m, n)
    assert proof == (ref_subproof(m, leaves[:n], True) if m else [])
    verify_consistency(m, n, root_hash(leaves[:m]), root_hash(leaves[:n]), proof)


# --- attacks on inclusion ------------------------------------------------------------------------


@EXAMPLES
@given(trees, st.data(), st.integers(0, 31), st.integers(0, 7))
def test_a_flipped_byte_in_an_inclusion_proof_is_refused(
    leaves: list[bytes], data: st.DataObject, at: int, bit: int
) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(leaves, i)
    assume(proof)
    j = data.draw(st.integers(0, len(proof) - 1))
    proof[j] = flip(proof[j], at, bit)
    assert refused(verify_inclusion, leaves[i], i, len(leaves), proof, root_hash(leaves))


@EXAMPLES
@given(trees, st.data(), st.integers(0, 31), st.integers(0, 7))
def test_a_flipped_byte_in_the_root_is_refused(
    leaves: list[bytes], data: st.DataObject, at: int, bit: int
) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1))
    root = flip(root_hash(leaves), at, bit)
    assert refused(verify_inclusion, leaves[i], i, len(leaves), inclusion_proof(leaves, i), root)


@EXAMPLES
@given(trees, st.data())
def test_a_proof_for_another_leaf_is_refused(leaves: list[bytes], data: st.DataObject) -> None:
    assume(len(leaves) > 1)
    i = data.draw(st.integers(0, len(leaves) - 1))
    j = data.draw(st.integers(0, len(leaves) - 1).filter(lambda j: j != i))
    n, root, proof = len(leaves), root_hash(leaves), inclusion_proof(leaves, i)
    assert refused(verify_inclusion, leaves[j], i, n, proof, root)  # other data, same place
    assert refused(verify_inclusion, leaves[j], j, n, proof, root)  # other leaf, its own place
    assert refused(verify_inclusion, leaves[i], j, n, proof, root)  # same data, another place


@EXAMPLES
@given(trees, st.data())
def test_a_proof_checked_against_another_tree_head_is_refused(
    leaves: list[bytes], data: st.DataObject
) -> None:
    # The other head is of the same log, smaller or larger, and holds leaf ``i`` too.
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1))
    log = leaves + data.draw(st.lists(st.binary(min_size=13, max_size=16), max_size=20))
    sizes = [s for s in range(i + 1, len(log) + 1) if s != n]
    assume(sizes)
    other = data.draw(st.sampled_from(sizes))
    proof = inclusion_proof(leaves, i)
    assert refused(verify_inclusion, leaves[i], i, other, proof, root_hash(log[:other]))


def test_an_index_outside_the_tree_is_refused() -> None:
    for index, size in [(8, 8), (9, 8), (0, 0), (-1, 8)]:
        with pytest.raises(LogProofError, match="cannot be in a tree"):
            verify_inclusion(LEAVES[0], index, size, [], ROOTS[8])


def test_an_inclusion_proof_with_a_hash_added_or_removed_is_refused() -> None:
    proof = inclusion_proof(LEAVES, 5)
    with pytest.raises(LogProofError, match="more hashes"):
        verify_inclusion(LEAVES[5], 5, 8, [*proof, ROOTS[1]], ROOTS[8])
    with pytest.raises(LogProofError, match="too few hashes"):
        verify_inclusion(LEAVES[5], 5, 8, proof[:-1], ROOTS[8])
    with pytest.raises(LogProofError, match="more hashes"):
        verify_inclusion(LEAVES[0], 0, 1, [ROOTS[1]], ROOTS[1])


def test_a_leaf_hash_cannot_pass_for_an_inner_node() -> None:
    # The root of two leaves, offered as a one-leaf tree whose leaf is the two children's hashes.
    fake_leaf = LEAF_HASHES[0] + LEAF_HASHES[1]
    assert refused(verify_inclusion, fake_leaf, 0, 1, [], ROOTS[2])


# --- attacks on consistency ----------------------------------------------------------------------


@EXAMPLES
@given(trees, st.data(), st.integers(0, 31), st.integers(0, 7))
def test_a_flipped_byte_in_a_consistency_proof_or_either_root_is_refused(
    leaves: list[bytes], data: st.DataObject, at: int, bit: int
) -> None:
    assume(len(leaves) >= 2)
    n = data.draw(st.integers(2, len(leaves)))
    m = data.draw(st.integers(1, n - 1))
    old, new, proof = root_hash(leaves[:m]), root_hash(leaves[:n]), consistency_proof(leaves, m, n)
    j = data.draw(st.integers(0, len(proof) - 1))
    tampered = [*proof[:j], flip(proof[j], at, bit), *proof[j + 1 :]]
    assert refused(verify_consistency, m, n, old, new, tampered)
    assert refused(verify_consistency, m, n, flip(old, at, bit), new, proof)
    assert refused(verify_consistency, m, n, old, flip(new, at, bit), proof)


@EXAMPLES
@given(trees, trees, st.data())
def test_a_forked_history_fails_the_consistency_check(
    prefix: list[bytes], tail: list[bytes], data: st.DataObject
) -> None:
    # Two logs agree on ``prefix``, then the forked one replaces the next leaf (and may append
    # more). A client that holds a head past the fork point must not be convinced the fork
    # extends it, whichever sizes the proof is made for.
    honest = prefix + tail
    fork_at = len(prefix)
    forged = [*honest[:fork_at], b"forged:" + honest[fork_at], *honest[fork_at + 1 :]]
    forged += data.draw(st.lists(st.binary(max_size=4), max_size=20))
    m = data.draw(st.integers(fork_at + 1, len(honest)))
    n = data.draw(st.integers(m, len(forged)))
    old_root = root_hash(honest[:m])
    assert refused(
        verify_consistency, m, n, old_root, root_hash(forged[:n]), consistency_proof(forged, m, n)
    )
    # The honest log's own proof does not help the fork either.
    if n <= len(honest):
        proof = consistency_proof(honest, m, n)
        assert refused(verify_consistency, m, n, old_root, root_hash(forged[:n]), proof)


@EXAMPLES
@given(trees, st.data())
def test_a_consistency_proof_for_other_sizes_is_refused(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    assume(n >= 3)
    m = data.draw(st.integers(1, n - 1))
    m2 = data.draw(st.integers(1, n - 1).filter(lambda s: s != m))
    proof = consistency_proof(leaves, m, n)
    assert refused(verify_consistency, m2, n, root_hash(leaves[:m2]), root_hash(leaves), proof)


def test_a_consistency_proof_with_a_hash_added_or_removed_is_refused() -> None:
    proof = consistency_proof(LEAVES, 6, 8)
    with pytest.raises(LogProofError, match="too many hashes"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], [*proof, ROOTS[1]])
    with pytest.raises(LogProofError, match="too few hashes"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], proof[:-1])
    with pytest.raises(LogProofError, match="is empty"):
        verify_consistency(6, 8, ROOTS[6], ROOTS[8], [])


def test_an_old_head_larger_than_the_new_one_is_refused() -> None:
    with pytest.raises(LogProofError, match="a log only grows"):
        verify_consistency(8, 7, ROOTS[8], ROOTS[7], consistency_proof(LEAVES, 7, 8))


def test_heads_of_the_same_size_need_no_proof_and_the_same_root() -> None:
    verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    with pytest.raises(LogProofError, match="the log forked"):
        verify_consistency(5, 5, ROOTS[5], ROOTS[6], [])
    with pytest.raises(LogProofError, match="nothing to prove"):
        verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[1]])


def test_the_empty_tree_is_consistent_with_any_tree_only_without_a_proof() -> None:
    verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(LogProofError, match="nothing to prove"):
        verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [ROOTS[8]])
    with pytest.raises(LogProofError, match="empty tree's root"):
        verify_consistency(0, 8, ROOTS[1], ROOTS[8], [])


def test_hashes_of_the_wrong_length_are_refused_before_any_step() -> None:
    with pytest.raises(LogProofError, match="hash 1 of the proof is 31 bytes"):
        verify_inclusion(LEAVES[0], 0, 8, [ROOTS[1], ROOTS[2][:31], ROOTS[3]], ROOTS[8])
    with pytest.raises(LogProofError, match="a root hash is 0 bytes"):
        verify_consistency(1, 1, b"", b"", [])


# --- the error, the tree head, the generators' own checks, and scale ----------------------------


def test_a_failed_proof_is_a_tearline_error_with_a_stable_code() -> None:
    with pytest.raises(LogProofError) as caught:
        verify_inclusion(LEAVES[1], 0, 8, inclusion_proof(LEAVES, 0), ROOTS[8])
    assert isinstance(caught.value, TearlineError)
    assert caught.value.code == "log_proof_invalid"
    assert "not leaf 0 of the tree of 8 leaves" in str(caught.value)


def test_a_tree_head_is_immutable_and_well_formed() -> None:
    head = TreeHead(8, ROOTS[8])
    with pytest.raises(AttributeError):
        head.tree_size = 9  # type: ignore[misc]
    with pytest.raises(ValueError, match="32 bytes"):
        TreeHead(1, b"short")
    with pytest.raises(ValueError, match="-1 leaves"):
        TreeHead(-1, ROOTS[0])


def test_proofs_are_only_made_for_leaves_and_sizes_the_log_has() -> None:
    for index in (-1, 8):
        with pytest.raises(ValueError, match="not in a tree of 8"):
            inclusion_proof(LEAVES, index)
    for old, new in [(-1, 4), (5, 4), (4, 9)]:
        with pytest.raises(ValueError, match="no consistency proof"):
            consistency_proof(LEAVES, old, new)


def test_a_log_of_a_hundred_thousand_leaves_is_hashed_and_proven() -> None:
    leaves = [i.to_bytes(4, "big") for i in range(100_000)]
    root = root_hash(leaves)
    assert root == ref_mth(leaves)
    i, m = 77_777, 65_537
    verify_inclusion(leaves[i], i, len(leaves), inclusion_proof(leaves, i), root)
    proof = consistency_proof(leaves, m, len(leaves))
    verify_consistency(m, len(leaves), root_hash(leaves[:m]), root, proof)
