"""The ledger's SQLite store: durable entries, heads, balances and fraud proofs.

Theory of operation (DESIGN.md, "Ledger", "Store"): the file is plain SQLite in WAL
mode, made with sqlite-utils and readable by any SQLite tool; its tables are `_schema`'s.

`ingest` takes a batch of envelopes, checks every one (intrinsic rules, then feed
order, claims and trust against the in-memory `LedgerState`), and writes all of it in
ONE SQLite transaction: a refused entry, an error or a crash anywhere in the batch
leaves file and memory exactly as before the batch. An entry dated more than
`MAX_CLOCK_SKEW` ahead of the ledger's clock is refused for now (`BAD_TIME`): entry
times stay near the time they were first seen. At open, the state is rebuilt from the
tables without re-verifying (audit is the command that re-verifies everything).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from wattshare.protocol import (
    MAX_CLOCK_SKEW,
    Identity,
    Record,
    RemoteProtocolError,
    SignatureError,
    Signed,
    sign,
    vouched_by,
    wall_time,
)

from ._charter import CoopCharter, Retirement
from ._entry import Entry, EntryKind, FeeClaim, FeedHead, SettlementClaim
from ._errors import EntryRefused, Rule, StoreError
from ._rules import Checked, check_entry, decode_entry, entry_body, evidence
from ._schema import FORKED, VOID, Envelopes, open_ledger_db, write_all
from ._state import ROLE_OF, LedgerState, Outcome

MAX_EVIDENCE_PER_AUTHOR = 16


@dataclass
class IngestReport:
    added: int = 0
    duplicates: int = 0
    ignored: int = 0  # entries of frozen feeds
    forks: list[tuple[bytes, int]] = field(default_factory=list)  # (author, seq)
    refused: list[EntryRefused] = field(default_factory=list)  # entries kept as evidence instead


class LedgerStore:
    """A member's, host's or co-op's copy of the ledger (see the module doc)."""

    def __init__(self, path: Path | str, coop: bytes, clock: Callable[[], float] = wall_time) -> None:
        """The ledger at `path`, trusting co-op `coop`; `clock` (the node's) dates what it detects."""
        self.path = Path(path)
        self.clock = clock
        try:
            self.db = open_ledger_db(self.path, coop)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable ledger database: {exc}") from None
        self.envelopes = Envelopes.of(self.db.conn)
        self.state = LedgerState(coop)
        self._epoch = os.urandom(8)  # names this opening of the store in its marks
        self._changes = 0
        self._changed: dict[bytes, int] = {}  # feed -> the change (count) that last gave it entries, a head or a fork
        self._load()

    # --- schema and loading ---------------------------------------------------------

    def _load(self) -> None:
        state = self.state
        for row in self.db.query(
            "SELECT author, digest, leaf, booking_id, t FROM entries WHERE frozen != ? ORDER BY author, seq", [FORKED]
        ):
            feed = state.feeds[row["author"]]
            feed.digests.append(row["digest"])
            feed.log.append(row["leaf"])
            feed.last_t = max(feed.last_t, row["t"])
            if row["booking_id"] is not None:
                state.claims[row["booking_id"]] = row["digest"]
        for row in self.db["frauds"].rows:
            state.feeds[row["author"]].frozen = True
        for row in self.db["balances"].rows:
            state.balances[(row["member"], row["currency"])] = row["balance"]
        for row in self.db["reserves"].rows:
            state.money_in[row["currency"]] = row["amount"]
        charter = next(self.db.query(
            "SELECT seq, unpacked(envelope) AS envelope FROM entries WHERE author = ? AND kind = ? AND frozen = 0 "
            "ORDER BY seq DESC LIMIT 1",
            [state.coop, EntryKind.COOP.value],
        ), None)
        if charter is not None:
            body = decode_entry(charter["envelope"]).message.body
            state.adopt(charter["seq"], CoopCharter.decode(body))
        for row in self.db.query("SELECT unpacked(envelope) AS envelope FROM entries WHERE kind IN (?, ?, ?) "
                                 "AND frozen = 0 ORDER BY author, seq",
                                 [EntryKind.HOLD.value, EntryKind.RELEASE.value, EntryKind.ADMIT.value]):
            fact = check_entry(row["envelope"])
            state.track_hold(fact)
            if fact.admitted is not None:
                state.limits[fact.admitted.member] = fact.admitted.limit

    # --- ingest -----------------------------------------------------------------------

    def ingest(self, envelopes: Iterable[bytes], forks: Iterable[tuple[bytes, bytes]] = ()) -> IngestReport:
        """Verify and store a batch atomically; EntryRefused (store unchanged) on any bad entry.

        `forks` are fraud proofs learnt from a peer: pairs of envelopes one author signed
        for one seq. They freeze that feed here too, even before its entries arrive."""
        batch = sorted(
            ((decode_entry(data), data) for data in envelopes),
            key=lambda item: (item[0].message.author, item[0].message.seq),
        )
        proofs = [self._fork_proof(first, second) for first, second in forks]
        report, rows = IngestReport(), []
        frozen: list[tuple[bytes, int]] = []  # (author, seq) of a forked feed's entries
        voided: list[tuple[bytes, int]] = []  # (author, seq) of retired roles' entries
        frauds: dict[tuple[bytes, int], tuple[bytes, bytes, int]] = {}  # (author, seq) -> (first, second, detected)
        applied: dict[bytes, Checked] = {}  # digest -> facts, for entries new in this batch
        applied_envelopes: dict[bytes, bytes] = {}
        touched: set[tuple[bytes, str]] = set()

        def freeze(author: bytes, seq: int, first: bytes, second: bytes) -> None:
            reverted = self._freeze(author, applied)
            known = frauds.get((author, seq)) or self._proof(author, seq)
            first, second = sorted({first, second, *(known[:2] if known else ())})[:2]  # the canonical proof
            frauds[(author, seq)] = (first, second, known[2] if known else int(self.clock()))
            frozen.extend((checked.author, checked.seq) for checked in reverted.values())
            touched.update((m, c) for checked in reverted.values() for m, c, _ in checked.effects)
            report.forks.append((author, seq))

        self.state.begin()
        try:
            for author, seq, first, second in proofs:
                freeze(author, seq, first, second)
            for signed, data in batch:
                digest = hashlib.sha256(data).digest()
                outcome = self.state.classify(signed, digest)
                if outcome is Outcome.NEW:
                    checked = check_entry(signed)
                    if checked.t > self.clock() + MAX_CLOCK_SKEW:
                        raise EntryRefused(Rule.BAD_TIME, "dated ahead of this ledger's clock: offer it again later",
                                           author=checked.author, seq=checked.seq)
                    leaf, retirements = self.state.apply(checked, digest, data)
                    applied[digest] = checked
                    touched.update((m, c) for m, c, _ in checked.effects)
                    applied_envelopes[digest] = data
                    rows.append((digest, checked.author, checked.seq, checked.t, checked.kind.value, checked.claim, leaf,
                                 self.envelopes.pack(data), VOID if self.state.void(checked) else 0, checked.party))
                    for retirement in retirements:
                        voided.extend(self._void(retirement, applied, touched))
                elif outcome is Outcome.DUPLICATE:
                    report.duplicates += 1
                elif outcome is Outcome.IGNORED:
                    report.ignored += 1
                else:
                    entry = signed.message
                    ours = self.state.feeds[entry.author].digest_at(entry.seq)
                    first = applied_envelopes.get(ours) or self._envelope(entry.author, entry.seq)
                    freeze(entry.author, entry.seq, first, data)
            report.added = len(rows)
            write_all(self.db, [
                ("INSERT INTO entries (digest, author, seq, t, kind, booking_id, leaf, envelope, frozen, party) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows),
                (f"UPDATE entries SET frozen = {FORKED} WHERE author = ? AND seq = ?", frozen),
                (f"UPDATE entries SET frozen = {VOID} WHERE author = ? AND seq = ? AND frozen = 0", voided),
                ("INSERT OR REPLACE INTO frauds VALUES (?, ?, ?, ?, ?)",
                 [(author, seq, *proof) for (author, seq), proof in frauds.items()]),
                ("INSERT OR REPLACE INTO balances VALUES (?, ?, ?)",
                 [(m, c, self.state.balances[(m, c)]) for m, c in sorted(touched)]),
                ("INSERT OR REPLACE INTO reserves VALUES (?, ?)", sorted(self.state.money_in.items())),
            ])
        except BaseException:
            self.state.rollback()
            raise
        self.state.commit()
        self._touch({row[1] for row in rows} | {author for author, _ in frozen} | {author for author, _ in frauds})
        return report

    # --- marks: what changed since a peer last heard ------------------------------------

    def _touch(self, authors: Iterable[bytes]) -> None:
        for author in authors:
            self._changes += 1
            self._changed[author] = self._changes

    def mark(self) -> bytes:
        """Where this store stands now: give it back to `changed_since` to learn which feeds
        changed after. Opaque to peers, and good only for this opening of the store."""
        return self._epoch + self._changes.to_bytes(8, "big")

    def changed_since(self, mark: bytes | None) -> list[bytes] | None:
        """The feeds that got entries, a signed head or a fork proof after `mark`; None (all
        of them, as far as the caller knows) for no mark, or one this opening of the store
        did not give."""
        if mark is None or len(mark) != 16 or mark[:8] != self._epoch:
            return None
        count = int.from_bytes(mark[8:], "big")
        if count > self._changes:
            return None
        return [author for author, change in self._changed.items() if change > count]

    def keep_evidence(self, envelope: bytes) -> EntryRefused | None:
        """Keep `envelope` as evidence against its author if it is validly signed and
        breaks an entry rule of its own (`check_entry`); returns that refusal, or None
        if the entry proves nothing against its author (a bad outer signature: whoever
        sent it is to blame, not the key it names)."""
        refused = evidence(envelope)
        if refused is None:
            return None
        count = self.db.execute("SELECT COUNT(*) FROM refused WHERE author = ?", [refused.author]).fetchone()[0]
        if count < MAX_EVIDENCE_PER_AUTHOR:
            write_all(self.db, [("INSERT OR IGNORE INTO refused VALUES (?, ?, ?, ?, ?, ?)",
                          [(hashlib.sha256(envelope).digest(), refused.author, refused.seq, refused.rule.value,
                            envelope, int(self.clock()))])])
        return refused

    def evidence(self) -> list[bytes]:
        """The envelopes kept as evidence (see `keep_evidence`)."""
        return [row[0] for row in self.db.execute("SELECT envelope FROM refused ORDER BY author, seq")]

    @staticmethod
    def _fork_proof(first: bytes, second: bytes) -> tuple[bytes, int, bytes, bytes]:
        a, b = decode_entry(first).message, decode_entry(second).message
        if a.author != b.author or a.seq != b.seq or first == second:
            raise EntryRefused(Rule.MALFORMED, "a fork proof is two different entries of one author and seq")
        return a.author, a.seq, first, second

    def _proof(self, author: bytes, seq: int) -> tuple[bytes, bytes, int] | None:
        row = self.db.execute("SELECT first, second, detected FROM frauds WHERE author = ? AND seq = ?",
                              [author, seq]).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def _envelope(self, author: bytes, seq: int) -> bytes:
        envelope: bytes = self.db.execute("SELECT unpacked(envelope) FROM entries WHERE author = ? AND seq = ?",
                                          [author, seq]).fetchone()[0]
        return envelope

    def _void(self, retirement: Retirement, applied: dict[bytes, Checked],
              touched: set[tuple[bytes, str]]) -> list[tuple[bytes, int]]:
        """Void the applied role entries at or past `retirement` (see the module doc);
        returns their (author, seq)."""
        feed = self.state.feeds[retirement.member]
        if feed.frozen:
            return []
        kinds = [kind.value for kind, role in ROLE_OF.items() if role is retirement.role]
        stored = self.db.execute(
            f"SELECT digest, unpacked(envelope) FROM entries WHERE author = ? AND seq >= ? AND frozen = 0 "
            f"AND kind IN ({', '.join('?' * len(kinds))})", [retirement.member, retirement.until, *kinds]).fetchall()
        facts = {digest: check_entry(envelope) for digest, envelope in stored}
        facts.update((d, c) for d, c in applied.items()
                     if c.author == retirement.member and ROLE_OF.get(c.kind) is retirement.role and self.state.void(c))
        for checked in facts.values():
            if self.state.void(checked):
                self.state.unpost(checked)
                touched.update((m, c) for m, c, _ in checked.effects)
        return [(checked.author, checked.seq) for checked in facts.values() if self.state.void(checked)]

    def _freeze(self, author: bytes, applied: dict[bytes, Checked]) -> dict[bytes, Checked]:
        """Freeze a forking author's whole feed; returns the entries whose effects it reverted."""
        feed = self.state.feeds[author]
        reverted = {
            digest: applied[digest] if digest in applied else check_entry(self._envelope(author, seq))
            for seq, digest in enumerate(feed.digests)
        }
        self.state.freeze(author, list(reverted.values()))
        return reverted

    # --- own feed ---------------------------------------------------------------------

    def append(self, identity: Identity, items: Sequence[tuple[EntryKind, Record]], t: int | None = None) -> list[Signed[Entry]]:
        """Write entries to `identity`'s own feed (one batch) and sign the new feed head.
        They are dated `t` (default: the clock), or the feed's last time if a stepped-back
        clock would date them earlier (more than `MAX_CLOCK_SKEW` back, and ingest refuses
        them with `BAD_TIME` until the clock has caught up)."""
        author = identity.public_key
        feed = self.state.feeds[author]
        t = max(int(self.clock()) if t is None else t, feed.last_t)
        size, prev, signed = feed.size, feed.tip, []
        for offset, (kind, body) in enumerate(items):
            entry = sign(identity, Entry(author=author, seq=size + offset, prev=prev, t=t, kind=kind, body=body.encode()))
            prev = entry.digest
            signed.append(entry)
        self.ingest([s.encode() for s in signed])
        self.ingest_head(sign(identity, FeedHead(author=author, size=feed.size, root=feed.log.root(), t=t)))
        return signed

    # --- heads ---------------------------------------------------------------------------

    def ingest_head(self, head: Signed[FeedHead] | bytes) -> bool:
        """Keep a verified feed head; False if it is beyond the entries held (not yet checkable)."""
        if isinstance(head, bytes):
            try:
                head = Signed.decode(head, FeedHead)
            except SignatureError as exc:
                raise EntryRefused(Rule.SIGNATURE, exc.message) from None
            except RemoteProtocolError as exc:
                raise EntryRefused(Rule.MALFORMED, exc.message) from None
        message = head.message
        if message.size > self.state.size(message.author):
            return False
        if not self.state.check_head(message):
            raise EntryRefused(Rule.HEAD_MISMATCH, "the signed root disagrees with the entries held",
                               author=message.author, seq=message.size)
        current = self.db.execute("SELECT size, t FROM heads WHERE author = ?", [message.author]).fetchone()
        if current is None or (message.size, message.t) > tuple(current):
            write_all(self.db, [("INSERT OR REPLACE INTO heads VALUES (?, ?, ?, ?, ?)",
                          [(message.author, message.size, message.root, message.t, head.encode())])])
            self._touch([message.author])
        return True

    def heads(self, authors: Collection[bytes] | None = None) -> list[Signed[FeedHead]]:
        """The signed heads this ledger keeps (of `authors` only, if given). `ingest_head`
        verified each before it kept it, so they are parsed, not verified again (as the
        entries are not at open: audit re-verifies the file); a row whose envelope is not
        signed by its `author` is verified, and one that fails is left out."""
        rows = self.db.execute("SELECT author, envelope FROM heads").fetchall() if authors is None else [
            row for author in authors
            for row in self.db.execute("SELECT author, envelope FROM heads WHERE author = ?", [author])]
        heads = []
        for author, envelope in rows:
            with vouched_by(author), suppress(RemoteProtocolError):
                heads.append(Signed.decode(envelope, FeedHead))
        return heads

    # --- queries --------------------------------------------------------------------------

    def sizes(self) -> dict[bytes, int]:
        return {author: feed.size for author, feed in self.state.feeds.items() if feed.size}

    def entries(self, author: bytes, start: int, end: int) -> list[bytes]:
        """Envelopes of `author`'s entries with start <= seq < end, frozen ones included:
        a peer that has not seen the fork yet learns of it by ingesting them."""
        return [row[0] for row in self.db.execute(
            "SELECT unpacked(envelope) FROM entries WHERE author = ? AND seq >= ? AND seq < ? ORDER BY seq",
            [author, start, end],
        )]

    def balance(self, member: bytes, currency: str) -> int:
        return self.state.balances.get((member, currency), 0)

    def track_record(self, host: bytes) -> tuple[int, int]:
        """(sessions the host settled, how many of them their own driver disputed): the
        public record a driver can rate a host by. A dispute by anyone but the booking's
        driver, or of another settlement than the one claimed, does not count."""
        settled = {row[0] for row in self.db.execute(
            "SELECT booking_id FROM entries WHERE author = ? AND kind = ? AND frozen = 0",
            [host, EntryKind.SETTLEMENT.value])}
        disputes: dict[bytes, set[tuple[bytes, bytes]]] = {}  # booking -> {(disputer, settlement digest)}
        for (envelope,) in self.db.execute("SELECT unpacked(envelope) FROM entries WHERE kind = ? AND frozen = 0",
                                           [EntryKind.DISPUTE.value]):
            signed = decode_entry(envelope)
            dispute = entry_body(signed)
            if dispute.booking_id in settled:
                disputes.setdefault(dispute.booking_id, set()).add((signed.message.author, dispute.settlement))
        disputed = 0
        for booking_id, answers in disputes.items():
            envelope = self.db.execute("SELECT unpacked(envelope) FROM entries WHERE booking_id = ? AND author = ? "
                                       "AND kind = ?",
                                       [booking_id, host, EntryKind.SETTLEMENT.value]).fetchone()[0]
            claim = entry_body(decode_entry(envelope))
            disputed += (claim.booking.request.message.driver, claim.settlement.digest) in answers
        return len(settled), disputed

    def fee_claim(self, booking_id: bytes) -> tuple[bytes, int] | None:
        """(digest, time) of the FEE entry that claims `booking_id`, if the ledger holds one."""
        row = self.db.execute("SELECT digest, t FROM entries WHERE booking_id = ? AND kind = ? AND frozen = 0",
                              [booking_id, EntryKind.FEE.value]).fetchone()
        return (row[0], row[1]) if row is not None else None

    def host_claim(self, booking_id: bytes) -> SettlementClaim | FeeClaim | None:
        """What the host claimed for `booking_id` on its feed (its settlement, or a cancel
        or no-show fee), if the ledger holds it."""
        row = self.db.execute("SELECT unpacked(envelope) FROM entries WHERE booking_id = ? AND kind IN (?, ?) "
                              "AND frozen = 0 LIMIT 1",
                              [booking_id, EntryKind.SETTLEMENT.value, EntryKind.FEE.value]).fetchone()
        claim: SettlementClaim | FeeClaim | None = None if row is None else entry_body(decode_entry(row[0]))
        return claim

    def frauds(self) -> list[tuple[bytes, bytes]]:
        """Fraud proofs: pairs of conflicting envelopes by one author for one seq."""
        return [(row["first"], row["second"]) for row in self.db.query("SELECT first, second FROM frauds ORDER BY author, seq")]

    def close(self) -> None:
        self.db.close()
