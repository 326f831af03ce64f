"""PROTOCOL.md's generated parts, rendered from the code itself, so the spec cannot drift.

PROTOCOL.md is written by hand around blocks fenced by `<!-- generated:NAME -->` and
`<!-- /generated:NAME -->`. This module renders each block from the running code: the
stream protocols and their limits, the frame kinds, the signed message types, every
record's fields in wire key order with their types and the comments beside them in the
source, every enum's values, and the ledger's entry kinds; and the same schemas as JSON
for programs (`vectors/schema.json`). Run it to rewrite them; `--check` only says what
is stale (`tests/test_spec.py` holds both to it):

    python docs/protocol_spec.py          # rewrite PROTOCOL.md's generated blocks and schema.json
    python docs/protocol_spec.py --check  # exit 1 naming anything stale
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
import typing
from enum import StrEnum
from pathlib import Path

from wattshare import ledger, node, protocol
from wattshare.ledger._entry import BODY_TYPES, EntryKind, SettlementClaim
from wattshare.protocol import Record, Signed
from wattshare.protocol._packed import CLAIM_KEYS
from wattshare.protocol._record import _NAMES, MESSAGE_TYPES, _converters
from wattshare.protocol._wire import FRAMES

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "PROTOCOL.md"
SCHEMA = ROOT / "vectors" / "schema.json"
_BLOCK = re.compile(r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)
_FIELD = re.compile(r"^\s+(\w+): [^#\n]*?(?:#\s*(?P<comment>.*))?$", re.M)
_INTERNAL = re.compile(r" \((?:see the module doc|`_\w+`|protocol `\w+`)\)")  # pointers into the Python source
_VALUE = re.compile(r"^\s*(\w+)(?::[^=\n]*)? = [^#\n]*?#\s*(?P<comment>.*)$", re.M)

PROTOCOLS = [  # (constant, what it carries); ids and caps come from the code
    (node.AD_PROTOCOL, "a host's signed charger ads"),
    (node.BOOKING_PROTOCOL, "a booking request and its answer; a cancel and its fee"),
    (node.SESSION_PROTOCOL, "a charging session: start, receipts, stop, settlement, ack or dispute"),
    (node.SYNC_PROTOCOL, "ledger replication: signed heads, wants, batches of entries"),
    (node._accounts.ACCOUNT_PROTOCOL, "a member's account proof from the latest checkpoint"),
    (node.DIAL_BACK_PROTOCOL, "is this node reachable from outside? (a dial on a new connection)"),
]

LIMITS = [  # (module, constant names) whose values and source comments PROTOCOL.md lists
    (protocol._codec, ["MAX_MESSAGE_SIZE", "MAX_DEPTH"]),
    (protocol._envelope, ["DOMAIN", "SIGNATURE_SIZE"]),
    (protocol._ad, ["AD_MAX_LIFETIME", "GEOHASH_PRECISION"]),
    (protocol._tariff, ["PRICE_SCALE"]),
    (protocol._packed, ["MAX_RECEIPTS"]),
    (protocol._booking, ["MAX_CLOCK_SKEW"]),
    (protocol._session, ["SETTLE_MARGIN", "FINAL_READING_MARGIN", "POWER_TOLERANCE", "METER_ROUNDING_WH"]),
    (node._framing, ["READ_TIMEOUT"]),
    (node._conduct, ["STREAMS_BURST", "STREAMS_RATE", "MISCONDUCT_BURST", "MISCONDUCT_RATE"]),
    (node._ads, ["AD_LIFETIME", "FETCH_TIMEOUT"]),
    (node._bookings, ["FRESHNESS", "HANDLER_TIMEOUT"]),
    (node._session_stream, ["ANSWER_TIMEOUT", "STREAM_LIMIT"]),
    (node._node, ["HOLD_FETCH_TIMEOUT", "SYNC_INTERVAL"]),
    (node._sync, ["SYNC_FRAME", "SYNC_TIMEOUT"]),
    (node._accounts, ["ACCOUNT_FRAME", "ACCOUNT_TIMEOUT"]),
    (node._gossip, ["HEADS_TOPIC", "ANNOUNCE_INTERVAL"]),
    (ledger._entry, ["MAX_BODY", "MAX_MEMBERS", "HOLD_LAPSE"]),
    (ledger._replication, ["MAX_BATCH", "MAX_FEEDS", "MAX_HEADS"]),
]


def _comments(source: str, pattern: re.Pattern[str]) -> dict[str, str]:
    return {m.group(1): (m.group("comment") or "").strip() for m in pattern.finditer(source)}


def _cell(text: str | None) -> str:
    """A note as a markdown table cell."""
    return (text or "").replace("|", "\\|")


def _anchor(cls: type) -> str:
    return f"{'enum' if issubclass(cls, StrEnum) else 'record'}-{cls.__name__.lower()}"


def _link(cls: type) -> str:
    return f"[{cls.__name__}](#{_anchor(cls)})"


def _shape(hint: typing.Any, limit: int | None = None) -> typing.Any:
    """A field's wire type as JSON (the grammar is in vectors/README.md)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (int, bytes, bool, str):
        return {int: "int", bytes: "bytes", bool: "bool", str: "text"}[hint]
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return {"enum": hint.__name__}
    if origin is tuple:
        return {"array": _shape(args[0]), "max": limit}
    if origin in (types.UnionType, typing.Union):
        return {"optional": _shape(next(a for a in args if a is not type(None)))}
    if origin is Signed:
        return {"envelope": args[0].TYPE}
    if isinstance(hint, type) and issubclass(hint, Record):
        return {"record": hint.__name__}
    raise TypeError(f"no wire type for {hint!r}")


