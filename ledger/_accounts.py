"""Members' accounts as a witness's checkpoint commits to them, and the proofs light members check.

Theory of operation (DESIGN.md, "Light and full members"):

- A checkpoint is a *cut*: a prefix of every member's feed. The members are the keys the
  first `coop_size` entries of the co-op's feed admit or name (`_state.names`), in key
  order; the checkpoint lists each one's feed size in the cut (four bytes a member), and
  signs the root of an RFC 6962 tree over their `Account{member, size, root, balance,
  held}`: the feed's size and Merkle root in the cut, the balance in the co-op's currency,
  and what its credit holds open at the checkpoint's time hold (`account_root`).
- A witness computes them from its own state (`accounts_of`), whose feeds are the cut.
  An auditor recomputes their leaves at every checkpoint's cut (`CutWalker`: it moves
  each feed's pointer forward or back across the entries' effects and holds, and takes
  the roots from its own Merkle logs), so a witness lying about a balance, or a ledger
  file whose witnessed entries were cut or rewritten, is named.
- `AccountProof` carries a checkpoint entry, one account and its inclusion path: a light
  member verifies the entry like any other (a witness the embedded co-op charter names)
  and the path against the signed root, and `light_available` adds what it holds past
  the cut (`_light`).
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping

from wattshare.protocol import Record, frame_kind, record, require, require_range, require_size

from ._charter import CoopCharter, Role
from ._entry import Checkpoint, EntryKind
from ._errors import EntryRefused, Rule
from ._merkle import EMPTY_ROOT, MerkleLog, leaf_hash, verify_inclusion
from ._rules import Checked, check_entry, decode_entry, entry_body
from ._state import ROLE_OF, LedgerState

_LEAF = struct.Struct(">32sQ32sqQ")
MAX_PATH = 64


@record
class Account(Record):
    """A member at a checkpoint's cut (see the module doc)."""

    member: bytes
    size: int  # entries of its feed in the cut
    root: bytes  # their Merkle root
    balance: int  # minor units of the co-op's currency
    held: int  # what its credit holds open at the checkpoint's time hold

    def _validate(self) -> None:
        require_size("member", self.member, 32, 32)
        require_range("size", self.size, 0, 2**32 - 1)
        require_size("root", self.root, 32, 32)
        require_range("balance", self.balance, -(2**63), 2**63 - 1)
        require_range("held", self.held, 0, 2**63)

    def leaf(self) -> bytes:
        return account_leaf(self.member, self.size, self.root, self.balance, self.held)


def account_leaf(member: bytes, size: int, root: bytes, balance: int, held: int) -> bytes:
    """The Merkle leaf hash of one account (its fields packed: 32 + 8 + 32 + 8 + 8 bytes)."""
    return leaf_hash(_LEAF.pack(member, size, root, balance, held))


def account_root(accounts: list[Account]) -> bytes:
    """The root over accounts in key order, as a checkpoint signs it."""
    return MerkleLog(a.leaf() for a in accounts).root()


def accounts_of(state: LedgerState, t: int) -> list[Account]:
    """The accounts of a ledger's whole state at time `t`: what its witness signs."""
    currency = state.charter[1].currency if state.charter else ""
    balances = {m: v for (m, c), v in state.balances.items() if c == currency}
    held = {driver: sum(amount for _, amount, lapses in holds.values() if lapses > t)
            for driver, holds in state.holds.items()}
    accounts = []
    for member in sorted(state.names()):
        feed = state.feeds.get(member)
        size, root = (feed.size, feed.log.root()) if feed is not None and not feed.frozen else (0, EMPTY_ROOT)
        accounts.append(Account(member=member, size=size, root=root, balance=balances.get(member, 0),
                                held=held.get(member, 0)))
    return accounts


@record
class AccountQuery(Record):
    """A light member asking a node for `member`'s account (`/wattshare/account/1.0.0`)."""

    member: bytes

    def _validate(self) -> None:
        require_size("member", self.member, 32, 32)


@record
class AccountProof(Record):
    """One account in a checkpoint, with its inclusion path (see the module doc)."""

    checkpoint: bytes  # the witness's signed CHECKPOINT entry
    account: Account
    index: int
    path: tuple[bytes, ...]

    LIMITS = {"path": MAX_PATH}

    def _validate(self) -> None:
        require_range("index", self.index, 0, 2**32)
        require_size("path", self.path, 0, MAX_PATH)
        require(all(len(p) == 32 for p in self.path), "path holds 32-byte hashes")

    def verify(self, coop: bytes) -> tuple[Checked, Checkpoint]:
        """The checkpoint's facts and body, if it is a valid checkpoint under `coop`'s
        charter and the path puts the account in it; EntryRefused otherwise."""
        signed = decode_entry(self.checkpoint)
        checked = check_entry(signed)
        if checked.kind is not EntryKind.CHECKPOINT or checked.charter_author != coop:
            raise EntryRefused(Rule.UNTRUSTED_COOP, "not a checkpoint under this co-op's charter")
        body: Checkpoint = entry_body(signed)
        if not verify_inclusion(self.account.leaf(), self.index, body.count, self.path, body.accounts):
            raise EntryRefused(Rule.HEAD_MISMATCH, "the account is not in the checkpoint's accounts")
        return checked, body


