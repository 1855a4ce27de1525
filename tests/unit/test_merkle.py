"""The RFC 9162 Merkle tree: published vectors, the RFC's recursion, tamper checks."""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.ledger import merkle
from adapters.ledger.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    leaf_hash,
    mth,
    node_hash,
    proof_from_hex,
    proof_to_hex,
    verify_consistency,
    verify_inclusion,
)

if TYPE_CHECKING:
    from collections.abc import Callable

MAX = 4096
LEAVES = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(MAX)]
LOG = MerkleLog(LEAVES)  # one tree; every test asks it about some prefix size
EDGES = [2**k + d for k in range(13) for d in (-1, 0, 1) if 1 <= 2**k + d <= MAX]
sizes = st.integers(1, MAX) | st.sampled_from(EDGES)

# Certificate Transparency's published RFC 6962 vectors (same hashing as 9162).
CT_DATA = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")
] + [bytes(range(0x60, 0x70))]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H01 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H47 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
H67 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        H01,
        H47,
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        H67,
        CT_ROOTS[4],
    ],
}
CT_CONSISTENCY = {
    (2, 8): [H01, H47],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        H67,
        CT_ROOTS[4],
    ],
}


# An independent reading of the RFC's recursive definitions over explicit lists.
def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = ref_k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_k(n: int) -> int:
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], *, b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = ref_k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b=b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], b=False), ref_mth(d[:k])]


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


def test_the_empty_tree_root_is_the_hash_of_the_empty_string() -> None:
    """MTH({}) = SHA-256(""), e3b0c442..., for a fresh log and for size 0."""
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    assert MerkleLog().root() == EMPTY_ROOT == LOG.root(0) == mth([])


def test_a_one_leaf_tree_root_is_the_prefixed_leaf_hash() -> None:
    """MTH({d}) = SHA-256(0x00 || d)."""
    assert MerkleLog([LEAVES[0]]).root() == hashlib.sha256(b"\0" + LEAVES[0]).digest()


def test_roots_and_proofs_match_the_certificate_transparency_vectors() -> None:
    """Every published root for sizes 0..8 and the published proofs come out."""
    log = MerkleLog(CT_DATA)
    assert [log.root(n).hex() for n in range(9)] == CT_ROOTS
    for (index, size), proof in CT_INCLUSION.items():
        assert proof_to_hex(log.inclusion_proof(index, size)) == proof
        root = bytes.fromhex(CT_ROOTS[size])
        assert verify_inclusion(
            CT_DATA[index], index, size, proof_from_hex(proof), root
        )
    for (old, new), proof in CT_CONSISTENCY.items():
        assert proof_to_hex(log.consistency_proof(old, new)) == proof
        roots = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
        assert verify_consistency(old, new, *roots, proof_from_hex(proof))


def test_the_root_of_every_prefix_up_to_300_equals_the_rfc_definition() -> None:
    """root(n) for any n <= size is MTH(D[0:n]), not only the latest root."""
    assert all(LOG.root(n) == mth(LEAVES[:n]) for n in range(301))


@settings(max_examples=40, deadline=None)
@given(size=sizes)
def test_the_root_of_a_random_prefix_equals_the_rfc_definition(size: int) -> None:
    """The stored-level shortcut agrees with the recursion at large sizes too."""
    assert LOG.root(size) == mth(LEAVES[:size])


def test_proofs_for_sizes_1_to_64_equal_the_rfc_recursion_exhaustively() -> None:
    """PATH and PROOF agree with a list-based reading of the RFC for all pairs."""
    for n in range(1, 65):
        d, root = LEAVES[:n], ref_mth(LEAVES[:n])
        assert LOG.root(n) == root
        for m in range(n):
            path = LOG.inclusion_proof(m, n)
            assert path == ref_path(m, d), (m, n)
            assert len(path) <= ceil_log2(n)
            assert verify_inclusion(d[m], m, n, path, root)
        for m in range(1, n + 1):
            proof = LOG.consistency_proof(m, n)
            assert proof == ref_subproof(m, d, b=True), (m, n)
            assert len(proof) <= ceil_log2(n) + 1
            assert verify_consistency(m, n, ref_mth(d[:m]), root, proof)


@st.composite
def leaf_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return draw(st.integers(0, size - 1)), size


