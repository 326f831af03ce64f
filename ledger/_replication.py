"""Replication: the sans-IO conversation by which two stores converge.

Theory of operation (DESIGN.md, "Ledger", replication; the transport comes with the node):

1. Each side sends `Have`: the entries it can serve per feed (`sizes`), the latest
   signed head per feed it holds, and its fraud proofs.
2. On the other's `Have`, a side learns its fraud proofs (freezing those feeds), checks
   the signed heads it can check, and sends `Want`: per feed of interest, the range
   from one below its own size up to theirs. The one-entry overlap is how divergent
   branches meet: entries chain by digest, so two branches differ at the overlap or
   nowhere, and ingest then records the fork. A feed they hold less of, but with
   another Merkle root at their size (or a signed head that disagrees), is another
   branch: that entry (or the feed from 0) is wanted for the same reason.
3. Each side answers the other's `Want` with `Batch`es of at most `batch_size` exact
   envelopes, in feed order; the receiver ingests each batch atomically and then keeps
   the heads that have become checkable.

Only members' feeds are wanted (DESIGN.md, "Light and full members"): the keys the
co-op's feed admits or its charter names, and the co-op itself; of those, a light
member wants only the ones its `interest` picks (`ledger._light.Interest`), and its `Have`
asks the other side to tell it of those only (`only`): at co-op scale a whole `Have` is
about 320 bytes and a signature check per member, every pull. A feed skipped
is `deferred`; once a batch brings the admission or charter that makes it wanted
(`newly_admitted`), the caller asks again in the same sync.

A full node's `Have` can be as short: every `Have` carries its store's `mark`
(`LedgerStore.mark`), and a puller that sends back the mark of its last complete pull
(`since`) is told only of the feeds that changed after it. A mark the store did not
give is told everything, so a puller is never told less than what changed; the caller
decides when to ask without one (`node._sync`: every tenth pull).

Every step is idempotent (duplicates are no-ops), resumable (a broken sync loses only
the batch in flight; the next `Have` asks again from the new sizes) and independent of
the order in which feeds arrive.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from wattshare.protocol import Record, Signed, frame_kind, record, require, require_range, require_size

from ._entry import FeedHead
from ._errors import EntryRefused
from ._rules import decode_entry
from ._store import IngestReport, LedgerStore

if TYPE_CHECKING:
    from ._light import Interest

MAX_BATCH = 512
MAX_LIES = 8  # evidence kept from one batch before the batch is refused whole
MAX_FEEDS = 100_000
MAX_HEADS = 4_096  # signed heads per Have: each costs a signature check, so a frame of them is bounded
MAX_FORKS = 256
MAX_MARK = 32  # bytes of a store's mark (`LedgerStore.mark`): a `since` the store did not give is told everything


@record
class FeedSize(Record):
    author: bytes
    size: int
    root: bytes  # Merkle root at `size`: unsigned, only a hint of what to fetch

    def _validate(self) -> None:
        require_size("author", self.author, 32, 32)
        require_range("size", self.size, 0)
        require_size("root", self.root, 32, 32)


@record
class ForkProof(Record):
    first: bytes
    second: bytes


@record
class Have(Record):
    """What one side holds: per feed its size and Merkle root, the latest signed heads, the
    fraud proofs; `only`, the feeds its sender wants to be told of (a light member's),
    or null for all; `since`, the `mark` of the receiver's answer to its sender's last
    complete pull, to be told only of the feeds that changed after it (null: of every
    feed); and `mark`, where the sender's store stands now. A `Have` sent to a side
    that asked for `only` those, or `since` a mark, lists no others."""

    LIMITS = {"sizes": MAX_FEEDS, "heads": MAX_HEADS, "forks": MAX_FORKS, "only": MAX_FEEDS}
    sizes: tuple[FeedSize, ...]
    heads: tuple[Signed[FeedHead], ...]
    forks: tuple[ForkProof, ...] = ()
    only: tuple[bytes, ...] | None = None  # the feeds (author keys) its sender wants to hear of; null: every feed
    since: bytes | None = None  # a mark the receiver gave: tell only of the feeds changed after it; null: all
    mark: bytes | None = None  # the sender's store's mark now (`LedgerStore.mark`), opaque to the receiver

    def _validate(self) -> None:
        require(self.only is None or all(len(author) == 32 for author in self.only), "only names 32-byte keys")
        for name in ("since", "mark"):
            if (value := getattr(self, name)) is not None:
                require_size(name, value, 1, MAX_MARK)


@record
class FeedRange(Record):
    author: bytes
    start: int
    end: int

    def _validate(self) -> None:
        require_size("author", self.author, 32, 32)
        require_range("start", self.start, 0)
        require(self.end > self.start, "a range must not be empty")


@record
class Want(Record):
    LIMITS = {"ranges": MAX_FEEDS}
    ranges: tuple[FeedRange, ...]


@record
class Batch(Record):
    LIMITS = {"entries": MAX_BATCH}
    entries: tuple[bytes, ...]


class Replicator:
    """One store's side of a sync (see the module doc); a light member's `interest` picks
    the feeds to pull (None: every member's)."""

    def __init__(self, store: LedgerStore, interest: Interest | None = None, batch_size: int = 256) -> None:
        self.store = store
        self.interest = interest
        self.batch_size = min(batch_size, MAX_BATCH)
        self._pending_heads: list[Signed[FeedHead]] = []  # their heads beyond what we hold
        self.deferred: set[bytes] = set()  # feeds skipped in the last `want`: not (yet) members' or of interest
        self.asked: tuple[bytes, ...] | None = None  # the feeds this side's last Have asked to hear of (None: all)

    def wish(self) -> tuple[bytes, ...] | None:
        """The feeds this side asks to be told of (`Have.only`): its interest's; None: all."""
        return None if self.interest is None else tuple(sorted(self.interest.feeds()))

    def interested(self, author: bytes) -> bool:
        return self.interest is None or self.interest(author)

    def have(self, only: Collection[bytes] | None = None, since: bytes | None = None,
             ask_since: bytes | None = None) -> Have:
        """This store's Have, telling only of the feeds in `only` that changed after the
        mark `since`, if the other side asked for those (its Have's `only` and `since`), and
        asking for this side's interest in turn, changed after `ask_since` (a mark the
        other side gave)."""
        store = self.store
        changed = store.changed_since(since)
        wished = None if only is None else set(only)
        told = [author for author in (changed if changed is not None else store.state.feeds)
                if wished is None or author in wished]
        self.asked = self.wish()
        feeds = [(author, feed) for author in sorted(told) if (feed := store.state.feeds.get(author)) and feed.size]
        whole = only is None and changed is None
        return Have(
            sizes=tuple(FeedSize(author=author, size=feed.size, root=feed.log.root()) for author, feed in feeds),
            # hints (the sizes alone drive what is fetched), of the feeds told of: as many as this store holds
            heads=tuple(store.heads(None if whole else [author for author, _ in feeds])[:MAX_HEADS]),
            forks=tuple(ForkProof(first=a, second=b) for a, b in store.frauds()[:MAX_FORKS]),
            only=self.asked,
            since=ask_since,
            mark=store.mark(),
        )

    def want(self, theirs: Have) -> Want:
        """Learn from the other side's Have; return what to fetch from it."""
        store = self.store
        if theirs.forks:
            store.ingest([], forks=[(f.first, f.second) for f in theirs.forks])
        refetch = set()
        self._pending_heads = []
        for head in theirs.heads:
            try:
                if not store.ingest_head(head):
                    self._pending_heads.append(head)
            except EntryRefused:
                refetch.add(head.message.author)
        ranges = []
        self.deferred = set()
        for item in theirs.sizes:
            feed = store.state.feeds.get(item.author)
            ours = feed.size if feed is not None else 0
            if feed is not None and feed.frozen:
                continue
            if not (self.interested(item.author) and store.state.is_member(item.author)):
                self.deferred.add(item.author)
                continue
            if item.author in refetch:
                start, end = 0, item.size
            elif item.size > ours:
                start, end = max(0, ours - 1), item.size  # overlap one: a divergence shows as a fork
            elif item.size and feed is not None and feed.log.root_at(item.size) != item.root:
                start, end = item.size - 1, item.size  # they hold another branch of this feed
            else:
                continue
            ranges.append(FeedRange(author=item.author, start=start, end=end))
        return Want(ranges=tuple(ranges))

    def newly_admitted(self) -> bool:
        """True if a feed the last `want` deferred is wanted now (a charter or admission
        that came in the meantime made it a member's, or a light member's treasurer's), or
        a light member now wants feeds its last Have did not ask for (a treasurer its new
        charter names, a host its own holds name): want again."""
        grew = self.interest is not None and not self.interest.feeds() <= set(self.asked or ())
        return grew or any(self.interested(author) and self.store.state.is_member(author) for author in self.deferred)

    def serve(self, want: Want) -> Iterator[Batch]:
        """The batches that answer the other side's Want, from what this store holds."""
        pending: list[bytes] = []
        for wanted in want.ranges:
            for envelope in self.store.entries(wanted.author, wanted.start, wanted.end):
                pending.append(envelope)
                if len(pending) == self.batch_size:
                    yield Batch(entries=tuple(pending))
                    pending = []
        if pending:
            yield Batch(entries=tuple(pending))

    def accept(self, batch: Batch) -> IngestReport:
        """Ingest one batch atomically, then keep the heads it made checkable.

        An entry its author provably wrote that breaks an entry rule is kept as evidence
        (`LedgerStore.keep_evidence`) and leaves out the rest of that feed, while the
        batch's other feeds are stored: one lying member cannot stall replication of
        the rest. Any other refusal refuses the whole batch (its sender is to blame), as
        do more than `MAX_LIES` lies in one batch (each costs a pass over it)."""
        entries, refused = list(batch.entries), list[EntryRefused]()
        places: dict[bytes, tuple[bytes, int]] = {}  # envelope -> (author, seq), once a lie shows up
        while True:
            try:
                report = self.store.ingest(entries)
                break
            except EntryRefused as error:
                author, seq = error.author, error.seq
                if author is None or seq is None or len(refused) == MAX_LIES:
                    raise
                places = places or {e: (m.author, m.seq) for e in entries for m in [decode_entry(e).message]}
                lie = next((e for e in entries if places[e] == (author, seq)), None)
                culprit = self.store.keep_evidence(lie) if lie is not None else None
                if culprit is None:
                    raise
                refused.append(culprit)
                entries = [e for e in entries if places[e][0] != author or places[e][1] < seq]
        report.refused = refused
        still_pending = []
        for head in self._pending_heads:
            try:
                if not self.store.ingest_head(head):
                    still_pending.append(head)
            except EntryRefused:
                continue  # a head that disagrees: the next sync refetches that feed
        self._pending_heads = still_pending
        return report


def pull(puller: Replicator, server: Replicator, since: bytes | None = None) -> tuple[int, bytes | None]:
    """One pull between two local replicators, as a node makes it over streams (for tests
    and tools): `puller` fetches what `server` holds and it wants, of the feeds changed
    after the server's mark `since`, and asks again, without a mark, while that brings
    feeds newly admitted; returns the entries added and the server's last mark."""
    added = 0
    while True:
        theirs = server.have(puller.have(server.wish()).only, since)
        added += sum(puller.accept(batch).added for batch in server.serve(puller.want(theirs)))
        if not puller.newly_admitted():
            return added, theirs.mark
        since = None


def sync(a: Replicator, b: Replicator) -> tuple[int, int]:
    """A whole two-way sync between two local replicators (for tests and tools): each
    pulls the other; returns the number of entries each side added."""
    return pull(a, b)[0], pull(b, a)[0]


frame_kind("sync_have", Have)
frame_kind("sync_want", Want)
frame_kind("sync_batch", Batch)