def light_available(account: Account, limit: int, moved_since: int, holds: Iterable[tuple[int, int, int]],
                    before: int | None = None) -> int:
    """A driver's credit as a light member can know it (see the module doc): its account
    at the cut, plus `moved_since` (what the entries past the cut that the member holds
    moved for it), plus its credit limit, minus the holds open at the cut and the amount
    of every hold (seq, amount, lapses) still open here from its cut size on (before seq
    `before`), lapsed or not: this member may not hold the claim that took it."""
    since = sum(amount for seq, amount, _ in holds if seq >= account.size and (before is None or seq < before))
    return account.balance + moved_since + limit - account.held - since


class CutWalker:
    """Balances and open holds at any cut of the feeds, reached by moving each feed's
    pointer across its entries (see the module doc)."""

    def __init__(self, facts: Mapping[bytes, list[Checked]], currency: str) -> None:
        self.facts = facts  # per author in seq order: the accepted entries (void ones too) that move money or holds
        self.currency = currency
        self._reset({})

    def _reset(self, retired: dict[tuple[bytes, Role], int]) -> None:
        self.seeded = False
        self.retired = retired
        self.at: dict[bytes, int] = defaultdict(int)
        self.balances: dict[bytes, int] = defaultdict(int)
        self.holds: dict[bytes, tuple[bytes, int, int]] = {}  # booking -> (driver, amount, lapses) in the cut
        self.closed: dict[bytes, int] = defaultdict(int)  # booking -> its claims and releases in the cut
        self.open: dict[bytes, tuple[bytes, int, int]] = {}  # the holds in the cut not closed in it

    @staticmethod
    def counts(fact: Checked) -> bool:
        """True if a walker counts `fact`: it moves money, holds credit or closes a hold."""
        return bool(fact.effects) or fact.hold is not None or fact.claim is not None or fact.kind is EntryKind.RELEASE

    def seed(self, sizes: Mapping[bytes, int], balances: Mapping[bytes, int],
             holds: Iterable[tuple[bytes, bytes, int, int]], charter: CoopCharter | None) -> None:
        """Start from a known cut (an audit mark's): its feeds' sizes, balances, open
        holds (driver, booking, amount, lapses) and the charter in force at it."""
        self._reset({(r.member, r.role): r.until for r in charter.retired} if charter else {})
        self.at.update(sizes)
        self.balances.update(balances)
        for driver, booking, amount, lapses in holds:
            self.holds[booking] = self.open[booking] = (driver, amount, lapses)
        self.seeded = True

    def reaches(self, sizes: Mapping[bytes, int]) -> bool:
        """True if the cut `sizes` is at or past this walker's on every feed, so moving
        there needs no entry before it: how an incremental audit knows a checkpoint needs
        the whole ledger."""
        return all(sizes.get(author, 0) >= at for author, at in self.at.items())

    def leaves(self, names: list[bytes], charter: CoopCharter | None, sizes: Mapping[bytes, int],
               roots: Mapping[bytes, bytes], t: int) -> list[bytes]:
        """The account leaves of `names` (in key order) at the cut `sizes` (feeds absent
        from it at 0) whose Merkle roots are `roots`, at time `t`, under `charter`, the
        one in force at the cut."""
        retired = {(r.member, r.role): r.until for r in charter.retired} if charter else {}
        if retired != self.retired:  # which entries are void changed: count the cut again
            if self.seeded:
                raise ValueError("a walker seeded past the entries it holds cannot count its cut again")
            self._reset(retired)
        for author in set(self.at) | set(sizes):
            self._move(author, sizes.get(author, 0))
        held: dict[bytes, int] = defaultdict(int)
        for driver, amount, lapses in self.open.values():
            if lapses > t:
                held[driver] += amount
        balances = self.balances
        return [account_leaf(k, sizes.get(k, 0), roots.get(k, EMPTY_ROOT), balances.get(k, 0), held.get(k, 0))
                for k in names]

    def _move(self, author: bytes, size: int) -> None:
        facts, at = self.facts.get(author, []), self.at[author]
        low, high = bisect_left(facts, min(at, size), key=_seq), bisect_left(facts, max(at, size), key=_seq)
        if size >= at:
            for fact in facts[low:high]:
                self._count(fact, 1)
        else:
            for fact in reversed(facts[low:high]):
                self._count(fact, -1)
        self.at[author] = size

    def _count(self, fact: Checked, sign: int) -> None:
        role = ROLE_OF.get(fact.kind)
        if role is None or fact.seq < self.retired.get((fact.author, role), fact.seq + 1):
            for member, currency, delta in fact.effects:
                if currency == self.currency:
                    self.balances[member] += sign * delta
        booking = fact.claim if fact.claim is not None else fact.booking
        if booking is None:
            return
        if fact.hold is not None:
            if sign > 0:
                self.holds[booking] = (fact.author, *fact.hold)
            else:
                del self.holds[booking]
        elif fact.claim is not None or fact.kind is EntryKind.RELEASE:
            self.closed[booking] += sign
        hold = self.holds.get(booking)
        if hold is not None and not self.closed[booking]:
            self.open[booking] = hold
        else:
            self.open.pop(booking, None)


def _seq(fact: Checked) -> int:
    return fact.seq


frame_kind("account_query", AccountQuery)
frame_kind("account_proof", AccountProof)