@settings(max_examples=400, deadline=None)
@given(at=leaf_in_tree(), data=st.data())
def test_an_inclusion_proof_verifies_and_any_tampering_fails(
    at: tuple[int, int], data: st.DataObject
) -> None:
    """Changing the leaf, index, tree head, root or any proof hash is caught."""
    index, size = at
    leaf, proof, root = LEAVES[index], LOG.inclusion_proof(index, size), LOG.root(size)
    assert len(proof) <= ceil_log2(size)
    assert verify_inclusion(leaf, index, size, proof, root)
    later = data.draw(st.integers(index + 1, MAX), label="later size")
    later_proof = LOG.inclusion_proof(index, later)
    assert verify_inclusion(leaf, index, later, later_proof, LOG.root(later))

    assert not verify_inclusion(flip(leaf), index, size, proof, root)
    other = data.draw(st.integers(0, size), label="other index")
    if other != index:
        assert not verify_inclusion(leaf, other, size, proof, root)
    head = data.draw(st.integers(index + 1, MAX), label="other size")
    if head != size:  # another signed head: its size with its own root
        assert not verify_inclusion(leaf, index, head, proof, LOG.root(head))
    if len(LOG.inclusion_proof(index, head)) != len(proof):  # a lone size change
        assert not verify_inclusion(leaf, index, head, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, flip(root))
    for i in range(len(proof)):
        assert not verify_inclusion(
            leaf, index, size, [*proof[:i], flip(proof[i]), *proof[i + 1 :]], root
        )
        assert not verify_inclusion(leaf, index, size, proof[:i] + proof[i + 1 :], root)
    assert not verify_inclusion(leaf, index, size, [*proof, root], root)
    # An overlong proof fails at sn == 0 even if the claimed root would fit it.
    longer = node_hash(root, root)
    assert not verify_inclusion(leaf, index, size, [*proof, root], longer)


def test_a_proof_binds_the_root_so_size_and_root_must_come_from_one_head() -> None:
    """RFC 9162's check can pass a lone wrong size: (0, 3) and (0, 4) share a shape."""
    proof = LOG.inclusion_proof(0, 3)
    assert verify_inclusion(LEAVES[0], 0, 4, proof, LOG.root(3))
    assert not verify_inclusion(LEAVES[0], 0, 4, proof, LOG.root(4))
    # A shorter path ending at an inner node is refused by the final sn == 0.
    assert not verify_inclusion(LEAVES[0], 0, 4, [leaf_hash(LEAVES[1])], LOG.root(2))


@st.composite
def grown_tree(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(sizes.filter(lambda n: n > 1))
    return draw(st.integers(1, new - 1)), new


@settings(max_examples=400, deadline=None)
@given(sizes_=grown_tree(), head=st.integers(2, MAX))
def test_a_consistency_proof_verifies_and_any_tampering_fails(
    sizes_: tuple[int, int], head: int
) -> None:
    """Changing either root, any proof hash, a size, or swapping sizes is caught."""
    old, new = sizes_
    old_root, new_root = LOG.root(old), LOG.root(new)
    proof = LOG.consistency_proof(old, new)
    assert 1 <= len(proof) <= ceil_log2(new) + 1
    assert verify_consistency(old, new, old_root, new_root, proof)

    assert not verify_consistency(old, new, flip(old_root), new_root, proof)
    assert not verify_consistency(old, new, old_root, flip(new_root), proof)
    for i in range(len(proof)):
        changed = [*proof[:i], flip(proof[i]), *proof[i + 1 :]]
        assert not verify_consistency(old, new, old_root, new_root, changed)
        dropped = proof[:i] + proof[i + 1 :]
        assert not verify_consistency(old, new, old_root, new_root, dropped)
    assert not verify_consistency(new, old, old_root, new_root, proof)
    assert not verify_consistency(new, old, new_root, old_root, proof)
    assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])
    longer = node_hash(new_root, old_root), node_hash(new_root, new_root)
    assert not verify_consistency(old, new, *longer, [*proof, new_root])
    if head > old and head != new:  # another new head: its size with its own root
        assert not verify_consistency(old, head, old_root, LOG.root(head), proof)
    if head > old and len(LOG.consistency_proof(old, head)) != len(proof):
        assert not verify_consistency(old, head, old_root, new_root, proof)


def test_trivial_consistency_needs_an_empty_proof_and_matching_roots() -> None:
    """old == new needs equal roots; old == 0 needs the empty-tree root."""
    r5, r8 = LOG.root(5), LOG.root(8)
    assert LOG.consistency_proof(5, 5) == LOG.consistency_proof(0, 8) == []
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, r8, [])
    assert not verify_consistency(5, 5, r5, r5, [r5])
    assert verify_consistency(0, 8, EMPTY_ROOT, r8, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 8, r5, r8, [])
    assert not verify_consistency(0, 8, EMPTY_ROOT, r8, [r8])


