"""RFC 9162 (Certificate Transparency v2) Merkle tree over the event hash chain.

``MerkleLog`` proves that an event is in the log (inclusion) and that a later
log extends an earlier one (consistency). The verifiers below need nothing but
this module and ``hashlib``, so an auditor can run them against published tree
heads without trusting the rest of Conductor.

Storage: ``_levels[k]`` is one flat ``bytearray`` of the 32-byte hashes of the
complete, aligned subtrees of 2**k leaves (level 0 holds the leaf hashes).
Each append adds one leaf hash and completes at most one node per level, so
the tree costs ~2 x 32 bytes per leaf and amortised O(1) hashes per append.
Any MTH(D[0:n]) for n <= size is one stored node per set bit of n folded
right to left, so roots and proofs for every past size cost O(log n) hashes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}): the root of the empty tree is the hash of the empty string."""

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): the RFC's k."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) straight from the RFC's recursive definition (O(n); for tests)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(leaves[0])
    k = _split(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


class MerkleLog:
    """Append-only in-memory Merkle tree; roots and proofs for any past size."""

    __slots__ = ("_levels",)

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaves)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return len(self._levels[0]) // HASH_SIZE

    def __len__(self) -> int:
        return self.size

    def append(self, leaf_data: bytes) -> int:
        """Add one leaf (e.g. a raw 32-byte event hash); return the new size."""
        levels = self._levels
        node = leaf_hash(leaf_data)
        level = 0
        while True:
            row = levels[level]
            row += node
            # An odd count means this node is a left child still waiting for
            # its sibling; an even count completes a parent one level up.
            if (len(row) // HASH_SIZE) & 1:
                break
            node = hashlib.sha256(_NODE + row[-2 * HASH_SIZE :]).digest()
            level += 1
            if level == len(levels):
                levels.append(bytearray())
        return len(levels[0]) // HASH_SIZE

    def extend(self, leaves: Iterable[bytes]) -> int:
        """Append every leaf in order; return the new size."""
        for leaf in leaves:
            self.append(leaf)
        return self.size

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them)."""
        size = self.size if size is None else size
        self._check_size(size, "size")
        return self._range_hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]) (RFC 9162 §2.1.3.1), deepest sibling first."""
        self._check_size(size, "size")
        if not 0 <= index < size:
            msg = f"leaf index {index} is outside a tree of size {size}"
            raise ValueError(msg)
        start, end = 0, size
        siblings: list[bytes] = []
        # Walk down from the root. Once the walk turns left it is inside a
        # complete subtree, so only one sibling (a right spine) costs more
        # than a lookup: O(log n) hashes in all.
        while end - start > 1:
            k = _split(end - start)
            mid = start + k
            if index < mid:
                siblings.append(self._range_hash(mid, end))
                end = mid
            else:
                siblings.append(self._complete(start, k))
                start = mid
        siblings.reverse()
        return siblings

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[new_size]) (RFC 9162 §2.1.4.1).

        Empty when ``old_size`` is 0 or equal to ``new_size``: there is nothing
        to prove, and ``verify_consistency`` accepts exactly those cases.
        """
        self._check_size(new_size, "new_size")
        if not 0 <= old_size <= new_size:
            msg = f"old_size {old_size} must be between 0 and new_size {new_size}"
            raise ValueError(msg)
        if old_size in {0, new_size}:
            return []
        start, end = 0, new_size
        whole = True  # SUBPROOF's b: still on the path of the original PROOF
        nodes: list[bytes] = []
        while True:
            n, m = end - start, old_size - start
            if m == n:
                if not whole:
                    nodes.append(self._range_hash(start, end))
                break
            k = _split(n)
            mid = start + k
            if m <= k:
                nodes.append(self._range_hash(mid, end))
                end = mid
            else:
                nodes.append(self._complete(start, k))
                start = mid
                whole = False
        nodes.reverse()
        return nodes

    def _check_size(self, size: int, name: str) -> None:
        if not 0 <= size <= self.size:
            msg = f"{name} {size} is outside 0..{self.size} (the current size)"
            raise ValueError(msg)

    def _complete(self, start: int, width: int) -> bytes:
        """Stored hash of the complete subtree D[start:start+width]."""
        level = width.bit_length() - 1
        offset = (start >> level) * HASH_SIZE
        return bytes(self._levels[level][offset : offset + HASH_SIZE])

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a non-empty range the RFC recursion produces.

        Such a range starts on a multiple of the smallest power of two >= its
        width, so it splits into complete stored subtrees, one per set bit of
        the width, largest first; MTH folds them together right to left.
        """
        parts: list[bytes] = []
        width = end - start
        while width:
            chunk = 1 << (width.bit_length() - 1)
            parts.append(self._complete(start, chunk))
            start += chunk
            width -= chunk
        node = parts.pop()
        while parts:
            node = node_hash(parts.pop(), node)
        return node


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _well_formed(proof: Sequence[bytes], *hashes: bytes) -> bool:
    """True if every proof element and given hash is 32 bytes (never raises)."""
    try:
        return all(_is_hash(h) for h in hashes) and all(_is_hash(p) for p in proof)
    except TypeError:  # not iterable at all
        return False


def verify_inclusion(
    leaf_data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof as in RFC 9162 §2.1.3.2; False if malformed."""
    if not _well_formed(proof, root) or not isinstance(leaf_data, bytes | bytearray):
        return False
    if not 0 <= index < size:  # step 1
        return False
    fn, sn = index, size - 1  # step 2
    r = leaf_hash(leaf_data)  # step 3
    for p in proof:  # step 4
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # fn is the last node of its level: skip the levels where it
                # has no right sibling (the tree's unbalanced right edge).
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root  # step 5


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """Check a consistency proof as in RFC 9162 §2.1.4.2; False if malformed.

    The RFC covers 0 < old_size < new_size. The two trivial cases accept only
    an empty proof: equal sizes need equal roots, and the empty tree (size 0)
    is a prefix of every tree but must have the empty-tree root.
    """
    if not _well_formed(proof, old_root, new_root):
        return False
    if not 0 <= old_size <= new_size:
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    return _consistent(old_size, new_size, old_root, new_root, list(proof))


def _consistent(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2 steps 1-7, in the RFC's names, for 0 < first < second."""
    if not path:  # step 1
        return False
    if first & (first - 1) == 0:  # step 2: the old tree is a single stored node
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_hash and sr == second_hash  # step 7


def proof_to_hex(proof: Sequence[bytes]) -> list[str]:
    """Proof hashes as lowercase hex strings, for JSON."""
    return [bytes(p).hex() for p in proof]


def proof_from_hex(items: Sequence[str]) -> list[bytes]:
    """Parse hex proof hashes from JSON; ValueError unless each is 32 bytes."""
    proof = [bytes.fromhex(item) for item in items]
    if not all(len(p) == HASH_SIZE for p in proof):
        msg = f"every proof hash must be {HASH_SIZE} bytes ({2 * HASH_SIZE} hex)"
        raise ValueError(msg)
    return proof
