"""Records: frozen, validated dataclasses that map one-to-one onto CBOR maps.

Theory of operation (STYLE.md points 3 and 7, after h11's `_events.py`):

- A record is a frozen, slotted, keyword-only dataclass. Building one type-checks every
  field against its annotation and then runs the class's `_validate` for domain rules
  (ranges, lengths); a bad value raises `InvalidValue` at once, so an invalid record
  never exists.
- On the wire a record is a CBOR map from field name to value: every field is always
  present (None is CBOR null), in the deterministic key order (`_codec.key_order`: so
  `encode` hands cbor2 a map it need not sort), no other key is allowed (`require_keys`;
  the right keys in another order are NON_CANONICAL). A record whose stored form is
  packed overrides `to_wire`/`from_wire` (the ledger's `SettlementClaim`). Field annotations drive both
  directions; supported are int, bool, str, bytes, StrEnum subclasses, nested records,
  `tuple[X, ...]`, `X | None`, and any class with `to_wire`/`from_wire` (the signed
  envelope), optionally parametrised as `Signed[Message]`.
- `from_wire` turns every shape or validation failure into a `DecodeError` naming the
  field, so a peer's bad bytes can never surface as an uncaught exception. Before any
  field is converted (and so before any signature in it is verified), a list longer
  than the record's `LIMITS` for that field is refused as OVERSIZE, and a list holding
  one signed envelope twice as MALFORMED: the work a frame causes is bounded by the
  records' caps, never multiplied by repetition.
- `@message("type")` registers a top-level message type: the type name is part of what
  is signed (see `_envelope`), and unknown names are refused on decode.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, Self

from . import _codec
from ._errors import DecodeError, InvalidValue, Reason

KEY_SIZE = 32
DIGEST_SIZE = 32

MESSAGE_TYPES: dict[str, type[Message]] = {}

_Convert = Callable[[Any], Any]
_set = object.__setattr__
INT_MIN, INT_MAX = _codec.INT_MIN, _codec.INT_MAX
R = typing.TypeVar("R", bound="Record")
M = typing.TypeVar("M", bound="Message")


class Record:
    """Base of every wire record; subclasses are made with `@record` or `@message`."""

    __slots__ = ()
    LIMITS: ClassVar[dict[str, int]] = {}  # most items of a tuple field (see the module doc)

    def __post_init__(self) -> None:
        for name, converter in _converters(type(self)).items():
            value = getattr(self, name)
            if not converter.accepts(value):
                raise InvalidValue(
                    f"{type(self).__name__}.{name}: expected {converter.label}, "
                    f"got {type(value).__name__}"
                )
        for name, most in self.LIMITS.items():
            if (items := getattr(self, name)) is not None and len(items) > most:  # an optional list may be null
                raise InvalidValue(f"{type(self).__name__}.{name}: more than {most} items")
        self._validate()

    def _validate(self) -> None:
        """Domain rules beyond types; raise InvalidValue. Overridden per record."""

    def to_wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) if conv.exact else conv.to_wire(getattr(self, name))
                for name, conv in _converters(type(self)).items()}

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        name = cls.__name__
        if type(value) is not dict:
            raise DecodeError(Reason.MALFORMED, f"{name}: expected a map")
        converters = _converters(cls)
        require_keys(name, value, _NAMES[cls])
        for field, most in cls.LIMITS.items():
            if type(value[field]) is list and len(value[field]) > most:
                raise DecodeError(Reason.OVERSIZE, f"{name}.{field}: more than {most} items")
        made = object.__new__(cls)  # the converters type-check every field
        for field, conv in converters.items():
            item = value[field]
            exact = conv.exact
            if exact is None or type(item) is not exact or (exact is int and not INT_MIN <= value[field] <= INT_MAX):
                try:
                    item = conv.from_wire(item)
                except _Mismatch as exc:
                    raise DecodeError(Reason.MALFORMED, f"{name}.{field}: {exc}") from None
            _set(made, field, item)
        try:
            made._validate()
        except InvalidValue as exc:
            raise DecodeError(Reason.MALFORMED, str(exc)) from None
        return made

    def encode(self) -> bytes:
        return _codec.encode(self.to_wire(), checked=True)  # type-checked when made, keys in order

    @classmethod
    def decode(cls, data: bytes, *, max_size: int = _codec.MAX_MESSAGE_SIZE) -> Self:
        return cls.from_wire(_codec.decode(data, max_size=max_size, typed=True))

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


class Message(Record):
    """A record that can be signed and sent on its own; `TYPE` names it on the wire."""

    __slots__ = ()
    TYPE: ClassVar[str]


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def record(cls: type[R]) -> type[R]:
    """Make `cls` a frozen, slotted, keyword-only dataclass record."""
    return dataclasses.dataclass(frozen=True, slots=True, kw_only=True)(cls)


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def message(type_name: str) -> Callable[[type[M]], type[M]]:
    """Make `cls` a record and register it as the top-level message type `type_name`."""

    def wrap(cls: type[M]) -> type[M]:
        if type_name in MESSAGE_TYPES:
            raise RuntimeError(f"message type {type_name!r} registered twice")
        made = record(cls)
        made.TYPE = type_name
        MESSAGE_TYPES[type_name] = made
        return made

    return wrap


# --- validation helpers used by the records' _validate -------------------------------


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidValue(message)


def require_range(name: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise InvalidValue(f"{name} must be {bound}, got {value}")


def require_size(name: str, value: str | bytes | tuple[object, ...], low: int, high: int) -> None:
    if not low <= len(value) <= high:
        raise InvalidValue(f"{name} must have length {low}..{high}, got {len(value)}")


# --- converters: one per annotation, built once per record class ----------------------


class _Mismatch(Exception):
    """A wire value of the wrong shape (turned into DecodeError with the field name)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Converter:
    label: str
    accepts: Callable[[Any], bool]
    to_wire: _Convert
    from_wire: _Convert
    exact: type | None = None  # the one Python type a plain field's wire value already has (the fast path)


