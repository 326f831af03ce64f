"""RFC 6962 / 9162 Merkle trees: known answers, agreement with the naive RFC definitions, tamper refusal."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattshare.ledger._merkle import (
    EMPTY_ROOT,
    MerkleLog,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# --- The naive reference, straight from RFC 6962 section 2.1, over entry data (not leaf hashes) ---


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]), RFC 6962 2.1."""
    if not d:
        return sha256(b"")
    if len(d) == 1:
        return sha256(b"\x00" + d[0])
    k = split(len(d))
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 6962 2.1.1."""
    if len(d) == 1:
        return []
    k = split(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 6962 2.1.2."""
    if m == len(d):
        return [] if complete else [mth(d)]
    k = split(len(d))
    if m <= k:
        return subproof(m, d[:k], complete) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def entries(n: int, tag: bytes = b"e") -> list[bytes]:
    return [tag + i.to_bytes(4, "big") for i in range(n)]


def log_of(data: list[bytes]) -> MerkleLog:
    return MerkleLog(leaf_hash(x) for x in data)


def flip(proof: list[bytes], element: int, bit: int) -> list[bytes]:
    tampered = list(proof)
    word = bytearray(tampered[element])
    word[bit // 8] ^= 1 << (bit % 8)
    tampered[element] = bytes(word)
    return tampered


# --- Known answers: certificate-transparency merkle_tree_test.cc / transparency-dev/merkle testonly ---

CT_DATA = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_LEAVES = [bytes.fromhex(h) for h in CT_DATA]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H = {  # node hashes of the CT tree, named by the leaf range they cover
    "0": "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "1": "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0-1": "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "2-3": "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0-3": "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4": "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "5": "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "6": "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "4-5": "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "6-7": "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    "4-7": "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
}
CT_INCLUSION = [  # (0-based leaf index, tree size, audit path)
    (0, 1, []),
    (0, 2, ["1"]),
    (1, 2, ["0"]),
    (2, 3, ["0-1"]),
    (1, 5, ["0", "2-3", "4"]),
    (0, 8, ["1", "2-3", "4-7"]),
    (5, 8, ["4", "6-7", "0-3"]),
]
CT_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["1", "2-3", "4-7"]),
    (6, 8, ["4-5", "6-7", "0-3"]),
    (2, 5, ["2-3", "4"]),
    (6, 7, ["4-5", "6", "0-3"]),
]


def test_empty_tree_and_hash_primitives():
    assert EMPTY_ROOT.hex() == hashlib.sha256(b"").hexdigest()
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root([]) == EMPTY_ROOT == mth([]) == MerkleLog().root() == MerkleLog().root_at(0)
    # transparency-dev/merkle rfc6962_test.go
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_roots(size):
    expected = bytes.fromhex(CT_ROOTS[size - 1])
    assert mth(CT_LEAVES[:size]) == expected  # the naive reference agrees with the published vector
    assert root([leaf_hash(x) for x in CT_LEAVES[:size]]) == expected
    assert log_of(CT_LEAVES).root_at(size) == expected
    assert log_of(CT_LEAVES[:size]).root() == expected


def test_ct_node_hashes():
    for name, value in H.items():
        first, _, last = name.partition("-")
        assert mth(CT_LEAVES[int(first) : int(last or first) + 1]).hex() == value


@pytest.mark.parametrize("index, size, names", CT_INCLUSION)
def test_ct_inclusion_proofs(index, size, names):
    expected = [bytes.fromhex(H[name]) for name in names]
    assert path(index, CT_LEAVES[:size]) == expected
    assert log_of(CT_LEAVES).inclusion_proof(index, size) == expected
    leaf = leaf_hash(CT_LEAVES[index])
    assert verify_inclusion(leaf, index, size, expected, bytes.fromhex(CT_ROOTS[size - 1]))


@pytest.mark.parametrize("old, new, names", CT_CONSISTENCY)
def test_ct_consistency_proofs(old, new, names):
    expected = [bytes.fromhex(H[name]) for name in names]
    if old < new:
        assert subproof(old, CT_LEAVES[:new], True) == expected
    assert log_of(CT_LEAVES).consistency_proof(old, new) == expected
    old_root, new_root = (bytes.fromhex(CT_ROOTS[s - 1]) for s in (old, new))
    assert verify_consistency(old, new, old_root, new_root, expected)


