"""Light members: the accounts a witness signs and proves, the feeds a light member follows, its credit check.

Theory of operation (DESIGN.md, "Light and full members"; the proofs in `_accounts`):

- A witness keeps the accounts of the latest checkpoint it signed (`sign_checkpoint`), in
  the ledger file's `accounts` table, and proves any member's account from them (`prove`).
- A light member replicates the co-op's feed (charter, admissions), its treasurers'
  feeds (money in and out, adjustments), its own, and the feeds it follows
  (`follow_feed`, and those its own feed names): a wallet its hosts', a host its
  drivers' (`Interest`). So a wallet's own balance is exact from its own ledger (every
  entry that moves its money is on one of those feeds). A host keeps the newest verified
  proof of each driver that books it (`keep`).
- `light_credit` is a driver's credit from its proof plus what this ledger holds past the
  proof's cut: the driver's holds (on its own feed, which the host pulls before it
  decides) and the money the held entries past the cut moved for it (a treasurer's
  deposit, the host's own claims). Every hold from the cut on counts, lapsed or not,
  until this ledger holds its release or claim: a claim by another host never takes
  more than its hold, so whatever this member does not hold is counted at most. That
  makes any checkpoint safe to start from, however old, and none at all too (the cut at
  zero: only slower to free credit). What a light member trusts is the witness's signed
  accounts (every full node's audit recomputes them and names a witness that lies), not
  the node that serves the proof nor how fresh it is.
"""

from __future__ import annotations

from wattshare.protocol import Identity, Signed

from ._accounts import Account, AccountProof, account_root, accounts_of, light_available
from ._charter import Role
from ._entry import Checkpoint, Entry, EntryKind
from ._history import movements
from ._merkle import EMPTY_ROOT, MerkleLog
from ._rules import check_entry, decode_entry, entry_body
from ._schema import write_all
from ._store import LedgerStore


def sign_checkpoint(ledger: LedgerStore, witness: Identity, charter: Signed[Entry], t: int) -> int:
    """The witness signs the cut of every member's feed this ledger holds and every
    member's account at it, and keeps the accounts to prove them; returns the feeds
    covered."""
    state = ledger.state
    accounts = accounts_of(state, t)
    body = Checkpoint(charter=charter, coop_size=state.size(state.coop),
                      sizes=Checkpoint.pack_sizes([a.size for a in accounts]), accounts=account_root(accounts))
    [entry] = ledger.append(witness, [(EntryKind.CHECKPOINT, body)], t=t)
    write_all(ledger.db, [("DELETE FROM accounts", [()]),
                          ("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?)",
                           [(i, a.member, a.size, a.root, a.balance, a.held) for i, a in enumerate(accounts)]),
                          ("INSERT OR REPLACE INTO meta VALUES ('accounts', ?)", [(entry.encode(),)])])
    return sum(1 for a in accounts if a.size)


def members_at(ledger: LedgerStore, coop_size: int) -> list[bytes]:
    """The members, in key order, that the first `coop_size` entries of the co-op's feed
    admit or name: the order of a checkpoint's cut."""
    state = ledger.state
    if coop_size == state.size(state.coop):
        return sorted(state.names())
    query = "FROM entries WHERE author = ? AND kind = ? AND seq < ? AND frozen = 0"
    admitted = {m for (m,) in ledger.db.execute(f"SELECT party {query}", [state.coop, EntryKind.ADMIT.value, coop_size])}
    latest = ledger.db.execute(f"SELECT unpacked(envelope) {query} ORDER BY seq DESC LIMIT 1",
                               [state.coop, EntryKind.COOP.value, coop_size]).fetchone()
    charter = check_entry(latest[0]).charter if latest else None
    return sorted(admitted | {state.coop} | (charter.names() if charter else set()))


def prove(ledger: LedgerStore, member: bytes) -> AccountProof | None:
    """`member`'s account in the latest checkpoint this node signed, or the newest proof
    of it this node keeps; None if it has neither."""
    signed = ledger.db.execute("SELECT value FROM meta WHERE key = 'accounts'").fetchone()
    if signed is None:
        kept = ledger.db.execute("SELECT proof FROM proofs WHERE member = ?", [member]).fetchone()
        return AccountProof.decode(kept[0]) if kept else None
    rows = ledger.db.execute("SELECT member, size, root, balance, held FROM accounts ORDER BY position").fetchall()
    accounts = [Account(member=m, size=s, root=r, balance=b, held=h) for m, s, r, b, h in rows]
    index = next((i for i, a in enumerate(accounts) if a.member == member), None)
    if index is None:
        return None
    log = MerkleLog(a.leaf() for a in accounts)
    return AccountProof(checkpoint=signed[0], account=accounts[index], index=index,
                        path=tuple(log.inclusion_proof(index, len(accounts))))


