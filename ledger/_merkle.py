"""RFC 6962 / RFC 9162 Merkle tree hashing with inclusion and consistency proofs.

Each ledger feed is a Merkle tree over its entries' bytes, so that an entry is in
a feed, and that a feed only grew by appending, both have O(log n) proofs.

Theory of operation (RFC 9162 section 2.1.1): a leaf hashes to
SHA256(0x00 || data), an interior node to SHA256(0x01 || left || right), and the
empty tree to SHA256(b""). A tree of n > 1 leaves splits at k, the largest power
of two smaller than n: its left subtree is the perfect tree over the first k
leaves and its right subtree is the tree over the rest.

`MerkleLog` keeps every leaf hash plus a frontier: the roots of the perfect
subtrees that make up the tree, largest first (one per set bit of the size).
Appending merges equal-sized frontier entries like a binary counter, and the
root folds the frontier from the right, so both are O(log n). Historical roots
and proofs recompute subtree hashes from the stored leaves (RFC 6962 PATH and
SUBPROOF), O(n) at worst and with nothing memoised. A log can also `resume` from
a size and its frontier alone (an incremental audit does): it appends and gives
the roots at that size and later, replayed from the frontier, but no proofs.

`verify_inclusion` and `verify_consistency` are the bit-walking algorithms of
RFC 9162 sections 2.1.3.2 and 2.1.4.2. They never raise: any malformed input
(bad sizes, wrong proof length, elements that are not 32-byte hashes) is False.
A proof does not commit to the tree size, so callers must take sizes and roots
from the same signed tree heads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _push(frontier: list[tuple[int, bytes]], leaf: bytes) -> None:
    """Append one leaf hash to a frontier of (subtree size, subtree hash), largest first."""
    frontier.append((1, leaf))
    while len(frontier) > 1 and frontier[-2][0] == frontier[-1][0]:
        (size, left), (_, right) = frontier[-2], frontier.pop()
        frontier[-1] = (2 * size, node_hash(left, right))


def _fold(frontier: list[tuple[int, bytes]]) -> bytes:
    if not frontier:
        return EMPTY_ROOT
    acc = frontier[-1][1]
    for _, subtree in reversed(frontier[:-1]):
        acc = node_hash(subtree, acc)
    return acc


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of the given leaf hashes (EMPTY_ROOT for none)."""
    frontier: list[tuple[int, bytes]] = []
    for leaf in leaves:
        _push(frontier, leaf)
    return _fold(frontier)


