"""The ledger file's tables, how it is opened, and its one way of writing.

Theory of operation (DESIGN.md, "Store"): plain SQLite in WAL mode, made with
sqlite-utils and readable by any SQLite tool. Tables:

- `meta(key, value)`: `coop` (the co-op key this ledger trusts), `schema` (`SCHEMA`).
- `entries(digest, author, seq, t, kind, booking_id, leaf, envelope, frozen)`: every
  accepted entry, one per (author, seq), in the order they were accepted (rows
  appended at the end fill their pages: 16 KiB pages, so a settlement entry's row of
  about 2.4 KB wastes little of one); indexed by (author, seq) and by `booking_id`
  where there is one. `envelope` holds the exact signed bytes, `digest` = SHA-256 of them,
  `leaf` its RFC 6962 leaf hash, `booking_id` the booking a settlement or fee claims,
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

Every write goes through `write_all`: all its statements in one transaction (`atomic`,
which the node's own store uses too), so they all happen or none do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from ._errors import StoreError

SCHEMA = 2  # 2: settlements in the packed form (protocol `pack_claim`); pages of 16 KiB
PAGE_SIZE = 16 * 1024
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
        write_all(db, [("INSERT INTO meta VALUES (?, ?)", [("coop", coop), ("schema", bytes([SCHEMA]))])])
    elif meta.get("coop") != coop:
        raise StoreError(f"{path} is the ledger of another co-op; open it with that co-op's key")
    elif meta.get("schema") != bytes([SCHEMA]):
        raise StoreError(f"{path} is a ledger of an older wattshare (format {meta.get('schema', b'?')[0]}, this one "
                         f"reads {SCHEMA}): move it aside and the node syncs a fresh copy from the co-op")
    return db


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
               "frozen INTEGER NOT NULL, UNIQUE (author, seq))")
    db.execute("CREATE INDEX IF NOT EXISTS entries_booking ON entries (booking_id) WHERE booking_id IS NOT NULL")
    db.table("heads").create({"author": bytes, "size": int, "root": bytes, "t": int, "envelope": bytes},
                       pk="author", if_not_exists=True)
    db.table("balances").create({"member": bytes, "currency": str, "balance": int},
                          pk=("member", "currency"), if_not_exists=True)
    db.table("reserves").create({"currency": str, "amount": int}, pk="currency", if_not_exists=True)
    db.table("frauds").create({"author": bytes, "seq": int, "first": bytes, "second": bytes, "detected": int},
                        pk=("author", "seq"), if_not_exists=True)
    db.table("refused").create({"digest": bytes, "author": bytes, "seq": int, "rule": str, "envelope": bytes,
                          "detected": int}, pk="digest", if_not_exists=True)
