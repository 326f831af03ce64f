"""Deterministic CBOR: the one way values become bytes, and strict decoding back.

Theory of operation (DESIGN.md, "Canonical encoding and signatures"):

- The data model on the wire is deliberately small: int (64-bit), bool, None, str,
  bytes, list, and maps with str keys. No floats, no tags, no undefined or simple
  values, no indefinite lengths. Money, energy, power and time are integers.
- `encode` writes RFC 8949 core deterministic encoding (cbor2 `canonical=True`:
  shortest integer and length heads, map keys sorted bytewise; with str keys only,
  length-first and bytewise order coincide).
- `decode` checks the size cap *before* parsing, then scans the raw bytes (`_scan`)
  before cbor2 sees them: only the heads of the data model pass (no tag of any kind, so
  no value sharing and no "billion laughs" expansion; no float or simple value but
  false, true and null; no indefinite length; no string or container claiming more
  items than bytes remain; no nesting past MAX_DEPTH), in one step per item, so the
  work any input can cause is linear in its size (a 4 MiB frame of one-byte items,
  the worst, scans in under a second). It then parses with duplicate keys
  refused, walks the result to reject anything outside the data
  model (records do that walk themselves, field by field), and finally re-encodes: the bytes must
  come back identical, so one value has
  exactly one accepted encoding (no malleability, no trailing bytes).
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


def _check_plain(value: Any, depth: int = 0) -> str | None:
    """Return why `value` is outside the wire data model, or None if it is inside."""
    if depth > MAX_DEPTH:
        return "nested too deeply"
    kind = type(value)
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else "integer out of 64-bit range"
    if kind in (str, bytes, bool) or value is None:
        return None
    if kind is list:
        for item in value:
            if (why := _check_plain(item, depth + 1)) is not None:
                return why
        return None
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return "map key is not a text string"
            if (why := _check_plain(item, depth + 1)) is not None:
                return why
        return None
    return f"{kind.__name__} is not allowed on the wire"


_SIMPLE_ALLOWED = frozenset({0xF4, 0xF5, 0xF6})  # false, true, null


def _scan(data: bytes) -> str | None:
    """Why `data` steps outside the wire subset of CBOR, or None (see the module doc)."""
    pos, end = 0, len(data)
    pending = [1]  # items still to read at each open level
    while pending:
        if not pending[-1]:
            pending.pop()
            continue
        pending[-1] -= 1
        if pos >= end:
            return "truncated"
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        if major == 6:
            return "tags are not allowed"
        if major == 7:
            if initial not in _SIMPLE_ALLOWED:
                return "floats and simple values other than false, true and null are not allowed"
            continue
        if info < 24:
            argument = info
        elif info < 28:
            size = 1 << (info - 24)
            if pos + size > end:
                return "truncated"
            argument = int.from_bytes(data[pos:pos + size], "big")
            pos += size
        else:
            return "indefinite lengths are not allowed"
        if major in (2, 3):
            if argument > end - pos:
                return "a string longer than the data"
            pos += argument
        elif major in (4, 5):
            items = argument * 2 if major == 5 else argument
            if items > end - pos:
                return "a container with more items than bytes"
            if len(pending) > MAX_DEPTH:
                return "nested too deeply"
            pending.append(items)
    return None  # trailing bytes are left to the re-encoding check: NON_CANONICAL


def encode(value: Any) -> bytes:
    """Deterministic CBOR of a plain value; raises InvalidValue outside the data model."""
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
    if (why := _scan(data)) is not None:
        raise DecodeError(Reason.MALFORMED, f"not wire CBOR: {why}")
    try:
        value = cbor2.loads(
            data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=MAX_DEPTH + 1
        )
    except Exception as exc:  # noqa: BLE001 - cbor2 raises several types (and RecursionError, ValueError)
        raise DecodeError(Reason.MALFORMED, f"not valid CBOR: {exc}") from None
    if not typed and (why := _check_plain(value)) is not None:
        raise DecodeError(Reason.MALFORMED, why)
    if cbor2.dumps(value, canonical=True) != data:
        raise DecodeError(Reason.NON_CANONICAL, "bytes are not the deterministic encoding")
    return value
