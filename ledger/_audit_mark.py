"""The mark a passing audit leaves for the next one, so that one checks only what is new.

Theory of operation (DESIGN.md, "Ledger": rules checked again in audit; `_audit`):

An audit run with a mark file (`audit(path, mark=...)`, `wattshare audit --incremental`)
that passes writes there, beside the ledger, the state its ordered pass ended in: per
feed the entries audited, the last one's digest and time, its Merkle frontier and how
much of it a verified witness checkpoint covers; balances, deposits minus withdrawals,
open credit holds, the charter in force, the admissions (with the co-op feed seq each
member was first admitted at); every claim (a settlement or fee: booking, the
claiming entry's digest, the Settlement's digest, the driver, answered or not) and the
digests of the co-op's charters. It is SQLite with the claims indexed by booking, so the
next audit looks up only what its new entries name, however long the ledger.

The next audit with that mark re-verifies only the entries past it, feed by feed, from
that state: signatures and every entry rule, the chain onto each marked tip, claims
against every earlier claim, answers against the marked settlements, signed heads and
checkpoints against roots replayed from the marked frontiers (or the stored leaves, for
a root before them), each new checkpoint's accounts by walking forward from the marked
balances and holds (`_accounts.CutWalker`), balances and conservation as a whole. What
it trusts: the audited part of the file as the last audit found it (a full audit,
without `--incremental`, reads it all again). A mark is taken only when its audit
passed, for this ledger's co-op; anything new that reaches back into the audited part (a
fork proof, a charter bringing a new retirement, a checkpoint whose cut is behind the
mark on some feed) makes the audit run in full instead. The
file is replaced whole (written beside, then renamed), so a crash leaves the old mark.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._accounts import CutWalker
from ._charter import CoopCharter
from ._entry import EntryKind
from ._errors import EntryRefused
from ._findings import Verdict
from ._merkle import MerkleLog
from ._rules import Checked, check_entry
from ._state import Feed

if TYPE_CHECKING:
    from ._audit_passes import OrderedPasses

VERSION = 2  # 2: admissions, checkpoints' accounts
_SUBTREE = struct.Struct(">Q32s")  # one frontier element: its size, its hash
_TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)",
    "CREATE TABLE feeds (author BLOB PRIMARY KEY, size INTEGER, tip BLOB, last_t INTEGER, frontier BLOB, "
    "witnessed INTEGER)",
    "CREATE TABLE balances (member BLOB, currency TEXT, balance INTEGER, PRIMARY KEY (member, currency))",
    "CREATE TABLE reserves (currency TEXT PRIMARY KEY, amount INTEGER)",
    "CREATE TABLE holds (driver BLOB, booking BLOB, seq INTEGER, cap INTEGER, lapses INTEGER, "
    "PRIMARY KEY (driver, booking))",
    "CREATE TABLE claims (booking BLOB PRIMARY KEY, digest BLOB, kind TEXT, settlement BLOB, driver BLOB, "
    "answered INTEGER)",
    "CREATE TABLE charters (digest BLOB PRIMARY KEY)",
    "CREATE TABLE admissions (member BLOB PRIMARY KEY, seq INTEGER, credit_limit INTEGER)",
)


@dataclass(frozen=True, slots=True)
class MarkedFeed:
    size: int
    tip: bytes
    last_t: int
    frontier: list[tuple[int, bytes]]
    witnessed: int


class AuditMark:
    """A mark read back (see the module doc); `open` gives None where there is none to use."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self.entries: int = meta["entries"]
        self.rowid: int = meta["rowid"]
        self.charter_seq: int | None = meta.get("charter_seq")
        self.coop: bytes = meta["coop"]
        self.feeds = {author: MarkedFeed(size, tip, last_t, _frontier(frontier), witnessed)
                      for author, size, tip, last_t, frontier, witnessed in conn.execute("SELECT * FROM feeds")}

    @classmethod
    def open(cls, path: Path, coop: bytes) -> AuditMark | None:
        """The mark at `path` if there is one, of this version and this co-op's ledger."""
        if not path.exists():
            return None
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if meta.get("version") != VERSION or meta.get("coop") != coop:
                conn.close()
                return None
            return cls(path, conn)
        except (sqlite3.DatabaseError, KeyError, ValueError):
            return None

    def close(self) -> None:
        self.conn.close()

    def reaches_back(self, forks: int, verdicts: Iterable[Verdict], ledger: sqlite3.Connection) -> bool:
        """True if something new touches the audited part: any fork proof (there was
        none when the mark was taken), a new charter retiring a key from a seq its feed
        had already reached then, or the charter in force missing from the file."""
        charter = self._charter(ledger)
        if forks or (self.charter_seq is not None and charter is None):
            return True
        marked_retirements = set(charter.retired) if charter is not None else set()
        for verdict in verdicts:
            fact = verdict.fact
            if not isinstance(fact, Checked):
                continue
            if fact.charter is not None and not set(fact.charter.retired) <= marked_retirements:
                return True  # which entries are void changes for the accounts of checkpoints past it
        return False

    def _charter(self, ledger: sqlite3.Connection) -> CoopCharter | None:
        """The charter in force when the mark was taken, read again from the ledger."""
        row = ledger.execute("SELECT unpacked(envelope) FROM entries WHERE author = ? AND seq = ?",
                             [self.coop, self.charter_seq]).fetchone()
        if row is None:
            return None
        try:
            return check_entry(row[0]).charter
        except EntryRefused:
            return None

    def seed(self, passes: OrderedPasses, ledger: sqlite3.Connection) -> None:
        """Put the marked state into `passes`, and what its new entries name."""
        state = passes.state
        for author, marked in self.feeds.items():
            state.feeds[author] = Feed(log=MerkleLog.resume(marked.size, marked.frontier), last_t=marked.last_t,
                                       base=marked.size, base_tip=marked.tip)
            passes.logs[author] = MerkleLog.resume(marked.size, marked.frontier)
            passes.witnessed[author] = marked.witnessed
        state.balances.update(((m, c), b) for m, c, b in self.conn.execute("SELECT * FROM balances"))
        state.money_in.update(self.conn.execute("SELECT * FROM reserves"))
        for driver, booking, seq, cap, lapses in self.conn.execute("SELECT * FROM holds"):
            state.holds[driver][booking] = (seq, cap, lapses)
        passes.charters.update(digest for (digest,) in self.conn.execute("SELECT digest FROM charters"))
        for member, seq, limit in self.conn.execute("SELECT member, seq, credit_limit FROM admissions"):
            state.limits[member] = limit
            passes.admitted_at.append((seq, member))
        charter = self._charter(ledger)
        if self.charter_seq is not None and charter is not None:
            state.adopt(self.charter_seq, charter)
            passes.charters_at.append((self.charter_seq, charter))
            passes.walker = CutWalker(passes.walked, charter.currency)
            passes.walker.seed({author: marked.size for author, marked in self.feeds.items()},
                               {m: b for (m, c), b in state.balances.items() if c == charter.currency},
                               [(d, b, cap, lapses) for d, holds in state.holds.items()
                                for b, (_, cap, lapses) in holds.items()], charter)
        named = {b for v in passes.verdicts if isinstance(v.fact, Checked) for b in (v.fact.claim, v.fact.booking) if b}
        for booking in named:
            row = self.conn.execute("SELECT digest, kind, settlement, driver, answered FROM claims WHERE booking = ?",
                                    [booking]).fetchone()
            if row is None:
                continue
            digest, kind, settlement, driver, answered = row
            state.claims[booking] = digest
            if kind == EntryKind.FEE.value:
                passes.fees[booking] = (digest, driver)
            else:
                passes.settled[booking] = (settlement, driver)
                if answered:
                    passes.answered.add((driver, settlement))