def _words(shape: typing.Any) -> str:
    """A wire type in words, linking records and enums."""
    if isinstance(shape, str):
        return shape
    if "enum" in shape:
        return f"text, one of [{shape['enum']}](#enum-{shape['enum'].lower()})"
    if "array" in shape:
        most = f", at most {shape['max']}" if shape["max"] is not None else ""
        return f"array{most} of {_words(shape['array'])}"
    if "optional" in shape:
        return f"{_words(shape['optional'])} or null"
    if "envelope" in shape:
        cls = MESSAGE_TYPES[shape["envelope"]]
        return f"envelope of `{cls.TYPE}` ({_link(cls)})"
    if "map" in shape:
        return "map: " + ", ".join(f"`{field['key']}` {_words(field['type'])}" for field in shape["map"])
    return f"[{shape['record']}](#record-{shape['record'].lower()})"


def _records() -> list[type[Record]]:
    """Every record reachable from a frame, a message type or an entry body, by name."""
    found: dict[str, type[Record]] = {}
    todo: list[typing.Any] = [*FRAMES.values(), *MESSAGE_TYPES.values(), *BODY_TYPES.values()]
    while todo:
        hint = todo.pop()
        if isinstance(hint, type) and issubclass(hint, Record):
            if hint.__name__ not in found:
                found[hint.__name__] = hint
                todo.extend(typing.get_type_hints(hint).values())
        else:
            todo.extend(typing.get_args(hint))
    return sorted(found.values(), key=lambda c: c.__name__)


def _enums() -> list[type[StrEnum]]:
    found: dict[str, type[StrEnum]] = {}
    for cls in _records():
        for hint in typing.get_type_hints(cls).values():
            for arg in (hint, *typing.get_args(hint)):
                if isinstance(arg, type) and issubclass(arg, StrEnum):
                    found[arg.__name__] = arg
    found["Reason"], found["Rule"], found["EntryKind"] = protocol.Reason, ledger.Rule, EntryKind
    return sorted(found.values(), key=lambda c: c.__name__)


def _doc(cls: type) -> str:
    """The first paragraph of the class's own docstring (not an inherited or generated one)."""
    doc = inspect.getdoc(cls) or ""
    inherited = any(doc == inspect.getdoc(base) for base in cls.__mro__[1:])
    if inherited or doc.startswith(f"{cls.__name__}("):
        return ""
    return _INTERNAL.sub("", " ".join(doc.split("\n\n")[0].split()))


PACKED = {  # the wire keys of a record whose stored form is packed (its own to_wire), in key order
    SettlementClaim: [
        ("request", {"envelope": "booking_request"}, "the driver's"),
        ("readings", "bytes", "per receipt: t - request.start (int32), energy_wh (uint32), signature (64), big-endian"),
        ("settlement", {"map": [{"key": "t", "type": "int"}, {"key": "sig", "type": "bytes"},
                                {"key": "amount", "type": "int"},
                                {"key": "breakdown", "type": {"array": {"record": "PriceLine"}, "max": None}}]},
         "the host's Settlement (a breakdown of at most 64 lines) without what follows from the rest"),
        ("confirmation", "bytes", "access_digest (32), confirmed (int64), signature (64), big-endian"),
    ],
}


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(f"| {' | '.join(cells)} |" for cells in lines) + "\n"


def _heading(cls: type, title: str) -> str:
    """A record's or an enum's anchored heading and the first paragraph of its docstring."""
    doc = _doc(cls)
    return f'<a id="{_anchor(cls)}"></a>\n#### {title}\n\n' + (f"{doc}\n\n" if doc else "")


def _keys(cls: type[Record]) -> list[tuple[str, typing.Any, str]]:
    """A record's wire keys in key order: (key, shape, the comment beside it in the source)."""
    if cls in PACKED:
        assert [key for key, *_ in PACKED[cls]] == CLAIM_KEYS, "PACKED differs from protocol's CLAIM_KEYS"
        return PACKED[cls]
    hints = typing.get_type_hints(cls)
    _converters(cls)
    comments = _comments(inspect.getsource(cls), _FIELD)
    return [(name, _shape(hints[name], cls.LIMITS.get(name)), comments.get(name, "")) for name in _NAMES[cls]]


