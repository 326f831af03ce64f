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

Each finding is a `Violation` named by the same `Rule` that ingest would refuse with.
The file is opened read-only: an audit never changes what it audits.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattshare.protocol import RemoteProtocolError, SignatureError, Signed, peer_id, vouched_by

from ._entry import MAX_BODY, EntryKind, FeedHead, SettlementClaim
from ._errors import EntryRefused, Rule, StoreError
from ._merkle import MerkleLog, leaf_hash
from ._rules import Checked, check_entry, decode_entry, evidence
from ._schema import FORKED, VOID
from ._state import LedgerState

CHUNK = 512


@dataclass(frozen=True, slots=True)
class Violation:
    rule: Rule
    detail: str
    author: bytes | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "detail": self.detail,
            "author": peer_id(self.author) if self.author else None,
            "seq": self.seq,
        }


@dataclass
class AuditReport:
    path: str
    coop: bytes
    entries: int = 0
    feeds: int = 0
    heads: int = 0
    checkpoints: int = 0
    violations: list[Violation] = field(default_factory=list)
    balances: dict[tuple[bytes, str], int] = field(default_factory=dict)
    credit_limits: dict[bytes, int] = field(default_factory=dict)
    unwitnessed: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # feed -> (witnessed, size) if size is more
    seconds: float = 0.0
    workers: int = 1

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "coop": peer_id(self.coop),
            "ok": self.ok,
            "entries": self.entries,
            "feeds": self.feeds,
            "heads": self.heads,
            "checkpoints": self.checkpoints,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "violations": [v.to_json() for v in self.violations],
            "unwitnessed": [{"feed": peer_id(a), "witnessed": w, "size": n}
                            for a, (w, n) in sorted(self.unwitnessed.items())],
            "balances": [
                {"member": peer_id(m), "currency": c, "balance": b, "credit_limit": self.credit_limits.get(m, 0)}
                for (m, c), b in sorted(self.balances.items())
            ],
        }


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What a worker learns of one stored envelope."""

    fact: Checked | tuple[Rule, str]  # the entry's facts, or (rule, detail) of its violation
    sha256: bytes  # to compare with the stored digest
    leaf: bytes  # its RFC 6962 leaf hash


def _intrinsic(envelopes: Sequence[bytes]) -> list[_Verdict]:
    """Worker side of pass 1 (the CPU-heavy part, so everything per entry happens here)."""
    out = []
    for envelope in envelopes:
        try:
            fact: Checked | tuple[Rule, str] = check_entry(envelope)
        except EntryRefused as exc:
            fact = (exc.rule, exc.detail)
        out.append(_Verdict(fact, hashlib.sha256(envelope).digest(), leaf_hash(envelope)))
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


def _mistyped(conn: sqlite3.Connection, tables: Sequence[str]) -> Iterator[Violation]:
    """A violation naming each row whose columns hold the wrong type (audit skips it)."""
    for table in tables:
        columns = _TYPES[table]
        probe = ", ".join(f"typeof({c})" for c in columns)
        for rowid, *kinds in conn.execute(f"SELECT rowid, {probe} FROM {table} WHERE NOT ({_typed(table)})"):
            wrong = ", ".join(f"{c} holds {k}, not {columns[c]}" for c, k in zip(columns, kinds) if k != columns[c])
            yield Violation(Rule.MALFORMED, f"row {rowid} of {table}: {wrong}")


def _envelopes(conn: sqlite3.Connection) -> Iterator[list[bytes]]:
    """The stored envelopes in (author, seq) order, a chunk at a time: never all in memory."""
    cursor = conn.execute(f"SELECT envelope FROM entries WHERE {_typed('entries')} ORDER BY author, seq, rowid")
    while chunk := [row[0] for row in cursor.fetchmany(CHUNK)]:
        yield chunk


def _verdicts(chunks: Iterator[list[bytes]], workers: int, done: Callable[[int], None]) -> list[_Verdict]:
    """Pass 1 over all chunks, in order; at most two chunks per worker are in flight."""
    out: list[_Verdict] = []

    def collect(part: list[_Verdict]) -> None:
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


def _open_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreError(f"no ledger at {path}")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not a usable ledger database: {exc}") from None
    return conn


def audit(path: Path | str, *, workers: int = 1, progress: Callable[[int, int], None] | None = None) -> AuditReport:
    """Audit the ledger file at `path` (see the module doc); `progress(done, total)` is
    called as the intrinsic pass advances."""
    started = time.perf_counter()
    path = Path(path)
    conn = _open_readonly(path)
    try:
        coop_row = conn.execute("SELECT value FROM meta WHERE key = 'coop'").fetchone()
        if coop_row is None:
            raise StoreError(f"{path} names no co-op: it is not a wattshare ledger")
        tables = [t for t in _TYPES if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [t]).fetchone()]
        if "refused" not in tables:  # older files
            conn.execute("CREATE TEMP TABLE refused (envelope BLOB, author BLOB, seq INTEGER)")
        rows = conn.execute(f"SELECT digest, author, seq, frozen FROM entries WHERE {_typed('entries')} "
                            "ORDER BY author, seq, rowid").fetchall()
        heads = conn.execute(f"SELECT author, envelope FROM heads WHERE {_typed('heads')}").fetchall()
        frauds = conn.execute(f"SELECT author, seq, first, second FROM frauds WHERE {_typed('frauds')}").fetchall()
        refused = [row[0] for row in conn.execute(
            f"SELECT envelope FROM refused WHERE {_typed('refused')} ORDER BY author, seq")]
        stored = {(m, c): b for m, c, b in conn.execute(
            f"SELECT member, currency, balance FROM balances WHERE {_typed('balances')}")}
        reserves = dict(conn.execute(f"SELECT currency, amount FROM reserves WHERE {_typed('reserves')}").fetchall())
        report = AuditReport(path=str(path), coop=coop_row[0], entries=len(rows), workers=workers,
                             violations=list(_mistyped(conn, tables)))
        verdicts = _verdicts(_envelopes(conn), workers, lambda n: progress(n, len(rows)) if progress else None)
    finally:
        conn.close()

    _Ordered(report, rows, verdicts, frauds).run(heads, stored, reserves, refused)
    report.seconds = time.perf_counter() - started
    return report


def _role_rule(fact: Checked) -> Rule:
    """The rule a role entry breaks when its author does not hold that role."""
    return Rule.NOT_WITNESS if fact.kind is EntryKind.CHECKPOINT else Rule.NOT_TREASURER


class _Ordered:
    """Passes 2 and 3 (see the module doc), over the rows and the workers' verdicts."""

    def __init__(self, report: AuditReport, rows: list[Any], verdicts: list[_Verdict], frauds: list[Any]) -> None:
        self.report = report
        self.rows = rows
        self.verdicts = verdicts
        self.frauds = frauds
        self.state = LedgerState(report.coop)
        self.logs: dict[bytes, MerkleLog] = defaultdict(MerkleLog)
        self.accepted: list[Checked] = []
        self.fees: dict[bytes, tuple[bytes, bytes]] = {}  # booking -> (FEE entry digest, the booking's driver)
        self.proven: set[bytes] = set()  # authors the frauds table proves forked: their rows must be frozen

    def flag(self, rule: Rule, detail: str, author: bytes | None = None, seq: int | None = None) -> None:
        self.report.violations.append(Violation(rule, detail, author, seq))

    def run(self, heads: list[Any], stored: dict[Any, int], reserves: dict[str, int], refused: list[bytes]) -> None:
        forked = self._forks()
        self._retirements(forked)
        for (digest, author, seq, frozen), verdict in zip(self.rows, self.verdicts):
            counted = self._entry(verdict, digest, author, seq, author in forked)
            if author in self.proven or (counted is not None and author not in forked):
                expected = FORKED if author in self.proven else 0 if counted else VOID
                if frozen != expected:
                    self.flag(Rule.MALFORMED, f"the row says frozen={frozen}, the evidence gives {expected}",
                              author, seq)
        self.report.feeds = len(self.logs)
        self._heads(heads)
        refused_claims = self._evidence(refused)
        self._cross_checks(refused_claims)
        self._balances(stored, reserves)

    def _evidence(self, refused: list[bytes]) -> set[tuple[bytes, bytes, bytes]]:
        """Name the author of each refused entry; returns the (booking, settlement digest,
        driver) of the refused settlement claims, which their drivers may dispute."""
        claims = set()
        for envelope in refused:
            proof = evidence(envelope)
            if proof is None:
                self.flag(Rule.MALFORMED, "the refused-entries table holds an entry that proves nothing")
                continue
            self.flag(proof.rule, f"signed an entry the ledger refused: {proof.detail}", proof.author, proof.seq)
            entry = decode_entry(envelope).message
            if entry.kind is EntryKind.SETTLEMENT:
                with suppress(RemoteProtocolError), vouched_by(entry.author):
                    claim = SettlementClaim.decode(entry.body, max_size=MAX_BODY)
                    claims.add((claim.booking.id, claim.settlement.digest, claim.booking.request.message.driver))
        return claims

    def _retirements(self, forked: set[bytes]) -> None:
        """Judge role entries by the co-op's latest charter: its retirements stand for
        every entry, whichever feed replicated first."""
        if self.report.coop in forked:
            return
        latest = None
        for (_, author, _, _), verdict in zip(self.rows, self.verdicts):
            fact = verdict.fact
            if author == self.report.coop and isinstance(fact, Checked) and fact.kind is EntryKind.COOP:
                latest = fact.charter
        if latest is not None:
            self.state.retire_by(latest)

    def _forks(self) -> set[bytes]:
        forked: set[bytes] = set()
        seen: dict[tuple[bytes, int], bytes] = {}
        for digest, author, seq, _ in self.rows:
            if seen.setdefault((author, seq), digest) != digest:
                self.flag(Rule.FORK, "two entries for one seq in the entries table", author, seq)
                forked.add(author)
        for author, seq, first, second in self.frauds:
            try:
                a, b = decode_entry(first).message, decode_entry(second).message
            except EntryRefused as exc:
                self.flag(Rule.SIGNATURE, f"fraud proof does not verify: {exc.detail}", author, seq)
                continue
            if (a.author, a.seq) != (author, seq) or (b.author, b.seq) != (author, seq) or first == second:
                self.flag(Rule.MALFORMED, "fraud proof is not two entries of this author and seq", author, seq)
                continue
            self.flag(Rule.FORK, "signed two different entries for one seq (fraud proof held)", author, seq)
            forked.add(author)
            self.proven.add(author)
        return forked

    def _entry(self, verdict: _Verdict, digest: bytes, author: bytes, seq: int, forked: bool) -> bool | None:
        """Check one row; True if it counts, False if it is a void role entry, None if
        it is broken or of a forked feed (already flagged)."""
        if verdict.sha256 != digest:
            self.flag(Rule.MALFORMED, "stored digest is not the SHA-256 of the envelope", author, seq)
        log = self.logs[author]
        if seq < log.size:
            return None  # the second row of a fork, already flagged
        leaf = verdict.leaf
        if seq > log.size:
            self.flag(Rule.SEQ_GAP, f"entries {log.size}..{seq - 1} are missing", author, seq)
        log.append(leaf)
        fact = verdict.fact
        if isinstance(fact, tuple):
            self.flag(fact[0], fact[1], author, seq)
            return None
        if fact.author != author or fact.seq != seq:
            self.flag(Rule.MALFORMED, "the row's author or seq is not the entry's", author, seq)
            return None
        if forked:
            return None
        if seq == self.state.feeds[author].size:
            try:
                self.state.check_chain(fact)
            except EntryRefused as exc:
                self.flag(exc.rule, exc.detail, author, seq)
        try:
            self.state.accept(fact, digest, leaf)
        except EntryRefused as exc:
            self.flag(exc.rule, exc.detail, author, seq)
            self.state.extend(author, digest, leaf, fact.t)
            return None
        if self.state.void(fact):
            self.flag(_role_rule(fact), f"a {fact.kind} written after the co-op retired its author from that role: "
                            "it counts for nothing", author, seq)
            return False
        self.accepted.append(fact)
        if fact.kind is EntryKind.FEE:
            self.fees[fact.booking] = (digest, fact.driver)  # type: ignore[index,assignment]
        return True

    def _heads(self, heads: list[Any]) -> None:
        for author, envelope in heads:
            self.report.heads += 1
            try:
                head = Signed.decode(envelope, FeedHead).message
            except (SignatureError, RemoteProtocolError) as exc:
                self.flag(Rule.SIGNATURE, f"signed head: {exc.message}", author)
                continue
            self._check_root(head.author, head.size, head.root, "signed head", author)
        witnessed: dict[bytes, int] = defaultdict(int)
        for fact in self.accepted:
            if fact.kind is EntryKind.CHECKPOINT:
                self.report.checkpoints += 1
                witnessed[fact.author] = max(witnessed[fact.author], fact.seq + 1)  # it vouches for itself
                for ref in fact.heads:
                    if self._check_root(ref.author, ref.size, ref.root, "checkpoint", fact.author, fact.seq):
                        witnessed[ref.author] = max(witnessed[ref.author], ref.size)
        self.report.unwitnessed = {author: (witnessed[author], log.size) for author, log in self.logs.items()
                                   if log.size > witnessed[author]}

    def _check_root(self, author: bytes, size: int, root: bytes, what: str, by: bytes, seq: int | None = None) -> bool:
        """True if the feed's first `size` entries have Merkle root `root`; else flagged."""
        log = self.logs.get(author)
        if log is None or size > log.size:
            self.flag(Rule.HEAD_MISMATCH, f"{what} covers {size} entries of a feed this ledger holds fewer of", by, seq)
        elif log.root_at(size) != root:
            self.flag(Rule.HEAD_MISMATCH, f"{what} root differs from the entries' Merkle root", by, seq)
        else:
            return True
        return False

    def _cross_checks(self, refused_claims: set[tuple[bytes, bytes, bytes]]) -> None:
        settlements = {f.booking: f for f in self.accepted if f.kind is EntryKind.SETTLEMENT}
        charters = {digest for _, digest in self._coop_charters()}
        answered: set[tuple[bytes, bytes | None]] = set()
        for fact in self.accepted:
            if fact.kind is EntryKind.DISPUTE and (fact.booking, fact.settlement, fact.author) in refused_claims:
                continue  # a driver disputing a claim the ledger refused: right, and nothing dangles
            if fact.kind is EntryKind.DISPUTE and fact.booking is not None \
                    and self.fees.get(fact.booking) == (fact.settlement, fact.author):
                continue  # the booking's driver disputing the fee its host claimed
            if fact.kind in (EntryKind.ACK, EntryKind.DISPUTE):
                settled = settlements.get(fact.booking)
                if settled is None or settled.settlement != fact.settlement or settled.driver != fact.author:
                    self.flag(Rule.DANGLING, f"{fact.kind} names no settlement of this driver", fact.author, fact.seq)
                elif (fact.author, fact.settlement) in answered:
                    self.flag(Rule.DOUBLE_ANSWER, f"a second answer ({fact.kind}) to one settlement: the first stands",
                              fact.author, fact.seq)
                answered.add((fact.author, fact.settlement))
            elif fact.charter_digest is not None and fact.charter_digest not in charters:
                self.flag(_role_rule(fact), "relies on a charter the co-op's feed does not hold", fact.author, fact.seq)

    def _coop_charters(self) -> Iterator[tuple[Checked, bytes]]:
        digests = self.state.feeds[self.report.coop].digests
        for fact in self.accepted:
            if fact.kind is EntryKind.COOP and fact.author == self.report.coop:
                yield fact, digests[fact.seq]

    def _balances(self, stored: dict[Any, int], reserves: dict[str, int]) -> None:
        computed = {key: value for key, value in self.state.balances.items() if value}
        self.report.balances = computed
        self.report.credit_limits = {member: self.state.credit_limit(member) for member, _ in computed}
        for (member, currency), value in sorted(computed.items()):
            if value < -self.report.credit_limits[member]:
                self.flag(Rule.OVER_CREDIT, f"owes {-value} {currency}, more than its credit limit of "
                                            f"{self.report.credit_limits[member]}", member)
        for key in sorted(set(computed) | {k for k, v in stored.items() if v}):
            if computed.get(key, 0) != stored.get(key, 0):
                self.flag(Rule.BALANCE_MISMATCH,
                          f"stored {stored.get(key, 0)} {key[1]}, the entries give {computed.get(key, 0)}", key[0])
        totals: dict[str, int] = defaultdict(int)
        for (_, currency), value in stored.items():
            totals[currency] += value
        for currency in sorted(set(totals) | set(reserves)):
            if totals[currency] != reserves.get(currency, 0):
                self.flag(Rule.CONSERVATION,
                          f"stored balances sum to {totals[currency]} {currency}, "
                          f"deposits minus withdrawals are {reserves.get(currency, 0)}")
        if not self.state.conserved():
            self.flag(Rule.CONSERVATION, "recomputed balances do not sum to deposits minus withdrawals")
