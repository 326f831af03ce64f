"""Audit: re-verify a ledger file from its raw entries, trusting nothing derived.

Theory of operation (DESIGN.md, "Ledger": rules checked on ingest and again in audit):

1. Intrinsic pass: every stored envelope goes through the same `check_entry` ingest
   uses (signatures, body, pricing of settlements, fee terms, charter roles), and is
   hashed (digest, Merkle leaf). Entries are independent here, so this pass is spread
   over worker processes, streaming the envelopes a chunk at a time; the verdicts come
   back in order, so any number of workers gives the same report.
2. Ordered pass, one process: per feed in seq order, the chain (gaps, prev digests,
   times that never go back), two rows for one seq (a fork written behind the
   ledger's back) and the fraud proofs table (a forked author's feed counts for
   nothing), one claim per booking, co-op trust, role entries past their author's
   retirement (judged by the co-op's latest charter, so by feed order: they move
   nothing and are named), the `frozen` column against all of that, and each entry's
   postings into freshly computed balances.
3. Cross checks: signed heads and witnesses' checkpoints against Merkle roots rebuilt
   from the entries, and each feed's unwitnessed tail (the entries past the last
   checkpoint that covers it: a cut there leaves no trace, so it is reported); acks
   and disputes against the settlements they name; money moved and checkpoints under a
   charter the co-op's feed holds; stored balances against the recomputed ones;
   conservation (balances sum to deposits minus withdrawals); and every member that
   owes more than its credit limit (credit holds make that impossible short of a
   forked feed, so it is named). A dispute names a settlement, or a FEE entry, of its
   author's own booking (else it dangles). A driver's second answer to one settlement
   (two acks, or an ack and then a dispute) moves no money, so ingest keeps it, but
   audit names it: the first answer stands.
4. Evidence: each entry ingest refused but kept because its author provably signed it
   (the `refused` table) is re-checked on its own and its author named; a row that
   proves nothing is flagged too, so the table cannot frame anyone.

With a mark file (`_audit_mark`) the same passes run over each feed's entries past the
mark only, from the state the passing audit that left it ended in, and a passing run
leaves a new mark: a daily audit of a co-op's years of ledger checks one day's entries.

Pass 1 and the reading of the file live here, passes 2 to 4 in `_audit_passes`, the
report in `_findings`, the mark in `_audit_mark`. Each finding is a `Violation` named by
the same `Rule` that ingest would refuse with. The file is opened read-only: an audit never changes what it
audits.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ._audit_mark import AuditMark, save
from ._audit_passes import OrderedPasses
from ._errors import EntryRefused, Rule, StoreError
from ._findings import AuditReport, Verdict, Violation
from ._merkle import leaf_hash
from ._rules import Checked, check_entry
from ._schema import Envelopes

CHUNK = 512


def _intrinsic(envelopes: Sequence[bytes]) -> list[Verdict]:
    """Worker side of pass 1 (the CPU-heavy part, so everything per entry happens here)."""
    out = []
    for envelope in envelopes:
        try:
            fact: Checked | tuple[Rule, str] = check_entry(envelope)
        except EntryRefused as exc:
            fact = (exc.rule, exc.detail)
        out.append(Verdict(fact, hashlib.sha256(envelope).digest(), leaf_hash(envelope)))
    return out


_TYPES = {  # what each column audit reads must hold, as SQLite's typeof() names it
    "entries": {"digest": "blob", "author": "blob", "seq": "integer", "envelope": "blob", "frozen": "integer"},
    "heads": {"author": "blob", "envelope": "blob"},
    "frauds": {"author": "blob", "seq": "integer", "first": "blob", "second": "blob"},
    "refused": {"envelope": "blob"},
    "balances": {"member": "blob", "currency": "text", "balance": "integer"},
    "reserves": {"currency": "text", "amount": "integer"},
}


def _typed(table: str) -> str:
    """The SQL condition of a well-typed row of `table` (see `_TYPES`)."""
    return " AND ".join(f"typeof({column}) = '{kind}'" for column, kind in _TYPES[table].items())


def _mistyped(conn: sqlite3.Connection, tables: Sequence[str], since: int) -> Iterator[Violation]:
    """A violation naming each row whose columns hold the wrong type (audit skips it);
    of `entries`, the rows after rowid `since` only (an incremental audit's new ones)."""
    for table in tables:
        columns = _TYPES[table]
        probe = ", ".join(f"typeof({c})" for c in columns)
        after = f" AND rowid > {int(since)}" if table == "entries" else ""
        for rowid, *kinds in conn.execute(f"SELECT rowid, {probe} FROM {table} WHERE NOT ({_typed(table)}){after}"):
            wrong = ", ".join(f"{c} holds {k}, not {columns[c]}" for c, k in zip(columns, kinds) if k != columns[c])
            yield Violation(Rule.MALFORMED, f"row {rowid} of {table}: {wrong}")


def _ranges(conn: sqlite3.Connection, mark: AuditMark | None) -> list[tuple[str, list[Any]]]:
    """The WHERE clauses (and their arguments) that pick the rows to audit, in (author,
    seq) order: all of them, or with a mark each feed's entries past it."""
    typed = _typed("entries")
    if mark is None:
        return [(typed, [])]
    authors = [row[0] for row in conn.execute("SELECT DISTINCT author FROM entries ORDER BY author")]  # the index
    return [(f"author = ? AND seq >= ? AND {typed}", [author, mark.feeds[author].size if author in mark.feeds else 0])
            for author in authors]


def _select(conn: sqlite3.Connection, columns: str, ranges: list[tuple[str, list[Any]]]) -> Iterator[Any]:
    for where, args in ranges:
        yield from conn.execute(f"SELECT {columns} FROM entries WHERE {where} ORDER BY author, seq, rowid", args)


def _envelopes(conn: sqlite3.Connection, ranges: list[tuple[str, list[Any]]]) -> Iterator[list[bytes]]:
    """The envelopes to audit in (author, seq) order, a chunk at a time: never all in memory."""
    rows = _select(conn, "unpacked(envelope)", ranges)
    while chunk := [row[0] for _, row in zip(range(CHUNK), rows)]:
        yield chunk


def _verdicts(chunks: Iterator[list[bytes]], workers: int, done: Callable[[int], None]) -> list[Verdict]:
    """Pass 1 over all chunks, in order; at most two chunks per worker are in flight."""
    out: list[Verdict] = []

    def collect(part: list[Verdict]) -> None:
        out.extend(part)
        done(len(out))

    if workers == 1:
        for chunk in chunks:
            collect(_intrinsic(chunk))
        return out
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[Any] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_intrinsic, chunk))
            if len(pending) >= 2 * workers:
                collect(pending.popleft().result())
        while pending:
            collect(pending.popleft().result())
    return out


