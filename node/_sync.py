"""Ledger replication over `/wattshare/ledger-sync/1.0.0`, and periodic anti-entropy.

Theory of operation (DESIGN.md, "Ledger", replication): the ledger's sans-IO
`Replicator` decides what to ask and what to store; this module only carries it. A
pull from a peer is one stream:

    puller -> server   Have (what the puller holds: the server may pull back later)
    server -> puller   Have (what the server holds)
    puller -> server   Want (ranges, from the replicator)
    server -> puller   Batch ... Batch, then an empty Batch: done

A light member's `Have` asks to be told only of the feeds it wants (`Have.only`): the
server's answer, and this node's own pulls from that peer later, list no others, so a
pull between a light member and a co-op of 1,000 costs a few kilobytes, not a third of
a megabyte and a thousand signature checks. Every `Have` also carries its sender's
`mark`; a puller sends back (`Have.since`) the mark of the server's answer to its last
complete pull, and is told only of the feeds that changed after it, so full nodes that
pull each other every `SYNC_INTERVAL` say what is new, not all they hold. Every
`WHOLE_EVERY`th pull from a peer, a pull that asks for other feeds than the last, a
push, and the second pull of one that found feeds newly admitted ask without a mark:
whatever a pull skipped (a feed admitted later, a batch refused) is told again there.
Each batch is ingested atomically as it arrives; a broken stream loses at most the
batch in flight, and the next pull resumes from the new sizes. An entry its author
provably signed but the ledger refuses is kept as evidence and its author `blame`d; a
batch with an entry nobody signed refuses the batch and blames the peer serving it. A
server that sees in the puller's `Have` entries it lacks pulls them back soon after,
which is how a short-lived wallet `push`es its new entries before it leaves. Nothing
depends on gossip arriving: every node pulls from every peer it is connected to every
`SYNC_INTERVAL` (but those whose identify says they do not speak this protocol), which
is what makes replicas converge after partitions, restarts and dropped announcements;
a head announcement (`_gossip`) only `nudge`s an earlier pull.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError

from wattshare.ledger import Batch, EntryRefused, Have, Interest, LedgerStore, Replicator, Want
from wattshare.protocol import ErrorReply, Reason, RemoteProtocolError

from ._framing import FrameStream, Refusal, close_quietly, serve

SYNC_PROTOCOL = TProtocol("/wattshare/ledger-sync/1.0.0")
SYNC_FRAME = 4 * 1024 * 1024
SYNC_TIMEOUT = 60.0
MAX_PEERS_REMEMBERED = 1024  # peers whose wish (`Have.only`) is kept, the longest unheard forgotten first
MAX_WISH_REMEMBERED = 1024  # feeds of a wish kept: a longer one is told everything, as a full node is
WHOLE_EVERY = 10  # every this many pulls from a peer, one asks without a mark (at SYNC_INTERVAL, every 5 minutes)
log = logging.getLogger(__name__)


class LedgerSync:
    """Serve and pull ledger entries for one store (see the module doc)."""

    def __init__(self, store: LedgerStore, interest: Interest | None = None,
                 blame: Callable[[bytes, Reason], None] = lambda culprit, reason: None) -> None:
        """`interest` picks the feeds to pull (a light member's: `ledger.Interest`); all by default."""
        self.store = store
        self.interest = interest
        self.blame = blame  # told of each culprit: a lying entry's author, or a peer serving forgeries
        self._news, self._news_out = trio.open_memory_channel[ID](64)
        self.remote_sizes: dict[ID, dict[bytes, int]] = {}  # what each peer served us last held
        # what each peer asked to hear of, last it pulled: the feeds (`only`) and since which mark of ours
        self.their_wish: dict[ID, tuple[tuple[bytes, ...] | None, bytes | None]] = {}
        self.marks: dict[ID, tuple[bytes, tuple[bytes, ...] | None]] = {}  # peer -> (its mark, our `only` then)
        self._pulls: dict[ID, int] = {}  # pulls from each peer: every `WHOLE_EVERY`th asks without a mark

    def _heard(self, peer: ID, theirs: Have) -> None:
        """Keep what a puller asked to hear of: what this node's own pulls from it tell of."""
        only = theirs.only if theirs.only is None or len(theirs.only) <= MAX_WISH_REMEMBERED else None
        _remember(self.their_wish, peer, (only, theirs.since))

    def _since(self, peer: ID, replicator: Replicator, whole: bool) -> bytes | None:
        """The mark to pull from `peer` with: the one its answer to our last complete pull
        gave, unless this pull is to ask without one (see the module doc)."""
        pulls = self._pulls.pop(peer, 0) + 1
        _remember(self._pulls, peer, pulls % WHOLE_EVERY)
        mark, asked = self.marks.get(peer, (None, None))
        return mark if not whole and pulls % WHOLE_EVERY and asked == replicator.wish() else None

    async def handle(self, stream: INetStream) -> RemoteProtocolError | None:
        peer = stream.muxed_conn.peer_id

        async def respond(frames: FrameStream) -> None:
            await self._serve(frames, peer)

        return await serve(stream, respond, SYNC_TIMEOUT, max_size=SYNC_FRAME)

    async def _serve(self, frames: FrameStream, peer: ID) -> None:
        replicator = Replicator(self.store, self.interest)
        theirs = await frames.receive(Have)
        if isinstance(theirs, ErrorReply):
            return
        self._heard(peer, theirs)
        sizes = self.store.sizes()
        if any(f.size > sizes.get(f.author, 0) and replicator.interested(f.author) for f in theirs.sizes):
            self.nudge(peer)  # the puller holds entries we lack: pull back
        await frames.send(replicator.have(theirs.only, theirs.since))
        want = await frames.receive(Want)
        if isinstance(want, ErrorReply):
            return
        for batch in replicator.serve(want):
            await frames.send(batch)
        await frames.send(Batch(entries=()))

    async def pull(self, host: IHost, peer: ID, whole: bool = False) -> int:
        """Fetch what `peer` holds and we want (of the feeds changed since our last pull
        from it, unless `whole`); returns the entries added. A pull that brings a charter
        admitting feeds it skipped asks again (`Replicator.deferred`)."""
        replicator = Replicator(self.store, self.interest)
        added, mark = await self._pull_once(host, peer, replicator, self._since(peer, replicator, whole))
        while replicator.newly_admitted():
            more, mark = await self._pull_once(host, peer, replicator, None)
            added += more
        if mark is not None:
            _remember(self.marks, peer, (mark, replicator.asked))
        return added

    async def catch_up(self, host: IHost, peer: ID, timeout: float) -> None:
        """Pull from `peer` now, giving up quietly after `timeout` seconds (a host checking
        a driver's credit holds before it answers)."""
        with trio.move_on_after(timeout):
            await self._pull_logged(host, peer)

    async def _pull_once(self, host: IHost, peer: ID, replicator: Replicator,
                         since: bytes | None) -> tuple[int, bytes | None]:
        """One pull asking for news since `since`; returns the entries added and the mark
        of the server's answer (to send back as `since` next time)."""
        added = 0
        with trio.fail_after(SYNC_TIMEOUT):
            stream = await host.new_stream(peer, [SYNC_PROTOCOL])
            try:
                frames = FrameStream(stream, max_size=SYNC_FRAME, timeout=SYNC_TIMEOUT)
                only, their_since = self.their_wish.get(peer, (None, None))  # all, if it never pulled
                await frames.send(replicator.have(only, their_since, ask_since=since))
                theirs = await frames.receive(Have)
                if isinstance(theirs, ErrorReply):
                    raise Refusal(theirs.reason, theirs.detail)
                told = {f.author: f.size for f in theirs.sizes}
                if since is None:
                    self.remote_sizes[peer] = told
                else:  # of the feeds changed since: the others are as they were
                    self.remote_sizes.setdefault(peer, {}).update(told)
                await frames.send(replicator.want(theirs))
                while True:
                    batch = await frames.receive(Batch)
                    if isinstance(batch, ErrorReply):
                        raise Refusal(batch.reason, batch.detail)
                    if not batch.entries:
                        return added, theirs.mark
                    try:
                        report = replicator.accept(batch)
                    except EntryRefused as refused:
                        if refused.author is None:  # an entry no key signed: the peer serving it forged it
                            self.blame(peer.extract_public_key().to_bytes(), refused.rule.reason)
                        raise RemoteProtocolError(refused.rule.reason, str(refused)) from None
                    added += report.added
                    for lie in report.refused:
                        self.blame(lie.author, lie.rule.reason)  # type: ignore[arg-type]
            finally:
                await close_quietly(stream)

    async def push(self, host: IHost, peer: ID, author: bytes, timeout: float = 10.0) -> bool:
        """Make sure `peer` holds all of `author`'s feed that we hold (a short-lived node
        leaving): each pull shows the peer our sizes, and it pulls back what it lacks."""
        with trio.move_on_after(timeout):
            while True:
                await self._pull_logged(host, peer, whole=True)
                if self.remote_sizes.get(peer, {}).get(author, 0) >= self.store.sizes().get(author, 0):
                    return True
                await trio.sleep(0.2)
        return False

    def nudge(self, peer: ID) -> None:
        """Ask for a pull from `peer` soon (it announced a head ahead of ours)."""
        try:
            self._news.send_nowait(peer)
        except trio.WouldBlock:
            log.info("sync nudges are queued up; anti-entropy will catch up")

    async def _pull_logged(self, host: IHost, peer: ID, whole: bool = False) -> None:
        try:
            await self.pull(host, peer, whole)
        except Exception as error:  # noqa: BLE001 - one peer's failure must not stop syncing with the rest
            log.info("sync with %s failed: %s", peer, error)

    async def anti_entropy(self, host: IHost, interval: float) -> None:
        """Pull from every connected peer every `interval` seconds, and from a nudging
        peer at once, forever."""
        while True:
            for peer in list(host.get_connected_peers()):
                if _may_speak_sync(host, peer):
                    await self._pull_logged(host, peer)
            with trio.move_on_after(interval):
                while True:
                    await self._pull_logged(host, await self._news_out.receive())


def _remember(memory: dict[ID, Any], peer: ID, value: Any) -> None:
    """Keep `value` for `peer` in a per-peer memory of at most `MAX_PEERS_REMEMBERED`,
    forgetting the longest unheard first."""
    memory.pop(peer, None)
    memory[peer] = value
    while len(memory) > MAX_PEERS_REMEMBERED:
        del memory[next(iter(memory))]


def _may_speak_sync(host: IHost, peer: ID) -> bool:
    """False for a peer whose identify lists its protocols without ours (a plain libp2p
    client, say: pulling from it would fail every round); True until identify has told."""
    try:
        protocols = host.get_peerstore().get_protocols(peer)
    except PeerStoreError:
        return True
    return not protocols or SYNC_PROTOCOL in protocols
