"""Passes 2 and 3 of an audit: feed order, claims, trust, then cross checks (see `_audit`).

Theory of operation: one process walks the stored rows per feed in seq order with the
workers' verdicts beside them, rebuilding the ledger state from scratch (`LedgerState`)
and Merkle logs of every feed, flagging each break as a `Violation`; then checks the
signed heads and checkpoints against those logs, answers against the settlements they
name, charters, balances and conservation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from wattshare.protocol import RemoteProtocolError, SignatureError, Signed

from ._accounts import CutWalker
from ._charter import CoopCharter
from ._entry import Checkpoint, EntryKind, FeedHead
from ._errors import EntryRefused, Rule
from ._findings import AuditReport, Verdict, Violation
from ._merkle import MerkleLog
from ._rules import Checked, decode_entry, entry_body, evidence
from ._schema import FORKED, VOID
from ._state import LedgerState


def _role_rule(fact: Checked) -> Rule:
    """The rule a role entry breaks when its author does not hold that role."""
    return Rule.NOT_WITNESS if fact.kind is EntryKind.CHECKPOINT else Rule.NOT_TREASURER


class OrderedPasses:
    """Passes 2 and 3 (see the module doc), over the rows and the workers' verdicts."""

    def __init__(self, report: AuditReport, rows: list[Any], verdicts: list[Verdict], frauds: list[Any],
                 leaves_of: Callable[[bytes], list[bytes]], tables: tuple[list[Any], dict[Any, int], dict[str, int],
                                                                           list[bytes]]) -> None:
        """`leaves_of(author)` reads a feed's stored leaf hashes: a log resumed from an
        audit mark (`_audit_mark`) needs them for a root before its base. `tables` are
        the stored heads, balances, reserves and refused entries."""
        self.report = report
        self.rows = rows
        self.verdicts = verdicts
        self.frauds = frauds
        self.leaves_of = leaves_of
        self.tables = tables
        self.state = LedgerState(report.coop)
        self.logs: dict[bytes, MerkleLog] = defaultdict(MerkleLog)
        self.accepted: list[Checked] = []
        # what cross checks look up, of this run's entries and (in an incremental audit) the mark's
        self.fees: dict[bytes, tuple[bytes, bytes]] = {}  # booking -> (FEE entry digest, the booking's driver)
        self.settled: dict[bytes, tuple[bytes, bytes]] = {}  # booking -> (Settlement digest, the booking's driver)
        self.answered: set[tuple[bytes, bytes]] = set()  # (driver, Settlement digest) answered by an ack or dispute
        self.charters: set[bytes] = set()  # digests of the co-op's charter entries
        self.witnessed: dict[bytes, int] = defaultdict(int)  # feed -> entries a verified checkpoint covers
        self.proven: set[bytes] = set()  # authors the frauds table proves forked: their rows must be frozen
        self.walked: dict[bytes, list[Checked]] = defaultdict(list)  # per feed, what a cut's accounts count
        self.charters_at: list[tuple[int, CoopCharter]] = []  # the co-op's charters by feed seq
        self.admitted_at: list[tuple[int, bytes]] = []  # the co-op's admissions: (feed seq, member)
        self.walker: CutWalker | None = None  # seeded by an audit mark
        self.reached_back = False  # a checkpoint's cut is behind the mark: audit again in full
        self.forked: set[bytes] = set()

    def flag(self, rule: Rule, detail: str, author: bytes | None = None, seq: int | None = None) -> None:
        self.report.violations.append(Violation(rule, detail, author, seq))

    def run(self) -> None:
        heads, stored, reserves, refused = self.tables
        forked = self.forked = self._forks()
        self._retirements(forked)
        for (digest, author, seq, frozen, party), verdict in zip(self.rows, self.verdicts):
            counted = self._entry(verdict, digest, author, seq, author in forked)
            if isinstance(verdict.fact, Checked) and verdict.fact.party != party:
                self.flag(Rule.MALFORMED, "the row's party is not the member the entry moves money for", author, seq)
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
            signed = decode_entry(envelope)
            if signed.message.kind is EntryKind.SETTLEMENT:
                with suppress(RemoteProtocolError):
                    claim = entry_body(signed)
                    claims.add((claim.booking.id, claim.settlement.digest, claim.booking.request.message.driver))
        return claims

    def _retirements(self, forked: set[bytes]) -> None:
        """Judge role entries by the co-op's latest charter: its retirements stand for
        every entry, whichever feed replicated first."""
        if self.report.coop in forked:
            return
        latest = None
        for (_, author, *_), verdict in zip(self.rows, self.verdicts):
            fact = verdict.fact
            if author == self.report.coop and isinstance(fact, Checked) and fact.kind is EntryKind.COOP:
                latest = fact.charter
        if latest is not None:
            self.state.retire_by(latest)

    def _forks(self) -> set[bytes]:
        forked: set[bytes] = set()
        seen: dict[tuple[bytes, int], bytes] = {}
        for digest, author, seq, *_ in self.rows:
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

    def _entry(self, verdict: Verdict, digest: bytes, author: bytes, seq: int, forked: bool) -> bool | None:
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
        if CutWalker.counts(fact):
            self.walked[author].append(fact)
        if self.state.void(fact):
            self.flag(_role_rule(fact), f"a {fact.kind} written after the co-op retired its author from that role: "
                            "it counts for nothing", author, seq)
            return False
        self.accepted.append(fact)
        if fact.kind is EntryKind.FEE:
            self.fees[fact.booking] = (digest, fact.driver)  # type: ignore[index,assignment]
        elif fact.kind is EntryKind.SETTLEMENT:
            self.settled[fact.booking] = (fact.settlement, fact.driver)  # type: ignore[index,assignment]
        elif fact.kind is EntryKind.COOP and author == self.report.coop:
            self.charters.add(digest)
            self.charters_at.append((seq, fact.charter))  # type: ignore[arg-type]
        elif fact.admitted is not None:
            self.admitted_at.append((seq, fact.admitted.member))
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
        witnessed = self.witnessed
        for fact in self.accepted:
            if fact.kind is EntryKind.CHECKPOINT:
                self.report.checkpoints += 1
                witnessed[fact.author] = max(witnessed[fact.author], fact.seq + 1)  # it vouches for itself
                for author, size in self._checkpoint(fact).items():
                    witnessed[author] = max(witnessed[author], size)
        self.report.unwitnessed = {author: (witnessed[author], log.size) for author, log in self.logs.items()
                                   if log.size > witnessed[author]}

    def _members_at(self, coop_size: int) -> tuple[list[bytes], CoopCharter | None]:
        """The members in key order and the charter in force after the co-op's first
        `coop_size` entries."""
        charters = [charter for seq, charter in self.charters_at if seq < coop_size]
        charter = charters[-1] if charters else None
        names = {m for seq, m in self.admitted_at if seq < coop_size} | {self.report.coop}
        return sorted(names | (charter.names() if charter else set())), charter

    def _checkpoint(self, fact: Checked) -> dict[bytes, int]:
        """Recompute a checkpoint's accounts at its cut (`_accounts`): the feeds' roots
        from the entries, balances and holds by walking to the cut. Returns the cut if it
        holds, else flags it. A ledger with a forked feed is not checked: which branch a
        witness counted cannot be told (the fork is named)."""
        body: Checkpoint = fact.checkpoint  # type: ignore[assignment]
        names, charter = self._members_at(body.coop_size)
        if len(names) != body.count:
            self.flag(Rule.HEAD_MISMATCH, f"checkpoint's cut lists {body.count} members, the co-op's feed at its "
                                          f"size has {len(names)}", fact.author, fact.seq)
            return {}
        sizes = {author: size for author, size in body.cut(names).items() if size}
        roots = {author: self._root(author, size, "checkpoint", fact.author, fact.seq) for author, size in sizes.items()}
        if self.forked or None in roots.values():
            return {}
        if self.walker is None:
            self.walker = CutWalker(self.walked, charter.currency if charter else "")
        if self.walker.seeded and not self.walker.reaches(sizes):
            self.reached_back = True
            return {}
        leaves = self.walker.leaves(names, charter, sizes, roots, fact.t)  # type: ignore[arg-type]
        if MerkleLog(leaves).root() != body.accounts:
            self.flag(Rule.HEAD_MISMATCH, "checkpoint's accounts differ from the entries at its cut (a feed's root, "
                                          "a balance or an open hold)", fact.author, fact.seq)
            return {}
        return sizes

    def _root(self, author: bytes, size: int, what: str, by: bytes, seq: int | None = None) -> bytes | None:
        """The Merkle root of the feed's first `size` entries; None (flagged) if this
        ledger holds fewer."""
        log = self.logs.get(author)
        if log is None or size > log.size:
            self.flag(Rule.HEAD_MISMATCH, f"{what} covers {size} entries of a feed this ledger holds fewer of", by, seq)
            return None
        try:
            return log.root_at(size)
        except ValueError:  # before a resumed log's base: the stored leaves of the audited part give it
            return MerkleLog(self.leaves_of(author)[:size]).root()

    def _check_root(self, author: bytes, size: int, root: bytes, what: str, by: bytes) -> None:
        """Flag a signed root that is not the Merkle root of the feed's first `size` entries."""
        at = self._root(author, size, what, by)
        if at is not None and at != root:
            self.flag(Rule.HEAD_MISMATCH, f"{what} root differs from the entries' Merkle root", by)

    def _cross_checks(self, refused_claims: set[tuple[bytes, bytes, bytes]]) -> None:
        answered = self.answered
        for fact in self.accepted:
            if fact.kind is EntryKind.DISPUTE and (fact.booking, fact.settlement, fact.author) in refused_claims:
                continue  # a driver disputing a claim the ledger refused: right, and nothing dangles
            if fact.kind is EntryKind.DISPUTE and fact.booking is not None \
                    and self.fees.get(fact.booking) == (fact.settlement, fact.author):
                continue  # the booking's driver disputing the fee its host claimed
            if fact.kind in (EntryKind.ACK, EntryKind.DISPUTE):
                if self.settled.get(fact.booking) != (fact.settlement, fact.author):  # type: ignore[arg-type]
                    self.flag(Rule.DANGLING, f"{fact.kind} names no settlement of this driver", fact.author, fact.seq)
                elif (fact.author, fact.settlement) in answered:
                    self.flag(Rule.DOUBLE_ANSWER, f"a second answer ({fact.kind}) to one settlement: the first stands",
                              fact.author, fact.seq)
                answered.add((fact.author, fact.settlement))  # type: ignore[arg-type]
            elif fact.charter_digest is not None and fact.charter_digest not in self.charters:
                self.flag(_role_rule(fact), "relies on a charter the co-op's feed does not hold", fact.author, fact.seq)

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