def open_readonly(path: Path) -> sqlite3.Connection:
    """The ledger file, read-only, in one read transaction: every query sees the same
    snapshot, even of a ledger its node goes on writing (WAL)."""
    if not path.exists():
        raise StoreError(f"no ledger at {path}")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None)
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM entries").fetchone()
        Envelopes.of(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a usable ledger database: {exc}") from None
    return conn


def audit(path: Path | str, *, workers: int = 1, progress: Callable[[int, int], None] | None = None,
          mark: Path | None = None) -> AuditReport:
    """Audit the ledger file at `path` (see the module doc); `progress(done, total)` is
    called as the intrinsic pass advances. With a `mark` file, only what is new since the
    passing audit that left it is checked, and a passing audit leaves a new one
    (`_audit_mark`)."""
    started = time.perf_counter()
    path = Path(path)
    conn = open_readonly(path)
    previous = None
    try:
        coop_row = conn.execute("SELECT value FROM meta WHERE key = 'coop'").fetchone()
        if coop_row is None:
            raise StoreError(f"{path} names no co-op: it is not a wattshare ledger")
        if conn.execute("SELECT 1 FROM meta WHERE key = 'light'").fetchone() is not None:
            raise StoreError(f"{path} is a light member's ledger (it keeps only the feeds its node needs): audit a "
                             "co-op node's ledger, or set this home up with --full")
        previous = AuditMark.open(mark, coop_row[0]) if mark is not None else None
        while True:
            passes = _passes(conn, path, coop_row[0], workers, progress, previous)
            if previous is None:
                passes.run()
                break
            if not previous.reaches_back(len(passes.frauds), passes.verdicts, conn):
                previous.seed(passes, conn)
                passes.run()
                if not passes.reached_back:  # no checkpoint's cut needs entries before the mark
                    break
            previous.close()
            previous = None  # and again, in full
    finally:
        conn.close()
        if previous is not None:
            previous.close()
    report = passes.report
    if mark is not None and report.ok:
        save(mark, passes, previous)
    report.since = previous.entries if previous is not None else 0
    report.seconds = time.perf_counter() - started
    return report


def _passes(conn: sqlite3.Connection, path: Path, coop: bytes, workers: int,
            progress: Callable[[int, int], None] | None, mark: AuditMark | None) -> OrderedPasses:
    """Read what the audit needs (with a mark, only each feed's entries past it) and run
    the intrinsic pass; the ordered passes are ready to run."""
    tables = [t for t in _TYPES if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [t]).fetchone()]
    if "refused" not in tables:  # older files
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS refused (envelope BLOB, author BLOB, seq INTEGER)")
    ranges = _ranges(conn, mark)
    rows = list(_select(conn, "digest, author, seq, frozen, party", ranges))
    heads = conn.execute(f"SELECT author, envelope FROM heads WHERE {_typed('heads')}").fetchall()
    frauds = conn.execute(f"SELECT author, seq, first, second FROM frauds WHERE {_typed('frauds')}").fetchall()
    refused = [row[0] for row in conn.execute(
        f"SELECT envelope FROM refused WHERE {_typed('refused')} ORDER BY author, seq")]
    stored = {(m, c): b for m, c, b in conn.execute(
        f"SELECT member, currency, balance FROM balances WHERE {_typed('balances')}")}
    reserves = dict(conn.execute(f"SELECT currency, amount FROM reserves WHERE {_typed('reserves')}").fetchall())
    report = AuditReport(path=str(path), coop=coop, entries=len(rows), workers=workers,
                         violations=list(_mistyped(conn, tables, mark.rowid if mark else 0)),
                         rowid=conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM entries").fetchone()[0])
    verdicts = _verdicts(_envelopes(conn, ranges), workers, lambda n: progress(n, len(rows)) if progress else None)

    def leaves_of(author: bytes) -> list[bytes]:
        return [row[0] for row in conn.execute("SELECT leaf FROM entries WHERE author = ? ORDER BY seq", [author])]

    return OrderedPasses(report, rows, verdicts, frauds, leaves_of, (heads, stored, reserves, refused))