def test_verifiers_return_false_rather_than_raise_on_malformed_input() -> None:
    """Short hashes, non-bytes, negative or zero sizes all just fail."""
    proof, root = LOG.inclusion_proof(5, 8), LOG.root(8)
    leaf, short = LEAVES[5], b"\x00" * 31
    assert not verify_inclusion(leaf, 5, 8, proof, short)
    assert not verify_inclusion(leaf, 5, 8, [short, *proof[1:]], root)
    assert not verify_inclusion(leaf, 5, 8, [p.hex() for p in proof], root)  # type: ignore[misc]
    assert not verify_inclusion(leaf, 5, 8, None, root)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf.hex(), 5, 8, proof, root)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf, -1, 8, proof, root)
    assert not verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    cproof, r6 = LOG.consistency_proof(6, 8), LOG.root(6)
    assert not verify_consistency(6, 8, short, root, cproof)
    assert not verify_consistency(6, 8, r6, root, [short, *cproof[1:]])
    assert not verify_consistency(-1, 8, r6, root, cproof)
    assert not verify_consistency(6, 8, r6, root, [])
    assert not verify_consistency(6, 8, r6, root, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda log: log.inclusion_proof(0, 0), "outside a tree of size 0"),
        (lambda log: log.inclusion_proof(8, 8), "leaf index 8"),
        (lambda log: log.inclusion_proof(-1, 8), "leaf index -1"),
        (lambda log: log.inclusion_proof(0, 11), "size 11 is outside 0..10"),
        (lambda log: log.consistency_proof(6, 5), "old_size 6 must be between"),
        (lambda log: log.consistency_proof(-1, 5), "old_size -1"),
        (lambda log: log.consistency_proof(1, 11), "new_size 11 is outside"),
        (lambda log: log.root(11), "size 11 is outside 0..10"),
        (lambda log: log.root(-1), "size -1 is outside"),
    ],
)
def test_out_of_range_indices_and_sizes_raise_value_error(
    call: Callable[[MerkleLog], object], message: str
) -> None:
    """Requests the log cannot answer say which number is out of range."""
    with pytest.raises(ValueError, match=message):
        call(MerkleLog(LEAVES[:10]))


def test_appending_keeps_every_earlier_root_and_reports_the_size() -> None:
    """The log is append-only: old roots stay answerable and unchanged."""
    log = MerkleLog()
    roots = [log.root()]
    for n, leaf in enumerate(LEAVES[:100], start=1):
        assert log.append(leaf) == n == log.size == len(log)
        roots.append(log.root())
    assert log.extend(LEAVES[100:130]) == 130
    assert [log.root(n) for n in range(101)] == roots


def test_storage_stays_within_two_hashes_per_leaf() -> None:
    """Levels of complete subtrees hold at most 2n - 1 hashes of 32 bytes."""
    stored = sum(len(level) for level in LOG._levels)
    assert stored <= 32 * (2 * LOG.size - 1)


def test_roots_and_proofs_cost_logarithmically_many_hashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answers for any size combine stored nodes: O(log n) hashes, not O(n)."""
    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)
    for size in (MAX - 1, 2731, 1365):
        for ask in (
            lambda s=size: LOG.root(s),
            lambda s=size: LOG.inclusion_proof(s // 3, s),
            lambda s=size: LOG.inclusion_proof(s - 1, s),
            lambda s=size: LOG.consistency_proof(s // 2 + 1, s),
        ):
            calls = 0
            ask()
            assert calls <= 2 * ceil_log2(size)


def test_hex_proofs_round_trip_and_reject_wrong_lengths() -> None:
    """The JSON form is lowercase hex of exactly 32 bytes per hash."""
    proof = LOG.inclusion_proof(3, 7)
    assert proof_from_hex(proof_to_hex(proof)) == proof
    assert all(len(h) == 64 and h == h.lower() for h in proof_to_hex(proof))
    with pytest.raises(ValueError, match="32 bytes"):
        proof_from_hex(["ab" * 31])
    with pytest.raises(ValueError, match="non-hexadecimal"):
        proof_from_hex(["zz" * 32])


def test_a_200k_leaf_log_answers_a_thousand_of_each_proof() -> None:
    """A sanity run at scale (not timed); every 50th proof is verified."""
    rng = random.Random(9162)
    log = MerkleLog(LEAVES)
    log.extend(i.to_bytes(32, "big") for i in range(MAX, 200_000))
    assert log.size == 200_000
    for i in range(1_000):
        size = rng.randint(1, log.size)
        index, old = rng.randrange(size), rng.randint(1, size)
        path = log.inclusion_proof(index, size)
        proof = log.consistency_proof(old, size)
        if i % 50 == 0:
            leaf = LEAVES[index] if index < MAX else index.to_bytes(32, "big")
            root = log.root(size)
            assert verify_inclusion(leaf, index, size, path, root)
            assert verify_consistency(old, size, log.root(old), root, proof)