# --- Every proof of every tree up to 64 leaves against the naive reference ---

DATA = entries(64)
LOG = log_of(DATA)


@pytest.mark.parametrize("size", range(1, 65))
def test_all_proofs_match_the_rfc_definitions(size):
    data = DATA[:size]
    tree_root = mth(data)
    assert log_of(data).root() == tree_root == LOG.root_at(size)
    for index in range(size):
        proof = LOG.inclusion_proof(index, size)
        assert proof == path(index, data)
        assert verify_inclusion(leaf_hash(data[index]), index, size, proof, tree_root)
    for old in range(1, size + 1):
        proof = LOG.consistency_proof(old, size)
        assert proof == (subproof(old, data, True) if old < size else [])
        assert verify_consistency(old, size, mth(DATA[:old]), tree_root, proof)
    assert LOG.consistency_proof(0, size) == []
    assert verify_consistency(0, size, EMPTY_ROOT, tree_root, [])


def test_incremental_root_after_every_append():
    leaves = [leaf_hash(x) for x in entries(300)]
    log = MerkleLog()
    assert log.size == 0
    for n, leaf in enumerate(leaves, start=1):
        log.append(leaf)
        assert log.size == n
        assert log.root() == root(leaves[:n])
    for k in range(301):
        assert log.root_at(k) == mth(entries(300)[:k])


# --- Tampering and malformed input ---

TAMPER_SIZES = [(i, s) for s in (1, 2, 3, 5, 7, 8, 13, 16, 33) for i in range(s)]


