"""The ledger file's tables, how it is opened, and its one way of writing.

Theory of operation (DESIGN.md, "Store"): plain SQLite in WAL mode, made with
sqlite-utils and readable by any SQLite tool. Tables:

- `meta(key, value)`: `coop` (the co-op key this ledger trusts), `schema` (`SCHEMA`),
  `dictionary` (below), `accounts` (below).
- `entries(digest, author, seq, t, kind, booking_id, leaf, envelope, frozen, party)`:
  every accepted entry, one per (author, seq), in the order they were accepted (rows
  appended at the end fill their pages: 16 KiB pages, so a settlement entry's row of
  about 2.4 KB wastes little of one); indexed by (author, seq), and by `booking_id` and
  `party` (the member besides the author the entry is about: whose money it moves, or
  whom it admits: `Checked.party`) where there is one, so a member's history reads its
  own entries only, and a checkpoint's members are read without decoding admissions. `envelope` holds the
  exact signed bytes (deflated when large, see below), `digest` = SHA-256 of them,
  `leaf` their RFC 6962 leaf hash, `booking_id` the booking a settlement or fee claims,
  `frozen` = 1 for entries of a feed whose author forked it (kept, not counted), 2 for
  a role entry its author wrote at or past its retirement from that role (in the chain,
  moving nothing; `LedgerState.void`).
- `heads(author, size, root, t, envelope)`: the latest signed head per feed that
  matches the entries held.
- `balances(member, currency, balance)`: minor units, maintained on ingest.
- `reserves(currency, amount)`: deposits minus withdrawals, which the balances sum to.
- `frauds(author, seq, first, second, detected)`: two entries one author signed for one
  seq; neither is dropped. Of all the entries seen for that seq (three or more when an
  author forks more than once) the proof is the two lowest in byte order, so stores
  that have exchanged proofs hold the same one.
- `refused(digest, author, seq, rule, envelope, detected)`: entries refused on ingest
  whose own signature verifies, so their author provably wrote them (a settlement above
  the receipts' price or the cap, a fee the terms do not give...): signed evidence that
  names the culprit, kept outside the feeds (at most `MAX_EVIDENCE_PER_AUTHOR` each).
- `accounts(position, member, size, root, balance, held)`: on a witness's node, the
  accounts of the latest checkpoint it signed (meta `accounts`: that entry), to prove
  them from; `proofs(member, t, proof)`: the newest verified account proof per member a
  light member fetched (`t`: its checkpoint's time); `follows(member)`: the feeds a light
  member replicates besides the co-op's and its own (`_light`).

An entry's envelope over `COMPRESS_ABOVE` bytes (a settlement, a fee) is kept, when that
is shorter, as a zero byte (no envelope starts with one: it is a CBOR map) and its raw
DEFLATE against the file's own dictionary (meta `dictionary`: the CBOR of every field
name and enum value of the protocol's and the ledger's records, made when the file is;
much of a settlement is such names); `Envelopes` packs and unpacks, and readers select
`unpacked(envelope)`, an SQL function it installs on their connection. Unpacking is
bounded by the entry size cap: a stored blob that does not inflate to an envelope within
it comes back as it is, and its decoding then fails as any malformed entry does.

Every write goes through `write_all`: all its statements in one transaction (`atomic`,
which the node's own store uses too), so they all happen or none do.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils

from wattshare.protocol import MESSAGE_TYPES, Record, encode_cbor

from ._errors import StoreError

SCHEMA = 3  # 2: settlements in the packed form (protocol `pack_claim`), large envelopes deflated; 16 KiB pages;
# 3: checkpoints sign members' accounts (`_accounts`)
PAGE_SIZE = 16 * 1024
COMPRESS_ABOVE = 1024
MAX_STORED = 64 * 1024  # no entry envelope is larger (`_rules.MAX_ENVELOPE`)
FORKED, VOID = 1, 2  # values of entries.frozen (see the module doc)


def open_ledger_db(path: Path, coop: bytes) -> sqlite_utils.Database:
    """The ledger file at `path`, made if new; StoreError if it is another co-op's."""
    db = sqlite_utils.Database(path)
    db.conn.isolation_level = None  # transactions are explicit: one per batch
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect on a new file only
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    _create(db)
    meta = {row["key"]: row["value"] for row in db["meta"].rows}
    if not meta:
        write_all(db, [("INSERT INTO meta VALUES (?, ?)",
                        [("coop", coop), ("schema", bytes([SCHEMA])), ("dictionary", dictionary())])])
    elif meta.get("coop") != coop:
        raise StoreError(f"{path} is the ledger of another co-op; open it with that co-op's key")
    elif meta.get("schema") != bytes([SCHEMA]):
        raise StoreError(f"{path} was written by an older wattshare (ledger format {meta.get('schema', b'?')[0]}; "
                         f"this one reads format {SCHEMA})")
    return db


