"""Deterministic CBOR: the one way values become bytes, and strict decoding back.

Theory of operation (DESIGN.md, "Canonical encoding and signatures"):

- The data model on the wire is deliberately small: int (64-bit), bool, None, str,
  bytes, list, and maps with str keys. No floats, no tags, no undefined or simple
  values, no indefinite lengths. Money, energy, power and time are integers.
- `encode` writes RFC 8949 core deterministic encoding (cbor2 `canonical=True`:
  shortest integer and length heads, map keys sorted bytewise; with str keys only,
  length-first and bytewise order coincide).
- `decode` checks the size cap *before* parsing, then scans the raw bytes (`_scan`)
  before cbor2 sees them, one step per item, so the work any input can cause is linear
  in its size (a 4 MiB frame of one-byte items, the worst, scans in under a second).
  Only the heads of the data model pass: no tag of any kind (so no value sharing and no
  "billion laughs" expansion), no float or simple value but false, true and null, no
  indefinite length, no string or container claiming more items than bytes remain, no
  nesting past MAX_DEPTH (MALFORMED otherwise); and every integer and length in its
  shortest head, nothing after the value (NON_CANONICAL otherwise). cbor2 then parses,
  refusing a map key twice (MALFORMED), and keeps each map's keys in the order of the
  bytes. The deterministic key order is checked on the parsed maps: records and
  envelopes compare their keys with their fields' `key_order` (one list comparison),
  other callers get a walk of the result that refuses anything outside the data model
  and any map out of order (`in_key_order`). So one value has exactly one accepted
  encoding (no malleability) without re-encoding it to compare; a property test holds
  the decoder to cbor2's `canonical=True` output.
- Every failure is a `DecodeError` with a reason code; cbor2's own exceptions never
  escape.
"""

from __future__ import annotations

from typing import Any

import cbor2

from ._errors import DecodeError, InvalidValue, Reason

MAX_MESSAGE_SIZE = 64 * 1024
MAX_DEPTH = 16
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1


def _check_plain(value: Any, depth: int = 0, decoded: bool = False) -> str | None:
    """Return why `value` is outside the wire data model, or None if it is inside; a
    `decoded` value's maps must also have come in deterministic key order."""
    if depth > MAX_DEPTH:
        return "nested too deeply"
    kind = type(value)
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else "integer out of 64-bit range"
    if kind in (str, bytes, bool) or value is None:
        return None
    if kind is list:
        for item in value:
            if (why := _check_plain(item, depth + 1, decoded)) is not None:
                return why
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return "map key is not a text string"
            if (why := _check_plain(item, depth + 1, decoded)) is not None:
                return why
        return _UNORDERED if decoded and not in_key_order(value) else None
    return f"{kind.__name__} is not allowed on the wire"


_UNORDERED = "map keys not in deterministic order"


def in_key_order(value: dict[str, Any]) -> bool:
    """True if a decoded map's keys came in deterministic order (cbor2 keeps the order of
    the bytes): what the decoder's callers check, as the scan does not look at keys."""
    keys = list(value)
    return keys == sorted(keys, key=key_order)


_SIMPLE_ALLOWED = frozenset({0xF4, 0xF5, 0xF6})  # false, true, null
_SHORTEST = {24: 24, 25: 1 << 8, 26: 1 << 16, 27: 1 << 32}  # least argument each head size may carry


def _scan(data: bytes) -> tuple[Reason, str] | None:
    """Why `data` is not one value of the wire subset with shortest heads, or None (see
    the module doc). A fault of the subset (MALFORMED) outranks a longer head than needed
    (NON_CANONICAL), which is noted and reported at the end. Written for speed: every
    decode pays for it per item."""
    pos, end = 0, len(data)
    shortest = True
    left = [1]  # items still to read at each open level
    while left:
        count = left[-1]
        if not count:
            left.pop()
            continue
        left[-1] = count - 1
        if pos >= end:
            return Reason.MALFORMED, "truncated"
        initial = data[pos]
        pos += 1
        major = initial >> 5
        info = initial & 0x1F
        if info < 24:
            argument = info
        elif info < 28:
            size = 1 << (info - 24)
            if pos + size > end:
                return Reason.MALFORMED, "truncated"
            argument = int.from_bytes(data[pos:pos + size], "big")
            pos += size
            shortest = shortest and argument >= _SHORTEST[info]
        elif major != 7:
            return Reason.MALFORMED, "indefinite lengths are not allowed"
        if major < 2:
            continue
        if major < 4:
            if argument > end - pos:
                return Reason.MALFORMED, "a string longer than the data"
            pos += argument
        elif major < 6:
            items = argument * 2 if major == 5 else argument
            if items > end - pos:
                return Reason.MALFORMED, "a container with more items than bytes"
            if len(left) > MAX_DEPTH:
                return Reason.MALFORMED, "nested too deeply"
            left.append(items)
        elif major == 6:
            return Reason.MALFORMED, "tags are not allowed"
        elif initial not in _SIMPLE_ALLOWED:
            return Reason.MALFORMED, "floats and simple values other than false, true and null are not allowed"
    if not shortest:
        return Reason.NON_CANONICAL, "a number or length not in its shortest form"
    if pos != end:
        return Reason.NON_CANONICAL, "bytes after the value"
    return None


def key_order(key: str) -> tuple[int, bytes]:
    """Where a text map key sorts in the deterministic encoding (its encoded bytes:
    length first, then bytewise)."""
    data = key.encode()
    return len(data), data


def encode(value: Any, *, checked: bool = False) -> bytes:
    """Deterministic CBOR of a plain value; raises InvalidValue outside the data model.

    `checked=True` is for a record's wire form: inside the data model (every field was
    type-checked when the record was made) and every map already in `key_order`, so
    cbor2 writes it as it comes, without sorting (about four times faster)."""
    if checked:
        return cbor2.dumps(value)
    if (why := _check_plain(value)) is not None:
        raise InvalidValue(f"cannot encode: {why}")
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE, typed: bool = False) -> Any:
    """Strictly decode one canonical CBOR value; raises DecodeError on anything else.

    `typed=True` skips the data-model walk for callers that convert the value with
    exact per-field type checks anyway (records and envelopes), which refuse floats,
    tags' Python values, odd keys and out-of-range integers themselves."""
    if not isinstance(data, bytes):
        raise DecodeError(Reason.MALFORMED, f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise DecodeError(Reason.OVERSIZE, f"{len(data)} bytes exceeds the {max_size} byte cap")
    if (fault := _scan(data)) is not None:
        reason, why = fault
        raise DecodeError(reason, f"not wire CBOR: {why}" if reason is Reason.MALFORMED else why)
    try:
        value = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=MAX_DEPTH + 1)
    except Exception as exc:  # noqa: BLE001 - cbor2 raises several types (and RecursionError, ValueError)
        raise DecodeError(Reason.MALFORMED, f"not valid CBOR: {exc}") from None
    if not typed and (outside := _check_plain(value, decoded=True)) is not None:
        raise DecodeError(Reason.NON_CANONICAL if outside is _UNORDERED else Reason.MALFORMED, outside)
    return value