@pytest.mark.parametrize("index, size", TAMPER_SIZES)
def test_tampered_inclusion_proofs_fail(index, size):
    leaf, tree_root = leaf_hash(DATA[index]), LOG.root_at(size)
    proof = LOG.inclusion_proof(index, size)
    assert verify_inclusion(leaf, index, size, proof, tree_root)
    for element in range(len(proof)):
        for bit in (0, 3, 255):
            assert not verify_inclusion(leaf, index, size, flip(proof, element, bit), tree_root)
    for wrong_index in {index - 1, index + 1, index ^ 2} - {index}:
        assert not verify_inclusion(leaf, wrong_index, size, proof, tree_root)
    for wrong_size in {size * 2, size // 2} - {size}:  # sizes with a different path shape (see below)
        assert not verify_inclusion(leaf, index, wrong_size, proof, tree_root)
    assert not verify_inclusion(leaf_hash(b"wrong"), index, size, proof, tree_root)
    assert not verify_inclusion(leaf, index, size, proof, EMPTY_ROOT)
    assert not verify_inclusion(flip([leaf], 0, 7)[0], index, size, proof, tree_root)
    assert not verify_inclusion(leaf, index, size, proof + [tree_root], tree_root)
    assert not verify_inclusion(leaf, index, size, [tree_root] + proof, tree_root)
    if proof:
        assert not verify_inclusion(leaf, index, size, proof[:-1], tree_root)
        assert not verify_inclusion(leaf, index, size, proof[1:], tree_root)


@pytest.mark.parametrize("old, new", [(o, n) for n in (2, 3, 5, 8, 11, 16, 17, 33) for o in range(1, n)])
def test_tampered_consistency_proofs_fail(old, new):
    old_root, new_root = LOG.root_at(old), LOG.root_at(new)
    proof = LOG.consistency_proof(old, new)
    assert verify_consistency(old, new, old_root, new_root, proof)
    for element in range(len(proof)):
        for bit in (0, 3, 255):
            assert not verify_consistency(old, new, old_root, new_root, flip(proof, element, bit))
    assert not verify_consistency(old, new, flip([old_root], 0, 1)[0], new_root, proof)
    assert not verify_consistency(old, new, old_root, flip([new_root], 0, 1)[0], proof)
    assert not verify_consistency(old, new, new_root, new_root, proof)
    for wrong_old in {old - 1, old + 1} - {0, old, new}:
        assert not verify_consistency(wrong_old, new, old_root, new_root, proof)
    assert not verify_consistency(old, new * 2, old_root, new_root, proof)
    assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
    assert not verify_consistency(old, new, old_root, new_root, [])
    assert not verify_consistency(old, new, old_root, new_root, proof + [new_root])
    assert not verify_consistency(old, new, old_root, new_root, [old_root] + proof)


def test_forked_history_cannot_prove_consistency():
    """Two logs that agree on nothing but old_size: no proof from either links one's old root to the other."""
    for old in range(1, 17):
        for new in range(old + 1, 33):
            forked = DATA[: old - 1] + [b"rewritten"] + DATA[old:new]  # last old entry changed
            forked_old_root = mth(forked[:old])
            honest_new_root = LOG.root_at(new)
            for proof in (LOG.consistency_proof(old, new), log_of(forked).consistency_proof(old, new)):
                assert not verify_consistency(old, new, forked_old_root, honest_new_root, proof)
                assert not verify_consistency(old, new, LOG.root_at(old), mth(forked), proof)


def test_tree_size_comes_from_the_tree_head_not_the_proof():
    """RFC 9162 proofs do not commit to the tree size: sizes whose paths have the same shape verify alike.

    A caller must therefore take the size from the same signed tree head as the root it checks against.
    """
    proof, root3 = LOG.inclusion_proof(0, 3), LOG.root_at(3)
    assert verify_inclusion(leaf_hash(DATA[0]), 0, 3, proof, root3)
    assert verify_inclusion(leaf_hash(DATA[0]), 0, 4, proof, root3)
    assert not verify_inclusion(leaf_hash(DATA[0]), 0, 6, proof, root3)


def test_edge_sizes():
    leaf = leaf_hash(b"only")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [leaf], leaf)
    assert not verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaf, 1, 1, [], leaf)
    r5, r8 = LOG.root_at(5), LOG.root_at(8)
    assert verify_consistency(5, 5, r5, r5, [])
    assert not verify_consistency(5, 5, r5, r8, [])
    assert not verify_consistency(5, 5, r5, r5, [r5])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 8, EMPTY_ROOT, r8, [r8])
    assert not verify_consistency(0, 8, r5, r8, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, r8, [])
    assert not verify_consistency(8, 5, r8, r5, LOG.consistency_proof(5, 8))


@pytest.mark.parametrize(
    "proof",
    [[b""], [b"\x00" * 31], [b"\x00" * 33], ["x" * 32], [None], None, 7, b"\x00" * 32, "ab", [bytearray(32)]],
)
def test_malformed_proofs_return_false(proof):
    leaf, tree_root = leaf_hash(DATA[0]), LOG.root_at(2)
    assert verify_inclusion(leaf, 0, 2, proof, tree_root) is False
    assert verify_consistency(1, 2, leaf, tree_root, proof) is False


@pytest.mark.parametrize(
    "args",
    [(-1, 2), (0, 2.0), (True, 2), (0, -1), (2, 2), (0, "2")],
)
def test_malformed_arguments_return_false(args):
    index, size = args
    proof = LOG.inclusion_proof(0, 2)
    assert verify_inclusion(leaf_hash(DATA[0]), index, size, proof, LOG.root_at(2)) is False
    assert verify_consistency(index, size, leaf_hash(DATA[0]), LOG.root_at(2), [leaf_hash(DATA[1])]) is False
    assert verify_consistency(1, 2, None, LOG.root_at(2), [leaf_hash(DATA[1])]) is False
    assert verify_inclusion(None, 0, 2, proof, LOG.root_at(2)) is False


def test_invalid_arguments_raise():
    log = log_of(DATA[:8])
    for call in (
        lambda: log.root_at(9),
        lambda: log.root_at(-1),
        lambda: log.inclusion_proof(8, 8),
        lambda: log.inclusion_proof(-1, 8),
        lambda: log.inclusion_proof(0, 9),
        lambda: log.inclusion_proof(0, 0),
        lambda: log.consistency_proof(5, 4),
        lambda: log.consistency_proof(-1, 4),
        lambda: log.consistency_proof(4, 9),
        lambda: log.append(b"short"),
        lambda: log.append("x" * 32),
    ):
        with pytest.raises(ValueError):
            call()
    assert log.size == 8