class Envelopes:
    """The `envelope` column's form of an entry (see the module doc)."""

    def __init__(self, dictionary: bytes) -> None:
        self.dictionary = dictionary
        self._packer = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zdict=dictionary)

    def pack(self, envelope: bytes) -> bytes:
        if len(envelope) <= COMPRESS_ABOVE:
            return envelope
        packer = self._packer.copy()
        packed = b"\0" + packer.compress(envelope) + packer.flush()
        return packed if len(packed) < len(envelope) else envelope

    def unpack(self, stored: bytes) -> bytes:
        if not stored.startswith(b"\0"):
            return stored
        unpacker = zlib.decompressobj(-15, zdict=self.dictionary)
        try:
            envelope = unpacker.decompress(stored[1:], MAX_STORED)
        except zlib.error:
            return stored
        return envelope if unpacker.eof and not unpacker.unconsumed_tail else stored

    def install(self, conn: sqlite3.Connection) -> None:
        """Let `conn`'s queries select `unpacked(envelope)`."""
        conn.create_function("unpacked", 1, self.unpack, deterministic=True)

    @classmethod
    def of(cls, conn: sqlite3.Connection) -> Envelopes:
        """The envelopes of the ledger file `conn` reads (installed on it)."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'dictionary'").fetchone()
        envelopes = cls(row[0] if row is not None and isinstance(row[0], bytes) else b"")
        envelopes.install(conn)
        return envelopes


def dictionary() -> bytes:
    """A new file's DEFLATE dictionary: the CBOR of every field name and enum value of
    the protocol's and the ledger's records (sorted, so one code version always makes
    the same)."""
    words: set[str] = set()
    pending: list[type] = [Record, StrEnum]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if not cls.__module__.startswith(("wattshare.protocol", "wattshare.ledger")):
            continue
        if dataclasses.is_dataclass(cls):
            words.update(f.name for f in dataclasses.fields(cls))
        elif issubclass(cls, StrEnum):
            words.update(member.value for member in cls)
    words.update(name for name, cls in MESSAGE_TYPES.items()
                 if cls.__module__.startswith(("wattshare.protocol", "wattshare.ledger")))
    return b"".join(encode_cbor(word) for word in sorted(words))


def write_all(db: sqlite_utils.Database, statements: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]) -> None:
    """Run all statements in one transaction: all of them happen, or none."""
    with atomic(db.conn):
        for sql, rows in statements:
            db.conn.executemany(sql, rows)


@contextmanager
def atomic(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on a connection in autocommit mode (`isolation_level` None);
    inside another, it joins that one."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (a full disk does)
            conn.execute("ROLLBACK")
        raise


def _create(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": bytes}, pk="key", if_not_exists=True)
    db.execute("CREATE TABLE IF NOT EXISTS entries (digest BLOB NOT NULL, author BLOB NOT NULL, seq INTEGER NOT NULL, "
               "t INTEGER, kind TEXT, booking_id BLOB, leaf BLOB NOT NULL, envelope BLOB NOT NULL, "
               "frozen INTEGER NOT NULL, party BLOB, UNIQUE (author, seq))")
    db.execute("CREATE INDEX IF NOT EXISTS entries_booking ON entries (booking_id) WHERE booking_id IS NOT NULL")
    db.execute("CREATE INDEX IF NOT EXISTS entries_party ON entries (party) WHERE party IS NOT NULL")
    db.table("heads").create({"author": bytes, "size": int, "root": bytes, "t": int, "envelope": bytes},
                       pk="author", if_not_exists=True)
    db.table("balances").create({"member": bytes, "currency": str, "balance": int},
                          pk=("member", "currency"), if_not_exists=True)
    db.table("reserves").create({"currency": str, "amount": int}, pk="currency", if_not_exists=True)
    db.table("frauds").create({"author": bytes, "seq": int, "first": bytes, "second": bytes, "detected": int},
                        pk=("author", "seq"), if_not_exists=True)
    db.execute("CREATE TABLE IF NOT EXISTS accounts (position INTEGER PRIMARY KEY, member BLOB NOT NULL, "
               "size INTEGER NOT NULL, root BLOB NOT NULL, balance INTEGER NOT NULL, held INTEGER NOT NULL)")
    db.table("proofs").create({"member": bytes, "t": int, "proof": bytes}, pk="member", if_not_exists=True)
    db.table("follows").create({"member": bytes}, pk="member", if_not_exists=True)
    db.table("refused").create({"digest": bytes, "author": bytes, "seq": int, "rule": str, "envelope": bytes,
                          "detected": int}, pk="digest", if_not_exists=True)
