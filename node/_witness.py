"""A co-op's witness: signed checkpoints of every feed head its ledger holds.

Theory of operation (DESIGN.md, "Ledger": checkpoint; "Time"): a checkpoint is an entry on
the witness's own feed naming the charter in force, the (size, root) of every unfrozen
feed and the root of every member's account at those heads (`ledger.sign_checkpoint`). A
running co-op node writes one every `CHECKPOINT_EVERY` seconds of its clock, and only when
some feed other than the witness's own has grown since the last, so a quiet co-op writes
nothing and a busy one at most one a domain hour (8,760 a year, whatever the real time
between them). After a long sleep (a jumped clock) it writes one checkpoint, not one per
hour missed.
"""

from __future__ import annotations

import logging

from wattshare.ledger import Entry, LedgerStore, sign_checkpoint
from wattshare.protocol import Identity, Signed

from ._clock import Clock

CHECKPOINT_EVERY = 3600  # clock seconds between a co-op node's checkpoints (when heads moved)
log = logging.getLogger(__name__)


def charter_entry(ledger: LedgerStore, coop: bytes) -> Signed[Entry] | None:
    """The co-op's charter in force: its feed's latest COOP entry, if the ledger holds one
    (read at the seq the ledger's state took it from: the feed's admissions after it are
    not decoded)."""
    if ledger.state.charter is None or ledger.state.coop != coop:
        return None
    seq = ledger.state.charter[0]
    return Signed.decode(ledger.entries(coop, seq, seq + 1)[0], Entry)


async def witness_feeds(ledger: LedgerStore, witness: Identity, coop: bytes, clock: Clock,
                        every: int = CHECKPOINT_EVERY) -> None:
    """Checkpoint whenever the other feeds moved, at most once `every` clock seconds, forever."""
    seen: dict[bytes, int] = {}
    while True:
        await clock.sleep(every)
        others = {author: size for author, size in ledger.sizes().items() if author != witness.public_key}
        charter = charter_entry(ledger, coop)
        if others != seen and charter is not None:
            log.info("checkpoint feeds=%d", sign_checkpoint(ledger, witness, charter, int(clock())))
            seen = others