def keep(ledger: LedgerStore, proof: AccountProof) -> bool:
    """Verify a fetched proof and keep it if its checkpoint is newer than the one kept for
    that member; EntryRefused if it does not verify."""
    checked, _ = proof.verify(ledger.state.coop)
    member = proof.account.member
    kept = ledger.db.execute("SELECT t FROM proofs WHERE member = ?", [member]).fetchone()
    if kept is not None and kept[0] >= checked.t:
        return False
    write_all(ledger.db, [("INSERT OR REPLACE INTO proofs VALUES (?, ?, ?)", [(member, checked.t, proof.encode())])])
    return True


def light_credit(ledger: LedgerStore, driver: bytes, currency: str, before: int | None = None) -> int:
    """A driver's credit from the newest proof of its account this ledger keeps (or from
    zero, without one) and what this ledger holds past the proof's cut (see the module
    doc)."""
    account, cut = Account(member=driver, size=0, root=EMPTY_ROOT, balance=0, held=0), {}
    kept = ledger.db.execute("SELECT proof FROM proofs WHERE member = ?", [driver]).fetchone()
    if kept is not None:
        proof = AccountProof.decode(kept[0])
        _, body = proof.verify(ledger.state.coop)
        if body.coop_size <= ledger.state.size(ledger.state.coop):  # else its members are not known here yet
            account, cut = proof.account, body.cut(members_at(ledger, body.coop_size))
    moved = sum(m.delta for m in movements(ledger, driver) if m.currency == currency and m.seq >= cut.get(m.author, 0))
    holds = ledger.state.holds.get(driver, {}).values()
    return light_available(account, ledger.state.credit_limit(driver), moved, holds, before)


def follow_feed(ledger: LedgerStore, member: bytes) -> None:
    """Replicate `member`'s feed from now on (a light member's counterparty)."""
    write_all(ledger.db, [("INSERT OR IGNORE INTO follows VALUES (?)", [(member,)])])


def keep_light(ledger: LedgerStore, light: bool) -> None:
    """Say in the file whether its node keeps only some feeds (`audit` refuses such a file)."""
    write_all(ledger.db, [("DELETE FROM meta WHERE key = 'light'", [()])]
              + ([("INSERT INTO meta VALUES ('light', ?)", [(b"\x01",)])] if light else []))


class Interest:
    """Which feeds a light member replicates (see the module doc): besides the co-op's and
    the treasurers', its own, the ones it follows, and the counterparties its own feed
    names (the hosts of its holds, the drivers of its claims), so a wallet or host whose
    ledger starts empty again (a new phone, the same key) finds its history. Called with
    an author, it says whether that feed is wanted; `feeds()` names them all (what its
    `Have` asks the other side to tell of: `_replication`)."""

    def __init__(self, ledger: LedgerStore, me: bytes) -> None:
        self.ledger = ledger
        self.me = me
        self._read = 0  # own entries read so far for the counterparties they name
        self._named: set[bytes] = set()

    def __call__(self, author: bytes) -> bool:
        return author in (self.ledger.state.coop, self.me) or author in self._treasurers() \
            or author in self._counterparties() \
            or self.ledger.db.execute("SELECT 1 FROM follows WHERE member = ?", [author]).fetchone() is not None

    def feeds(self) -> set[bytes]:
        followed = {member for (member,) in self.ledger.db.execute("SELECT member FROM follows")}
        return {self.ledger.state.coop, self.me} | self._treasurers() | self._counterparties() | followed

    def _treasurers(self) -> set[bytes]:
        charter = self.ledger.state.charter
        if charter is None:
            return set()
        return set(charter[1].treasurers) | {r.member for r in charter[1].retired if r.role is Role.TREASURER}

    def _counterparties(self) -> set[bytes]:
        ledger, me = self.ledger, self.me
        size = ledger.state.size(me)
        if size == self._read:
            return self._named
        if size < self._read:  # the feed was frozen or rebuilt: read it again
            self._read = 0
            self._named.clear()
        self._named.update(entry_body(decode_entry(envelope)).request.message.host for (envelope,) in ledger.db.execute(
            "SELECT unpacked(envelope) FROM entries WHERE author = ? AND kind = ? AND seq >= ?",
            [me, EntryKind.HOLD.value, self._read]))
        self._named.update(party for (party,) in ledger.db.execute(
            "SELECT party FROM entries WHERE author = ? AND party IS NOT NULL AND seq >= ?", [me, self._read]))
        self._read = size
        return self._named
