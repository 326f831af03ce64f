"""The ledger's in-memory state and its stateful rules: feed order, forks, claims, trust.

Theory of operation (DESIGN.md, "Ledger"):

- Per author a `Feed`: the digests of its applied entries in seq order and their
  RFC 6962 Merkle log. An entry applies only as the feed's next seq, naming the feed's
  tip and dated no earlier than the entry before it (`SEQ_GAP`, `PREV_MISMATCH`,
  `BAD_TIME` otherwise).
- `classify` sorts an incoming verified entry before any costly check: DUPLICATE (we
  hold it: a no-op, so replication is idempotent), FORK (we hold a different entry at
  that seq, signed by the same author: a fraud proof), IGNORED (the feed is frozen),
  or NEW.
- A fork freezes the author's *whole* feed: the caller reverts the effects of all its
  entries (`freeze`) and keeps both conflicting entries as the fraud proof. Stores that
  saw different branches first, or learnt of the fork at different seqs, still end with
  the same balances: a member who signs two histories has neither counted.
- A booking is claimed (settled, or charged a fee) once, ever (`DUPLICATE_CLAIM`).
- Charters are trusted only from this ledger's co-op key (`UNTRUSTED_COOP`); the
  latest trusted charter gives members' credit limits and the one currency money moves
  in. A charter must keep the currency and the retirements of the one before it, and
  retire every key it drops (`BAD_CHARTER`).
- Role entries (money moves by treasurers, checkpoints by witnesses) follow feed
  order, not time: an entry at a seq its author's role was retired from (`void`) stays
  in its feed's chain but moves nothing. `accept` returns the retirements a new
  charter brings; the caller voids the entries it already applied past them (`unpost`).
- Balances are maintained incrementally from each entry's postings; deposits minus
  withdrawals are tracked beside them, so conservation is checkable at any moment.
- Membership and credit: members are the keys the co-op's ADMIT entries admit and the
  keys its charter in force names (`is_member`); the latest admission of a key gives its
  credit limit (ADMIT entries of another author are `UNTRUSTED_COOP`). A key not
  admitted, or whose feed is frozen, has no credit. Each driver's open credit
  holds are kept per booking with their feed position, and `available` is what a host
  may still let it book: balance + credit limit - the caps of its open holds before a
  given one. A hold closes when its booking is claimed or released, or lapses by the
  asking host's clock; since holds chain in the driver's own feed, each host counts
  every hold made before the one it decides on, so confirmed caps never add up past
  the credit unless the driver forks its feed (frozen, named by audit).
- Changes are journalled: `rollback` undoes everything since `begin`, which is how a
  refused batch leaves the state exactly as before it.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wattshare.protocol import GENESIS, Signed

from ._charter import CoopCharter, Retirement, Role
from ._entry import Entry, EntryKind, FeedHead
from ._errors import EntryRefused, Rule
from ._merkle import MerkleLog, leaf_hash
from ._rules import Checked

ROLE_OF = {
    EntryKind.DEPOSIT: Role.TREASURER,
    EntryKind.WITHDRAWAL: Role.TREASURER,
    EntryKind.ADJUSTMENT: Role.TREASURER,
    EntryKind.CHECKPOINT: Role.WITNESS,
}


class Outcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    FORK = "fork"
    IGNORED = "ignored"  # the author's feed is frozen by a fork


@dataclass
class Feed:
    digests: list[bytes] = field(default_factory=list)  # of the entries from `base` on
    log: MerkleLog = field(default_factory=MerkleLog)
    frozen: bool = False  # its author forked it: nothing of it counts any more
    last_t: int = 0  # the time of its last entry: the next may not be earlier
    base: int = 0  # entries before `digests`, known by their tip only (an incremental audit's mark)
    base_tip: bytes = GENESIS

    @property
    def size(self) -> int:
        return self.base + len(self.digests)

    @property
    def tip(self) -> bytes:
        return self.digests[-1] if self.digests else self.base_tip

    def digest_at(self, seq: int) -> bytes:
        return self.digests[seq - self.base]


class LedgerState:
    """Everything ingest needs to decide on an entry, kept in memory (see module doc)."""

    def __init__(self, coop: bytes) -> None:
        self.coop = coop
        self.feeds: dict[bytes, Feed] = defaultdict(Feed)
        self.claims: dict[bytes, bytes] = {}  # booking id -> digest of the claiming entry
        self.balances: dict[tuple[bytes, str], int] = defaultdict(int)
        self.money_in: dict[str, int] = defaultdict(int)  # deposits minus withdrawals
        self.charter: tuple[int, CoopCharter] | None = None  # (seq, charter) in force
        self.retired: dict[tuple[bytes, Role], int] = {}  # (key, role) -> first seq it moves nothing at
        self.members: set[bytes] = {coop}  # every key the charter in force names
        self.limits: dict[bytes, int] = {}  # admitted member -> its credit limit (`ADMIT`)
        # driver -> booking -> (seq of its HOLD entry, cap held, when it lapses)
        self.holds: dict[bytes, dict[bytes, tuple[int, int, int]]] = defaultdict(dict)
        self._journal: list[Callable[[], object]] | None = None

    # --- transactions -------------------------------------------------------------

    def begin(self) -> None:
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal, self._journal = self._journal or [], None
        for undo in reversed(journal):
            undo()

    def _undo(self, action: Callable[[], object]) -> None:
        if self._journal is not None:
            self._journal.append(action)

    # --- rules ----------------------------------------------------------------------

    def classify(self, signed: Signed[Entry], digest: bytes) -> Outcome:
        entry = signed.message
        feed = self.feeds.get(entry.author)
        if feed is None:
            return Outcome.NEW
        if feed.frozen:
            return Outcome.IGNORED
        if entry.seq < feed.size:
            return Outcome.DUPLICATE if feed.digest_at(entry.seq) == digest else Outcome.FORK
        return Outcome.NEW

    def apply(self, checked: Checked, digest: bytes, envelope: bytes) -> tuple[bytes, list[Retirement]]:
        """Apply a NEW entry that passed `check_entry`; returns its Merkle leaf hash and
        the retirements it brings (`accept`). EntryRefused if a stateful rule fails."""
        self.check_chain(checked)
        leaf = leaf_hash(envelope)
        return leaf, self.accept(checked, digest, leaf)

    def check_chain(self, checked: Checked) -> None:
        feed = self.feeds[checked.author]
        if checked.seq != feed.size:
            raise EntryRefused(Rule.SEQ_GAP, f"feed is at seq {feed.size}", author=checked.author, seq=checked.seq)
        if checked.prev != feed.tip:
            raise EntryRefused(Rule.PREV_MISMATCH, "prev is not the feed's last entry",
                               author=checked.author, seq=checked.seq)
        if checked.t < feed.last_t:
            raise EntryRefused(Rule.BAD_TIME, f"dated {feed.last_t - checked.t} s before the feed's previous entry",
                               author=checked.author, seq=checked.seq)

    def accept(self, checked: Checked, digest: bytes, leaf: bytes) -> list[Retirement]:
        """The rules beyond feed order (claims, trust), then the entry's effects; returns
        the retirements a new charter brings (see the module doc)."""
        if checked.claim is not None and self.claims.get(checked.claim, digest) != digest:
            raise EntryRefused(Rule.DUPLICATE_CLAIM, "this booking is already settled or charged",
                               author=checked.author, seq=checked.seq)
        if checked.charter_author is not None and checked.charter_author != self.coop:
            raise EntryRefused(Rule.UNTRUSTED_COOP, "the embedded charter is not this ledger's co-op's",
                               author=checked.author, seq=checked.seq)
        if checked.admitted is not None and checked.author != self.coop:
            raise EntryRefused(Rule.UNTRUSTED_COOP, "only the co-op's key admits members",
                               author=checked.author, seq=checked.seq)
        charter = checked.charter if checked.kind is EntryKind.COOP and checked.author == self.coop else None
        if charter is not None and self.charter and (problem := self.charter[1].successor_problem(charter)):
            raise EntryRefused(Rule.BAD_CHARTER, problem, author=checked.author, seq=checked.seq)
        currency = self.charter[1].currency if self.charter else None
        if currency is not None and any(c != currency for _, c, _ in checked.effects):
            raise EntryRefused(Rule.MALFORMED, f"moves money in another currency than the co-op's {currency}",
                               author=checked.author, seq=checked.seq)
        self.extend(checked.author, digest, leaf, checked.t)
        if checked.claim is not None:
            self.claims[checked.claim] = digest
            self._undo(lambda: self.claims.pop(checked.claim))  # type: ignore[arg-type]
            self._close_hold(checked.driver, checked.claim)  # type: ignore[arg-type]
        self.track_hold(checked)
        if checked.admitted is not None:
            self.admit(checked.admitted.member, checked.admitted.limit)
        retirements = self.adopt(checked.seq, charter) if charter is not None else []
        if not self.void(checked):
            self._post(checked, 1)
        return retirements

    def track_hold(self, checked: Checked) -> None:
        """Open a HOLD entry's hold (unless its booking is already claimed); close a RELEASE's."""
        if checked.hold is not None and checked.booking not in self.claims:
            self._open_hold(checked.author, checked.booking, (checked.seq, *checked.hold))  # type: ignore[arg-type]
        elif checked.kind is EntryKind.RELEASE:
            self._close_hold(checked.author, checked.booking)  # type: ignore[arg-type]

    def _open_hold(self, driver: bytes, booking: bytes, hold: tuple[int, int, int]) -> None:
        self.holds[driver][booking] = hold
        self._undo(lambda: self.holds[driver].pop(booking))

    def _close_hold(self, driver: bytes, booking: bytes) -> None:
        held = self.holds.get(driver, {}).pop(booking, None)
        if held is not None:
            self._undo(lambda: self.holds[driver].__setitem__(booking, held))

    def admit(self, member: bytes, limit: int) -> None:
        previous = self.limits.get(member)
        self.limits[member] = limit
        self._undo(lambda: self.limits.pop(member) if previous is None else self.limits.__setitem__(member, previous))

    def adopt(self, seq: int, charter: CoopCharter) -> list[Retirement]:
        """Put the co-op's charter at feed seq `seq` in force (its members, its
        retirements); returns the retirements new to this state."""
        previous, members = self.charter, self.members
        self.charter, self.members = (seq, charter), charter.names() | {self.coop}

        def undo() -> None:
            self.charter, self.members = previous, members

        self._undo(undo)
        return self.retire_by(charter)

    def retire_by(self, charter: CoopCharter) -> list[Retirement]:
        """Take in `charter`'s retirements; returns those new to this state."""
        fresh = [r for r in charter.retired if (r.member, r.role) not in self.retired]
        for r in fresh:
            self.retired[(r.member, r.role)] = r.until
            self._undo(functools.partial(self.retired.pop, (r.member, r.role)))
        return fresh

    def void(self, checked: Checked) -> bool:
        """True if `checked` is a role entry at or past its author's retirement from that
        role: it stays in the chain and moves nothing."""
        role = ROLE_OF.get(checked.kind)
        return role is not None and checked.seq >= self.retired.get((checked.author, role), checked.seq + 1)

    def unpost(self, checked: Checked) -> None:
        """Revert the effects of an applied entry that a later retirement voided."""
        self._post(checked, -1)

    def extend(self, author: bytes, digest: bytes, leaf: bytes, t: int = 0) -> None:
        """Put an entry on its feed's chain and Merkle log (no effects)."""
        feed = self.feeds[author]
        last_t = feed.last_t
        feed.digests.append(digest)
        feed.log.append(leaf)
        feed.last_t = max(last_t, t)

        def undo() -> None:
            feed.digests.pop()
            feed.log.truncate(feed.size)
            feed.last_t = last_t

        self._undo(undo)

    def _post(self, checked: Checked, sign: int) -> None:
        moves_money_in = checked.kind in (EntryKind.DEPOSIT, EntryKind.WITHDRAWAL)
        for member, currency, delta in checked.effects:
            self._add(self.balances, (member, currency), sign * delta)
            if moves_money_in:
                self._add(self.money_in, currency, sign * delta)

    def _add(self, table: dict[Any, int], key: object, delta: int) -> None:
        table[key] += delta
        self._undo(lambda: table.__setitem__(key, table[key] - delta))

    def freeze(self, author: bytes, reverted: list[Checked]) -> None:
        """Freeze a forking author's feed; `reverted` are all its applied entries."""
        feed = self.feeds[author]
        for checked in reverted:
            self._post(checked, -1)
        previous = (list(feed.digests), list(feed.log.leaves), feed.frozen)
        feed.digests.clear()
        feed.log.truncate(0)
        feed.frozen = True

        def undo() -> None:
            digests, leaves, frozen = previous
            feed.digests[:] = digests
            feed.log = MerkleLog(leaves)
            feed.frozen = frozen

        self._undo(undo)

    # --- queries -----------------------------------------------------------------------

    def size(self, author: bytes) -> int:
        feed = self.feeds.get(author)
        return feed.size if feed else 0

    def check_head(self, head: FeedHead) -> bool:
        """True if we hold `head.size` entries of its feed and their root is `head.root`."""
        feed = self.feeds.get(head.author)
        return feed is not None and head.size <= feed.size and feed.log.root_at(head.size) == head.root

    def credit_limit(self, member: bytes) -> int:
        """The member's credit limit by its latest admission; none for a key the co-op has
        not admitted or whose feed is frozen."""
        frozen = member in self.feeds and self.feeds[member].frozen
        return 0 if frozen else self.limits.get(member, 0)

    def is_member(self, key: bytes) -> bool:
        return key in self.members or key in self.limits

    def names(self) -> set[bytes]:
        """Every member: admitted, or named by the charter in force (and the co-op)."""
        return self.members | set(self.limits)

    def hold(self, driver: bytes, booking: bytes) -> tuple[int, int, int] | None:
        """(seq, cap, lapses) of the driver's open hold for `booking`, if this ledger has it."""
        return self.holds.get(driver, {}).get(booking)

    def available(self, driver: bytes, currency: str, now: int, before: int | None = None) -> int:
        """Balance plus credit limit minus the caps of the driver's holds open at `now`
        (only those before feed seq `before`, if given: see the module doc)."""
        held = sum(cap for seq, cap, lapses in self.holds.get(driver, {}).values()
                   if lapses > now and (before is None or seq < before))
        return self.balances.get((driver, currency), 0) + self.credit_limit(driver) - held

    def conserved(self) -> bool:
        totals: dict[str, int] = defaultdict(int)
        for (_, currency), balance in self.balances.items():
            totals[currency] += balance
        return all(totals[c] == self.money_in.get(c, 0) for c in set(totals) | set(self.money_in))

