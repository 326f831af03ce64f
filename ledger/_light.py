"""A node's account proofs: the accounts its witness signed, proofs of them, and a light member's credit.

Theory of operation (DESIGN.md, "Light and full members"; the proofs in `_accounts`):

- A witness keeps the accounts of the latest checkpoint it signed (`sign_checkpoint`),
  in the ledger file's `accounts` table, and builds any member's proof from them.
- A light member keeps the latest verified proof per member it has fetched (`keep`):
  the wallet its own, a host each driver that books it. A proof is taken only if it
  verifies under the ledger's co-op and its checkpoint is no older than the latest
  checkpoint this ledger holds.
- `available` is a driver's credit from its proof plus what this ledger holds past the
  proof's cut: the driver's holds (on its own feed, which the host pulls before it
  decides) and the money the held entries past the cut moved for it (a treasurer's
  deposit, the host's own claims).
"""

from __future__ import annotations

from wattshare.protocol import Identity, Signed

from ._accounts import Account, AccountProof, account_root, accounts_of, light_available
from ._entry import Checkpoint, Entry, EntryKind
from ._errors import EntryRefused, Rule
from ._history import movements
from ._merkle import MerkleLog
from ._rules import Checked, check_entry
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
    names, charter = {state.coop}, None
    for envelope in ledger.entries(state.coop, 0, coop_size):
        fact = check_entry(envelope)
        if fact.admitted is not None:
            names.add(fact.admitted.member)
        charter = fact.charter or charter
    return sorted(names | (charter.names() if charter else set()))


def prove(ledger: LedgerStore, member: bytes) -> AccountProof | None:
    """`member`'s account in the latest checkpoint this node signed, or the latest proof
    of it this node keeps; None if it has neither."""
    kept = ledger.db.execute("SELECT proof FROM proofs WHERE member = ?", [member]).fetchone()
    signed = ledger.db.execute("SELECT value FROM meta WHERE key = 'accounts'").fetchone()
    if signed is None:
        return AccountProof.decode(kept[0]) if kept else None
    rows = ledger.db.execute("SELECT member, size, root, balance, held FROM accounts ORDER BY position").fetchall()
    accounts = [Account(member=m, size=s, root=r, balance=b, held=h) for m, s, r, b, h in rows]
    index = next((i for i, a in enumerate(accounts) if a.member == member), None)
    if index is None:
        return None
    log = MerkleLog(a.leaf() for a in accounts)
    return AccountProof(checkpoint=signed[0], account=accounts[index], index=index,
                        path=tuple(log.inclusion_proof(index, len(accounts))))


def latest_checkpoint(ledger: LedgerStore) -> Checked | None:
    """The newest checkpoint this ledger holds (by its time), of any witness."""
    row = ledger.db.execute("SELECT unpacked(envelope) FROM entries WHERE kind = ? AND frozen = 0 "
                            "ORDER BY t DESC LIMIT 1", [EntryKind.CHECKPOINT.value]).fetchone()
    return check_entry(row[0]) if row else None


def keep(ledger: LedgerStore, proof: AccountProof) -> Checked:
    """Verify and keep a fetched proof (see the module doc); EntryRefused if it does not
    verify or is older than the latest checkpoint this ledger holds."""
    checked, _ = proof.verify(ledger.state.coop)
    latest = latest_checkpoint(ledger)
    if latest is not None and checked.t < latest.t:
        raise EntryRefused(Rule.HEAD_MISMATCH, "the proof is of an older checkpoint than the latest one held")
    write_all(ledger.db, [("INSERT OR REPLACE INTO proofs VALUES (?, ?)", [(proof.account.member, proof.encode())])])
    return checked


def available(ledger: LedgerStore, proof: AccountProof, currency: str, now: int, before: int | None = None) -> int:
    """A driver's credit by its verified `proof` and what this ledger holds past its cut
    (see the module doc)."""
    _, body = proof.verify(ledger.state.coop)
    driver, cut = proof.account.member, body.cut(members_at(ledger, body.coop_size))
    moved = sum(m.delta for m in movements(ledger, driver) if m.currency == currency and m.seq >= cut.get(m.author, 0))
    holds = ledger.state.holds.get(driver, {}).values()
    return light_available(proof.account, ledger.state.credit_limit(driver), moved, holds, now, before)
