"""A member's money movements (what each entry moved to or from one member), and the witnesses' checkpoints.

Theory of operation: an entry's effects are what `check_entry` says they are, the facts
that post balances, so a history and the balance it adds up to agree by construction.
Entries of a forked feed and entries a retirement voided (`frozen` != 0) moved nothing
and are left out. A movement's `delta` is in minor units, positive when money came in.
The scan reads only the entries that can move the member's money (by the `author` and
`party` columns, plus every adjustment, which names two members), oldest first; each is
verified again as it is read (the store keeps envelopes, not decoded facts), and the
member's effects taken from what `check_entry` says.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._entry import EntryKind
from ._rules import check_entry
from ._store import LedgerStore

MONEY_KINDS = (EntryKind.SETTLEMENT, EntryKind.FEE, EntryKind.DEPOSIT, EntryKind.WITHDRAWAL, EntryKind.ADJUSTMENT)


@dataclass(frozen=True, slots=True)
class Movement:
    t: int  # the entry's time, UTC seconds
    kind: EntryKind
    author: bytes  # who wrote the entry: the host for a settlement or fee, a treasurer for the rest
    seq: int  # its place in the author's feed
    booking_id: bytes | None  # the booking a settlement, fee or adjustment is about
    currency: str
    delta: int  # minor units; positive when money came in


def movements(store: LedgerStore, member: bytes) -> list[Movement]:
    """Every movement of `member`'s money on `store`, oldest first."""
    found = []
    marks = ", ".join("?" for _ in MONEY_KINDS)
    for (envelope,) in store.db.execute(
            f"SELECT unpacked(envelope) FROM entries WHERE kind IN ({marks}) AND frozen = 0 "
            "AND (author = ? OR party = ? OR kind = ?) ORDER BY t, author, seq",  # the indexes: the member's own
            [kind.value for kind in MONEY_KINDS] + [member, member, EntryKind.ADJUSTMENT.value]):
        checked = check_entry(envelope)
        found += [Movement(checked.t, checked.kind, checked.author, checked.seq, checked.booking, currency, delta)
                  for who, currency, delta in checked.effects if who == member]
    return found


@dataclass(frozen=True, slots=True)
class Witnessed:
    t: int
    witness: bytes
    seq: int  # on the witness's feed
    feeds: int  # how many feeds the checkpoint's cut holds entries of
    entries: int  # the entries of those feeds it covers


def checkpoints(store: LedgerStore, limit: int = 50) -> list[Witnessed]:
    """The latest `limit` witness checkpoints on `store`, newest first."""
    rows = store.db.execute("SELECT unpacked(envelope) FROM entries WHERE kind = ? AND frozen = 0 "
                            "ORDER BY t DESC, seq DESC "
                            "LIMIT ?", [EntryKind.CHECKPOINT.value, limit])
    found = []
    for (envelope,) in rows:
        checked = check_entry(envelope)
        sizes = checked.checkpoint.feed_sizes()  # type: ignore[union-attr]
        found.append(Witnessed(checked.t, checked.author, checked.seq, sum(1 for n in sizes if n), sum(sizes)))
    return found