def _fields(cls: type[Record]) -> str:
    """A record's keys as a table."""
    keys = _keys(cls)
    if not keys:
        return "An empty map.\n"
    return _table(["key", "type", "note"], [[f"`{key}`", _words(shape), _cell(note)] for key, shape, note in keys])


def render_records() -> str:
    out = []
    for cls in _records():
        title = f"`{cls.TYPE}`: {cls.__name__}" if cls in MESSAGE_TYPES.values() else cls.__name__
        author = getattr(cls, "AUTHOR", None)
        signed_by = f"Signed by its `{author}`.\n\n" if author else ""
        out.append(_heading(cls, title) + signed_by + _fields(cls))
    return "\n".join(out)


def render_enums() -> str:
    out = []
    for cls in _enums():
        comments = _comments(inspect.getsource(cls), _VALUE)
        rows = [[f"`{member.value}`", _cell(comments.get(member.name))] for member in cls]
        out.append(_heading(cls, cls.__name__) + _table(["value", "meaning"], rows))
    return "\n".join(out)


def render_frames() -> str:
    return _table(["frame kind (the map's one key)", "record"], [[f"`{name}`", _link(cls)] for name, cls in FRAMES.items()])


def render_messages() -> str:
    rows = []
    for name, cls in sorted(MESSAGE_TYPES.items()):
        author = getattr(cls, "AUTHOR", None)
        rows.append([f"`{name}`", _link(cls), f"its `{author}`" if author else "see its protocol"])
    return _table(["envelope `type`", "record", "signed by"], rows)


def render_entry_kinds() -> str:
    return _table(["`kind`", "body record"], [[f"`{kind.value}`", _link(body)] for kind, body in BODY_TYPES.items()])


def render_protocols() -> str:
    return _table(["protocol id", "carries"], [[f"`{pid}`", what] for pid, what in PROTOCOLS])


def render_limits() -> str:
    rows = []
    for module, names in LIMITS:
        comments = _comments(inspect.getsource(module), _VALUE)
        for name in names:
            value = getattr(module, name)
            shown = f"`{value!r}`" if isinstance(value, bytes | str) else f"{value:,}"
            rows.append([f"`{module.__name__.rsplit('.', 1)[-1].lstrip('_')}.{name}`", shown, _cell(comments.get(name))])
    return _table(["name", "value", "note"], rows)


BLOCKS = {
    "protocols": render_protocols, "limits": render_limits, "frames": render_frames, "messages": render_messages,
    "entry-kinds": render_entry_kinds, "records": render_records, "enums": render_enums,
}


def regenerate(text: str) -> tuple[str, list[str]]:
    """`text` with every generated block rendered afresh, and the names of those that changed."""
    stale: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        body = BLOCKS[name]()
        if body != match.group("body"):
            stale.append(name)
        return f"{match.group(1)}{body}{match.group(4)}"

    return _BLOCK.sub(fill, text), stale


def schema() -> dict[str, typing.Any]:
    """The same schemas for programs (`vectors/schema.json`; its grammar is in vectors/README.md)."""
    return {
        "records": {cls.__name__: {"type": getattr(cls, "TYPE", None), "author": getattr(cls, "AUTHOR", None),
                                   "keys": [{"key": key, "type": shape} for key, shape, _ in _keys(cls)]}
                    for cls in _records()},
        "enums": {cls.__name__: [member.value for member in cls] for cls in _enums()},
        "frames": {name: cls.__name__ for name, cls in FRAMES.items()},
        "messages": {name: cls.__name__ for name, cls in sorted(MESSAGE_TYPES.items())},
        "entry_kinds": {kind.value: body.__name__ for kind, body in BODY_TYPES.items()},
    }


def outputs() -> tuple[dict[Path, str], list[str]]:
    """Each generated file's content, and what is stale: PROTOCOL.md's blocks by name, schema.json."""
    text, stale = regenerate(SPEC.read_text())
    encoded = json.dumps(schema(), indent=1) + "\n"
    if not SCHEMA.exists() or SCHEMA.read_text() != encoded:
        stale.append(SCHEMA.name)
    return {SPEC: text, SCHEMA: encoded}, stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say what is stale")
    args = parser.parse_args()
    files, stale = outputs()
    if args.check:
        if stale:
            sys.exit(f"stale: {', '.join(stale)}: run python docs/protocol_spec.py")
        return
    for path, content in files.items():
        path.write_text(content)
    print(f"rewritten: {', '.join(stale) or 'nothing'}")


if __name__ == "__main__":
    main()