# --- Property-based ---

leaf_data = st.lists(st.binary(max_size=12), min_size=1, max_size=80)


@settings(deadline=None, max_examples=150)
@given(leaf_data, st.data())
def test_random_inclusion_proofs_verify_and_flips_fail(data, draw):
    log = log_of(data)
    size = draw.draw(st.integers(1, len(data)), label="size")
    index = draw.draw(st.integers(0, size - 1), label="index")
    proof, tree_root = log.inclusion_proof(index, size), log.root_at(size)
    assert tree_root == mth(data[:size])
    assert proof == path(index, data[:size])
    assert verify_inclusion(leaf_hash(data[index]), index, size, proof, tree_root)
    if proof:
        element = draw.draw(st.integers(0, len(proof) - 1), label="element")
        bit = draw.draw(st.integers(0, 255), label="bit")
        assert not verify_inclusion(leaf_hash(data[index]), index, size, flip(proof, element, bit), tree_root)
    bit = draw.draw(st.integers(0, 255), label="root bit")
    assert not verify_inclusion(leaf_hash(data[index]), index, size, proof, flip([tree_root], 0, bit)[0])


@settings(deadline=None, max_examples=150)
@given(leaf_data, st.data())
def test_random_consistency_proofs_verify_and_flips_fail(data, draw):
    log = log_of(data)
    new = draw.draw(st.integers(1, len(data)), label="new")
    old = draw.draw(st.integers(1, new), label="old")
    proof = log.consistency_proof(old, new)
    old_root, new_root = log.root_at(old), log.root_at(new)
    assert verify_consistency(old, new, old_root, new_root, proof)
    if proof:
        element = draw.draw(st.integers(0, len(proof) - 1), label="element")
        bit = draw.draw(st.integers(0, 255), label="bit")
        assert not verify_consistency(old, new, old_root, new_root, flip(proof, element, bit))
    bit = draw.draw(st.integers(0, 255), label="root bit")
    assert not verify_consistency(old, new, flip([old_root], 0, bit)[0], new_root, proof)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.binary(max_size=8), max_size=100))
def test_random_incremental_roots(data):
    leaves = [leaf_hash(x) for x in data]
    log = MerkleLog()
    for n, leaf in enumerate(leaves, start=1):
        log.append(leaf)
        assert log.root() == root(leaves[:n])
    assert log.root() == mth(data)
    assert MerkleLog(leaves).root() == log.root()


def test_truncate_returns_to_an_earlier_tree():
    leaves = [leaf_hash(bytes([i])) for i in range(20)]
    log = MerkleLog(leaves)
    log.truncate(7)
    assert log.size == 7 and log.root() == root(leaves[:7])
    log.append(leaves[7])
    assert log.root() == root(leaves[:8])
    with pytest.raises(ValueError):
        log.truncate(9)


@given(st.integers(1, 80), st.integers(0, 40))
def test_a_log_resumed_from_its_frontier_gives_the_same_later_roots_and_no_proofs(size, more):
    leaves = [leaf_hash(bytes([i % 256, i // 256])) for i in range(size + more)]
    full = MerkleLog(leaves)
    resumed = MerkleLog.resume(size, MerkleLog(leaves[:size]).frontier)
    for leaf in leaves[size:]:
        resumed.append(leaf)
    assert resumed.size == full.size and resumed.root() == full.root()
    assert [resumed.root_at(n) for n in range(size, size + more + 1)] == [full.root_at(n) for n in range(size, size + more + 1)]
    with pytest.raises(ValueError, match="resumed"):
        resumed.inclusion_proof(0, size)
    if size > 1:
        with pytest.raises(ValueError, match="resumed"):
            resumed.root_at(size - 1)
    with pytest.raises(ValueError, match="not one of a tree"):
        MerkleLog.resume(size + 1, MerkleLog(leaves[:size]).frontier)