def save(path: Path, passes: OrderedPasses, previous: AuditMark | None) -> None:
    """Write the mark of a passing audit (see the module doc): the previous mark's claims
    and charters, this run's, and the state the run ended in."""
    state, report = passes.state, passes.report
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # two auditors at once: the last one's mark stands
    partial.unlink(missing_ok=True)
    if previous is not None:
        shutil.copyfile(previous.path, partial)
    conn = sqlite3.connect(partial)
    try:
        with conn:
            if previous is None:
                for table in _TABLES:
                    conn.execute(table)
            for table in ("meta", "feeds", "balances", "reserves", "holds"):
                conn.execute(f"DELETE FROM {table}")
            charter_seq = state.charter[0] if state.charter else None
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("version", VERSION), ("coop", report.coop), ("charter_seq", charter_seq),
                ("entries", (previous.entries if previous else 0) + report.entries), ("rowid", report.rowid)])
            conn.executemany("INSERT INTO feeds VALUES (?, ?, ?, ?, ?, ?)", [
                (author, feed.size, feed.tip, feed.last_t, _packed(passes.logs[author].frontier),
                 passes.witnessed[author]) for author, feed in state.feeds.items() if feed.size])
            conn.executemany("INSERT INTO balances VALUES (?, ?, ?)",
                             [(m, c, b) for (m, c), b in state.balances.items() if b])
            conn.executemany("INSERT INTO reserves VALUES (?, ?)", list(state.money_in.items()))
            conn.executemany("INSERT INTO holds VALUES (?, ?, ?, ?, ?)", [
                (driver, booking, *hold) for driver, holds in state.holds.items() for booking, hold in holds.items()])
            conn.executemany("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?)", [
                (booking, state.claims[booking], EntryKind.SETTLEMENT.value, settlement, driver,
                 (driver, settlement) in passes.answered) for booking, (settlement, driver) in passes.settled.items()
            ] + [(booking, digest, EntryKind.FEE.value, None, driver, 0)
                 for booking, (digest, driver) in passes.fees.items()])
            conn.executemany("INSERT OR IGNORE INTO charters VALUES (?)", [(d,) for d in passes.charters])
            first = {member: seq for seq, member in reversed(passes.admitted_at)}
            conn.executemany("INSERT INTO admissions VALUES (?, ?, ?) "
                             "ON CONFLICT (member) DO UPDATE SET credit_limit = excluded.credit_limit",
                             [(member, seq, state.limits[member]) for member, seq in first.items()])
    finally:
        conn.close()
    partial.replace(path)


def _packed(frontier: list[tuple[int, bytes]]) -> bytes:
    return b"".join(_SUBTREE.pack(size, digest) for size, digest in frontier)


def _frontier(data: bytes) -> list[tuple[int, bytes]]:
    return [(size, digest) for size, digest in _SUBTREE.iter_unpack(data)]

