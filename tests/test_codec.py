"""Canonical CBOR: exact bytes, strict refusals, and no crash on any input."""

import pytest
from fixtures import shared_value_bomb
from hypothesis import given
from hypothesis import strategies as st

from wattshare.protocol import MAX_MESSAGE_SIZE, DecodeError, InvalidValue, Reason, decode_cbor, encode_cbor

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def test_known_bytes_rfc8949_examples():
    # RFC 8949 Appendix A, and core deterministic map key order (bytewise on encoded keys)
    assert encode_cbor(0) == bytes.fromhex("00")
    assert encode_cbor(23) == bytes.fromhex("17")
    assert encode_cbor(24) == bytes.fromhex("1818")
    assert encode_cbor(1000000) == bytes.fromhex("1a000f4240")
    assert encode_cbor(-1000) == bytes.fromhex("3903e7")
    assert encode_cbor("IETF") == bytes.fromhex("6449455446")
    assert encode_cbor([1, [2, 3]]) == bytes.fromhex("8201820203")
    assert encode_cbor({"b": 1, "a": 2, "aa": 3}) == bytes.fromhex("a3616102616201626161" "03")


@given(plain)
def test_round_trip(value):
    assert decode_cbor(encode_cbor(value)) == value


@pytest.mark.parametrize(
    "hex_bytes, reason",
    [
        ("fb3ff8000000000000", Reason.MALFORMED),  # float 1.5
        ("f93e00", Reason.MALFORMED),  # half float
        ("c11a514b67b0", Reason.MALFORMED),  # tag 1 (epoch datetime)
        ("d9010283010203", Reason.MALFORMED),  # tag 258 (set)
        ("f7", Reason.MALFORMED),  # undefined
        ("e0", Reason.MALFORMED),  # simple value 0
        ("5f41014102ff", Reason.MALFORMED),  # indefinite-length byte string
        ("a2616101616102", Reason.MALFORMED),  # duplicate map key
        ("a10102", Reason.MALFORMED),  # integer map key
        ("1817", Reason.NON_CANONICAL),  # 23 in two bytes
        ("190001", Reason.NON_CANONICAL),  # 1 in three bytes
        ("a2616201616102", Reason.NON_CANONICAL),  # keys out of order
        ("0000", Reason.NON_CANONICAL),  # trailing byte
        ("c249010000000000000000", Reason.MALFORMED),  # bignum above 64 bits
        ("", Reason.MALFORMED),  # empty
        ("9b7fffffffffffffff", Reason.MALFORMED),  # absurd declared length
        ("81" * 40 + "00", Reason.MALFORMED),  # nested too deeply
    ],
)
def test_refusals(hex_bytes, reason):
    with pytest.raises(DecodeError) as caught:
        decode_cbor(bytes.fromhex(hex_bytes))
    assert caught.value.reason is reason


@pytest.mark.parametrize("data", [
    bytes.fromhex("d81c81d81d00"),  # a cyclic value: shareable([sharedref(0)]), six bytes
    shared_value_bomb(),
    bytes.fromhex("82") + bytes.fromhex("d81c81d81d00"),  # the same, one level down
], ids=["cycle", "billion-laughs", "nested-cycle"])
def test_value_sharing_tags_are_refused_before_the_parser_sees_them(data, monkeypatch):
    import wattshare.protocol._codec as codec

    def never(*args, **kwargs):
        raise AssertionError("cbor2 must not parse a frame with tags")

    monkeypatch.setattr(codec.cbor2, "loads", never)
    with pytest.raises(DecodeError) as caught:
        decode_cbor(data)
    assert caught.value.reason is Reason.MALFORMED and "tags are not allowed" in caught.value.message


@pytest.mark.parametrize("hex_bytes, why", [
    ("5a00010000" + "00" * 10, "a string longer than the data"),
    ("9a00010000" + "00" * 10, "a container with more items than bytes"),
    ("b900ff" + "00" * 10, "a container with more items than bytes"),  # a map: two items per entry
    ("1b0000", "truncated"),
    ("828101", "truncated"),  # the outer array's second item is missing
])
def test_lengths_are_checked_against_the_bytes_before_anything_is_built(hex_bytes, why):
    with pytest.raises(DecodeError) as caught:
        decode_cbor(bytes.fromhex(hex_bytes))
    assert caught.value.reason is Reason.MALFORMED and why in caught.value.message


def test_size_cap_is_checked_before_parsing():
    big = encode_cbor(b"x" * MAX_MESSAGE_SIZE)
    with pytest.raises(DecodeError) as caught:
        decode_cbor(big)
    assert caught.value.reason is Reason.OVERSIZE
    assert decode_cbor(big, max_size=len(big)) == b"x" * MAX_MESSAGE_SIZE


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_the_typed_error(data):
    try:
        value = decode_cbor(data)
    except DecodeError:
        return
    assert encode_cbor(value) == data


@pytest.mark.parametrize("value", [1.5, {1: 2}, 2**64, {"a": [float("nan")]}, object()])
def test_encoding_outside_the_data_model_is_a_local_error(value):
    with pytest.raises(InvalidValue):
        encode_cbor(value)


@given(plain, st.randoms(use_true_random=False))
def test_the_scan_accepts_exactly_the_deterministic_encoding(value, random):
    """The decoder checks canonical form while scanning (no re-encode): it must accept
    the one encoding cbor2 writes canonically and refuse the same value written another way."""
    import cbor2

    def shuffled(v):
        if isinstance(v, dict):
            items = list(v.items())
            random.shuffle(items)
            return {k: shuffled(x) for k, x in items}
        return [shuffled(x) for x in v] if isinstance(v, list) else v

    canonical = encode_cbor(value)
    other = cbor2.dumps(shuffled(value))  # map keys in insertion order
    assert decode_cbor(canonical) == value
    if other != canonical:
        with pytest.raises(DecodeError) as caught:
            decode_cbor(other)
        assert caught.value.reason is Reason.NON_CANONICAL