class MerkleLog:
    """An append-only Merkle tree over leaf hashes (each already `leaf_hash(data)`)."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._base: tuple[int, list[tuple[int, bytes]]] = (0, [])  # (size, frontier) it resumed from
        self._leaves: list[bytes] = []  # the leaves after the base
        self._frontier: list[tuple[int, bytes]] = []
        self._cursor = self._base  # the last earlier root asked for: a later one replays from it
        for leaf in leaves:
            self.append(leaf)

    @classmethod
    def resume(cls, size: int, frontier: Sequence[tuple[int, bytes]]) -> MerkleLog:
        """A log of `size` leaves known only by its frontier (see the module doc)."""
        if sum(width for width, _ in frontier) != size or not all(_is_hash(h) for _, h in frontier):
            raise ValueError(f"that frontier is not one of a tree of {size} leaves")
        log = cls()
        log._base = log._cursor = (size, list(frontier))
        log._frontier = list(frontier)
        return log

    @property
    def frontier(self) -> list[tuple[int, bytes]]:
        """The (subtree size, subtree hash) pairs the tree is made of, largest first."""
        return list(self._frontier)

    def append(self, leaf: bytes) -> None:
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf must be a {HASH_SIZE}-byte leaf hash (leaf_hash(data)), got {leaf!r:.60}")
        self._leaves.append(leaf)
        _push(self._frontier, leaf)

    def truncate(self, size: int) -> None:
        """Drop every leaf from `size` on (undoing a refused batch, freezing a forked feed)."""
        self._check_size("size", size)
        base, frontier = self._base
        if size < base:
            raise ValueError(f"a resumed log cannot drop below its base of {base} leaves")
        kept = self._leaves[:size - base]
        self._leaves, self._frontier = [], list(frontier)
        if self._cursor[0] > size:
            self._cursor = self._base
        for leaf in kept:
            self.append(leaf)

    @property
    def size(self) -> int:
        return self._base[0] + len(self._leaves)

    @property
    def leaves(self) -> Sequence[bytes]:
        self._whole("its leaves")
        return tuple(self._leaves)

    def root(self) -> bytes:
        return _fold(self._frontier)

    def root_at(self, size: int) -> bytes:
        """Root of the first `size` leaves."""
        self._check_size("size", size)
        if size == self.size:
            return self.root()
        base = self._base[0]
        if size < base:
            self._whole(f"the root at {size}")
        at, frontier = self._cursor if self._cursor[0] <= size else self._base
        replayed = list(frontier)
        for leaf in self._leaves[at - base:size - base]:
            _push(replayed, leaf)
        self._cursor = (size, replayed)
        return _fold(replayed)

    def _whole(self, what: str) -> None:
        if self._base[0]:
            raise ValueError(f"{what}: this log resumed at {self._base[0]} leaves and holds none before")

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 6962 PATH(index, D[0:size]): the audit path of leaf `index` in the tree of `size` leaves."""
        self._check_size("size", size)
        self._whole("a proof")
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of size {size}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            mid = start + _split(end - start)
            if index < mid:
                proof.append(self._hash(mid, end))
                end = mid
            else:
                proof.append(self._hash(start, mid))
                start = mid
        proof.reverse()
        return proof

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 6962 PROOF(old_size, D[0:new_size]); empty when old_size is 0 or equals new_size."""
        self._check_size("new_size", new_size)
        self._whole("a proof")
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old_size {old_size} must be between 0 and new_size {new_size}")
        proof: list[bytes] = []
        if old_size in (0, new_size):
            return proof
        start, end, complete = 0, new_size, True
        while end != old_size:
            mid = start + _split(end - start)
            if old_size <= mid:
                proof.append(self._hash(mid, end))
                end = mid
            else:
                proof.append(self._hash(start, mid))
                start, complete = mid, False
        if not complete:
            proof.append(self._hash(start, end))
        proof.reverse()
        return proof

    def _check_size(self, name: str, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"{name} {size} is outside 0..{self.size} (the log's size)")

    def _hash(self, start: int, end: int) -> bytes:
        """Merkle Tree Hash of leaves[start:end] (end > start)."""
        if end - start == 1:
            return self._leaves[start]
        mid = start + _split(end - start)
        return node_hash(self._hash(start, mid), self._hash(mid, end))


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _as_path(proof: object) -> list[bytes] | None:
    """The proof as a list of hashes, or None if it is not a sequence of 32-byte hashes."""
    if not isinstance(proof, Sequence) or isinstance(proof, (str, bytes, bytearray)):
        return None
    path = list(proof)
    return path if all(_is_hash(p) for p in path) else None


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show leaf hash `leaf` at `index` in the tree of `size` with `root`?"""
    path = _as_path(proof)
    if path is None or not (_is_hash(leaf) and _is_count(index) and _is_count(size) and index < size):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: does `proof` show the tree (new_size, new_root) extends (old_size, old_root)?

    The empty tree (old_root EMPTY_ROOT) precedes every tree, and a tree only itself, both with an empty proof.
    """
    path = _as_path(proof)
    valid_sizes = _is_count(old_size) and _is_count(new_size) and old_size <= new_size
    if path is None or not (valid_sizes and _is_hash(old_root)):
        return False
    if old_size == 0:
        return not path and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
