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
a megabyte and a thousand signature checks. Each batch is ingested atomically as it
arrives; a broken stream loses at most the batch in flight, and the next pull resumes
from the new sizes. An entry its author provably signed but the ledger refuses is kept
as evidence and its author `blame`d; a batch with an entry nobody signed refuses the
batch and blames the peer serving it. A server that
sees in the puller's `Have` entries it lacks pulls them back soon after, which is how a
short-lived wallet `push`es its new entries before it leaves. Nothing depends on gossip
arriving: every node pulls from every peer it is connected to every `SYNC_INTERVAL`
(but those whose identify says they do not speak this protocol), which is what makes
replicas converge after partitions, restarts and dropped announcements; a head
announcement (`_gossip`) only `nudge`s an earlier pull.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
        self.their_only: dict[ID, tuple[bytes, ...] | None] = {}  # the feeds each peer asked to hear of, last it pulled

    def _heard(self, peer: ID, theirs: Have) -> None:
        """Keep the feeds a puller asked to hear of: what this node's own pulls from it tell of."""
        self.their_only.pop(peer, None)
        self.their_only[peer] = theirs.only if theirs.only is None or len(theirs.only) <= MAX_WISH_REMEMBERED else None
        while len(self.their_only) > MAX_PEERS_REMEMBERED:
            del self.their_only[next(iter(self.their_only))]  # the longest unheard

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
        await frames.send(replicator.have(theirs.only))
        want = await frames.receive(Want)
        if isinstance(want, ErrorReply):
            return
        for batch in replicator.serve(want):
            await frames.send(batch)
        await frames.send(Batch(entries=()))

    async def pull(self, host: IHost, peer: ID) -> int:
        """Fetch what `peer` holds and we want; returns the entries added. A pull that
        brings a charter admitting feeds it skipped asks again (`Replicator.deferred`)."""
        replicator = Replicator(self.store, self.interest)
        added = await self._pull_once(host, peer, replicator)
        while replicator.newly_admitted():
            added += await self._pull_once(host, peer, replicator)
        return added

    async def catch_up(self, host: IHost, peer: ID, timeout: float) -> None:
        """Pull from `peer` now, giving up quietly after `timeout` seconds (a host checking
        a driver's credit holds before it answers)."""
        with trio.move_on_after(timeout):
            await self._pull_logged(host, peer)

    async def _pull_once(self, host: IHost, peer: ID, replicator: Replicator) -> int:
        added = 0
        with trio.fail_after(SYNC_TIMEOUT):
            stream = await host.new_stream(peer, [SYNC_PROTOCOL])
            try:
                frames = FrameStream(stream, max_size=SYNC_FRAME, timeout=SYNC_TIMEOUT)
                await frames.send(replicator.have(self.their_only.get(peer)))  # all, if it never pulled
                theirs = await frames.receive(Have)
                if isinstance(theirs, ErrorReply):
                    raise Refusal(theirs.reason, theirs.detail)
                self.remote_sizes[peer] = {f.author: f.size for f in theirs.sizes}
                await frames.send(replicator.want(theirs))
                while True:
                    batch = await frames.receive(Batch)
                    if isinstance(batch, ErrorReply):
                        raise Refusal(batch.reason, batch.detail)
                    if not batch.entries:
                        return added
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
                await self._pull_logged(host, peer)
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

    async def _pull_logged(self, host: IHost, peer: ID) -> None:
        try:
            await self.pull(host, peer)
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


def _may_speak_sync(host: IHost, peer: ID) -> bool:
    """False for a peer whose identify lists its protocols without ours (a plain libp2p
    client, say: pulling from it would fail every round); True until identify has told."""
    try:
        protocols = host.get_peerstore().get_protocols(peer)
    except PeerStoreError:
        return True
    return not protocols or SYNC_PROTOCOL in protocols
