"""Deterministic CBOR: the one way values become bytes, and strict decoding back.

Theory of operation (DESIGN.md, "Canonical encoding and signatures"):

- The data model on the wire is deliberately small: int (64-bit), bool, None, str,
  bytes, list, and maps with str keys. No floats, no tags, no undefined or simple
  values, no indefinite lengths. Money, energy, power and time are integers.
- `encode` writes RFC 8949 core deterministic encoding (cbor2 `canonical=True`:
  shortest integer and length heads, map keys sorted bytewise; with str keys only,
  length-first and bytewise order coincide).
- `decode` checks the size cap *before* parsing, parses with duplicate keys and
  indefinite lengths refused, walks the result to reject anything outside the data
  model (records do that walk themselves, field by field), and finally re-encodes: the bytes must come back identical, so one value has
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
    try:
        value = cbor2.loads(
            data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=MAX_DEPTH + 1
        )
    except Exception as exc:  # cbor2 raises several types (and RecursionError, ValueError)
        raise DecodeError(Reason.MALFORMED, f"not valid CBOR: {exc}") from None
    if not typed and (why := _check_plain(value)) is not None:
        raise DecodeError(Reason.MALFORMED, why)
    if cbor2.dumps(value, canonical=True) != data:
        raise DecodeError(Reason.NON_CANONICAL, "bytes are not the deterministic encoding")
    return value