def _same(value: Any) -> Any:
    return value


def _exact(kind: type) -> _Converter:
    def accepts(v: Any) -> bool:
        return type(v) is kind and (type(v) is not int or _codec.INT_MIN <= v <= _codec.INT_MAX)

    def check(value: Any) -> Any:
        if not accepts(value):
            raise _Mismatch(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return _Converter(kind.__name__, accepts, _same, check, kind)


def _enum(kind: type[StrEnum]) -> _Converter:
    def parse(value: Any) -> StrEnum:
        try:
            return kind(value)
        except (ValueError, TypeError):  # TypeError: an unhashable value such as a list
            raise _Mismatch(f"{str(value)[:40]} is not a {kind.__name__}") from None

    return _Converter(kind.__name__, lambda v: isinstance(v, kind), str, parse)


def _tuple(item: _Converter, identity: Callable[[Any], Any] | None = None) -> _Converter:
    """`identity` names an item on the wire (an envelope's signature) so that a repeated
    one is refused before any item is converted."""

    def parse(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _Mismatch("expected a list")
        if identity is not None:
            seen = {identity(v) for v in value}
            if len(seen) < len(value):
                raise _Mismatch("the same signed message twice")
        return tuple(item.from_wire(v) for v in value)

    return _Converter(
        f"tuple of {item.label}",
        lambda v: type(v) is tuple and all(item.accepts(x) for x in v),
        lambda v: [item.to_wire(x) for x in v],
        parse,
    )


def _optional(inner: _Converter) -> _Converter:
    return _Converter(
        f"{inner.label} or None",
        lambda v: v is None or inner.accepts(v),
        lambda v: None if v is None else inner.to_wire(v),
        lambda v: None if v is None else inner.from_wire(v),
    )


def _wire_type(kind: Any, args: tuple[Any, ...]) -> _Converter:
    """A class with its own to_wire/from_wire (a record, or the signed envelope)."""

    accepts = getattr(kind, "wire_accepts", None)
    return _Converter(
        kind.__name__,
        (lambda v: accepts(v, *args)) if accepts else (lambda v: isinstance(v, kind)),
        lambda v: v.to_wire(),
        lambda v: kind.from_wire(v, *args),  # its own errors (with their reasons) propagate
    )


def _converter(hint: Any) -> _Converter:
    origin = typing.get_origin(hint)
    if hint in (int, str, bytes, bool):
        return _exact(hint)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return _enum(hint)
    if origin is tuple:
        item, ellipsis = typing.get_args(hint)
        assert ellipsis is Ellipsis, "only homogeneous tuple[X, ...] is supported"
        return _tuple(_converter(item), getattr(typing.get_origin(item) or item, "wire_identity", None))
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        assert len(inner) == 1, "only X | None unions are supported"
        return _optional(_converter(inner[0]))
    kind = origin or hint
    if isinstance(kind, type) and hasattr(kind, "from_wire"):
        return _wire_type(kind, typing.get_args(hint))
    raise TypeError(f"no wire converter for {hint!r}")


_CONVERTERS: dict[type[Record], dict[str, _Converter]] = {}
_NAMES: dict[type[Record], list[str]] = {}  # each record's field names, in key order


def require_keys(name: str, value: dict[Any, Any], expected: list[str]) -> None:
    """DecodeError unless the decoded map `value` has exactly the keys `expected`, in that
    order (their deterministic order: cbor2 keeps the order of the bytes)."""
    keys = list(value)
    if keys == expected:
        return
    if set(keys) == set(expected):
        raise DecodeError(Reason.NON_CANONICAL, f"{name}: map keys not in deterministic order")
    missing = sorted(set(expected) - set(keys))
    extra = sorted(str(k) for k in set(keys) - set(expected))
    raise DecodeError(Reason.MALFORMED, f"{name}: missing {missing}, unknown {extra}")


def _converters(cls: type[Record]) -> dict[str, _Converter]:
    """Each field's converter, built from the record's annotations once per class, in the
    deterministic order of the field names as map keys: `to_wire` builds its map in that
    order, so cbor2 can write it as it comes (`_codec.encode(..., checked=True)`)."""
    if cls not in _CONVERTERS:
        hints = typing.get_type_hints(cls)
        names = sorted((f.name for f in dataclasses.fields(cls)), key=_codec.key_order)  # type: ignore[arg-type]
        _CONVERTERS[cls] = {name: _converter(hints[name]) for name in names}
        _NAMES[cls] = names
    return _CONVERTERS[cls]
