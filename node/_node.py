"""The node: one participant's libp2p host, DHT and protocol services, run under trio.

Theory of operation: `Node` wires the pieces together and owns their lifetimes; the
pieces themselves (`_host`, `_ads`, `_bookings`, `_sync`, `_gossip`, `_admin`,
`_framing`, `_store`, `_sessions`, `_charge`, `_conduct`, `_reach`, `_liveness`, `_asking`)
know nothing of each other. A node is started with `async with node.running():` and stopped by leaving
the block. While it runs it serves its protocols and, through `_upkeep`, re-signs its
ads well before they expire; refreshes its routing table and re-provides its ads' cells a few times soon after it
starts, then every `REANNOUNCE_INTERVAL` (and at once after `publish` or `join`); serves
every protocol behind one door (`_conduct`: per-peer stream and misconduct limits, and
the record of who misbehaved); reconnects to the peers it joined through whenever their
link is gone; forgets the routing-table peers that have left (`_liveness`); if it
keeps a ledger, pulls entries from its connected peers every
`sync_interval` (sooner when a gossiped head says a peer is ahead; a light member, `full`
false, only the feeds it needs) and answers for members' accounts (`_accounts`); and with an `admin`
path, answers the local `wattshare` command on that Unix socket; with an `ocpp` endpoint
(a host: where its wallboxes connect and their passwords), runs the OCPP central system
its wallbox connects to and the charging sessions (`_sessions`). Its own ads, the
bookings and sessions it takes part in and the peers it joined through live in its
`NodeStore`, so a restarted node reloads them, resumes, rejoins and re-announces.
Through `_reach` it tells only addresses that work in its network, holds relay slots
behind NAT, dials circuit addresses, lets DCUtR make relayed links direct, and (a co-op
node, or a member that opts in) relays for members; a driver's session outlives a lost
link (`_following`). Booking and session time is the node's `Clock`, network deadlines
are real seconds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError

from wattshare.ledger import Interest, LedgerStore, keep_light
from wattshare.protocol import (
    AccessInfo,
    Booking,
    BookingRequest,
    ChargerAd,
    Dispute,
    Identity,
    Query,
    Reason,
    Result,
    Signed,
    open_access,
)

from . import _asking
from ._accounts import ACCOUNT_PROTOCOL, AccountDesk
from ._admin import serve_admin
from ._ads import AD_PROTOCOL, AdBoard, find_chargers, provide, providers
from ._bookings import BOOKING_PROTOCOL, Approval, BookingDesk
from ._central import OcppEndpoint
from ._charge import Charging
from ._claims import catch_up, dispute
from ._clock import Clock
from ._conduct import Conduct
from ._dialback import DIAL_BACK_PROTOCOL, answer_dial_back
from ._following import RESUME_WINDOW, follow
from ._framing import causes
from ._gossip import HEADS_TOPIC, HeadGossip
from ._host import (
    DEFAULT_LISTEN,
    address,
    cell_key,
    cell_of,
    join,
    make_dht,
    make_host,
    peer_of,
    peer_of_address,
    quiet_libp2p,
    relay_key,
    running,
)
from ._liveness import forget_departed
from ._reach import Reach
from ._sessions import SESSION_PROTOCOL, SessionDesk
from ._store import NodeStore
from ._sync import SYNC_PROTOCOL, LedgerSync
from ._upkeep import hang_up, keep_ads_fresh, match_dht_mode, reannounce, stay_joined

REACH_TIMEOUT = 5.0
HOLD_FETCH_TIMEOUT = 5.0  # a host's pull of a driver's feed before it answers a request
PUSH_TIMEOUT = 10.0  # a leaving wallet's wait for its co-op to take its new entries
SYNC_INTERVAL = 30.0
log = logging.getLogger(__name__)


class Node:
    """One participant on the network (see the module doc)."""

    def __init__(self, identity: Identity, *, listen: str = DEFAULT_LISTEN, state: Path | None = None,
                 access: AccessInfo | None = None, approval: Approval = Approval.AUTO,
                 ledger: LedgerStore | None = None, approval_timeout: float = 300.0,
                 sync_interval: float = SYNC_INTERVAL, admin: Path | None = None, gossip: bool = True,
                 ocpp: OcppEndpoint | None = None, clock: Clock | None = None,
                 admin_commands: dict[str, Callable[[dict], Any]] | None = None,
                 conduct: Conduct | None = None, announce: Sequence[str] = (), relay: bool = False,
                 full: bool = True) -> None:
        quiet_libp2p()
        self.identity = identity
        self.clock = clock or Clock()
        self.listen = listen
        self.host = make_host(identity, listen)
        self.dht = make_dht(self.host)
        self.reachability = Reach(self.host, announce=announce, relay_for=self._admitted if relay else None,
                                  changed=lambda: self.announced.set(),  # records carry our addresses
                                  discover=lambda: providers(self.dht, self.host, relay_key()))
        self.store = NodeStore(state, self.clock)
        self.ledger = ledger
        if ledger is not None:
            ledger.clock = self.clock  # one clock per node: the ledger dates what it detects by it
        self.board = AdBoard(identity)
        for ad in self.store.ads():
            self.board.ads[ad.message.charger_id] = ad
        self.conduct = conduct or Conduct()  # a test may pass one on a clock of its own
        self.host.set_stream_handler(AD_PROTOCOL, self.conduct.guard(AD_PROTOCOL, self.board.handle))
        self.host.set_stream_handler(DIAL_BACK_PROTOCOL, self.conduct.guard(DIAL_BACK_PROTOCOL, answer_dial_back))
        self.sync: LedgerSync | None = None
        self.gossip: HeadGossip | None = None
        self.full = full or ledger is None  # a light member's ledger holds the feeds it needs (`ledger._light`)
        if ledger is not None:
            keep_light(ledger, not full)
            self.sync = LedgerSync(ledger, None if full else Interest(ledger, identity.public_key),
                                   blame=lambda who, reason: self.conduct.note(who, SYNC_PROTOCOL, reason))
            self.host.set_stream_handler(SYNC_PROTOCOL, self.conduct.guard(SYNC_PROTOCOL, self.sync.handle))
            self.accounts = AccountDesk(ledger, blame=lambda who, reason: self.conduct.note(who, ACCOUNT_PROTOCOL, reason))
            self.host.set_stream_handler(ACCOUNT_PROTOCOL, self.conduct.guard(ACCOUNT_PROTOCOL, self.accounts.handle))
            if gossip:
                self.gossip = HeadGossip(self.host, identity.public_key, ledger, self.sync.nudge,
                                         blame=lambda who, reason: self.conduct.note(who, HEADS_TOPIC, reason))
        self.desk: BookingDesk | None = None
        if access is not None:
            self.desk = BookingDesk(identity, self.board, self.store, access, approval, ledger, approval_timeout,
                                    self.clock, fetch_feed=self._fetch_feed, light=not self.full,
                                    fetch_proof=self._fetch_proof)
            self.host.set_stream_handler(BOOKING_PROTOCOL, self.conduct.guard(BOOKING_PROTOCOL, self.desk.handle))
        self.sessions: SessionDesk | None = None
        if access is not None and ocpp is not None:
            self.sessions = SessionDesk(identity, self.store, self.clock, ledger, ocpp, self.host.get_network())
            self.desk.on_confirmed, self.desk.on_closed = self.sessions.arrivals.expect, self.sessions.arrivals.forget  # type: ignore[union-attr]
            self.host.set_stream_handler(SESSION_PROTOCOL, self.conduct.guard(SESSION_PROTOCOL, self.sessions.handle))
        self.sync_interval = sync_interval
        self.admin = admin
        self.admin_commands = admin_commands or {}
        self.announced = trio.Event()  # set to re-provide our cells now (`_upkeep.reannounce`)

    @property
    def address(self) -> str:
        return address(self.host)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Node]:
        """Run the node for the block. An error from inside comes out as itself, not
        nested ten exception groups deep in py-libp2p's nurseries (past what Python
        prints): a group is unwrapped to its one cause when it has one."""
        try:
            async with self._running():
                yield self
        except BaseExceptionGroup as group:
            if len(found := causes(group)) != 1:
                raise
            raise found[0] from group

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Node]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(running(self.host, self.dht, self.listen))
            if self.gossip is not None:
                await stack.enter_async_context(self.gossip.running())
                stack.push_async_callback(hang_up, self)  # runs before gossip stops
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(self.reachability.run)
            for upkeep in (reannounce, keep_ads_fresh, stay_joined):
                nursery.start_soon(upkeep, self)
            nursery.start_soon(forget_departed, self.host, self.dht)
            if self.sync is not None:
                nursery.start_soon(self.sync.anti_entropy, self.host, self.sync_interval)
            if self.sessions is not None:
                await nursery.start(self.sessions.run)
            if self.admin is not None:
                await nursery.start(serve_admin, self, self.admin, self.admin_commands)
            yield self
            nursery.cancel_scope.cancel()

    async def join(self, bootstrap: list[str], limiter: trio.CapacityLimiter | None = None) -> int:
        """Join through `bootstrap` peers (full /p2p/ addresses); they are remembered, and
        reconnected to whenever their link is gone; returns how many answered now."""
        self.reachability.join(bootstrap)
        await match_dht_mode(self)
        joined = await join(self.host, self.dht, bootstrap, limiter)
        self.store.remember_peers(bootstrap)  # kept even if down now: `_stay_joined` retries them
        if joined:
            if self.sync is not None:  # catch up with the ledger now, not at the next anti-entropy round
                for address in bootstrap:
                    self.sync.nudge(peer_of_address(address))
        self.announced.set()
        return joined

    def _admitted(self, peer: ID) -> bool:
        """Is `peer` an admitted member of this node's co-op (who may reserve on its relay)?"""
        return self.ledger is not None and self.ledger.state.is_member(peer.extract_public_key().to_bytes())

    async def rejoin(self) -> int:
        """Join through the peers remembered from earlier runs."""
        return await self.join(self.store.peers())

    async def publish(self, ad: ChargerAd) -> Signed[ChargerAd]:
        """Sign, keep and advertise `ad` (its seq must be above the one it replaces)."""
        signed = self.announce(ad)
        await provide(self.dht, [cell_key(cell_of(ad.geohash))])
        return signed

    def announce(self, ad: ChargerAd) -> Signed[ChargerAd]:
        """`publish`, with the DHT announcement left to the background re-announcer."""
        signed = self.board.publish(ad)
        self.store.save_ad(signed)
        self.announced.set()
        return signed

    def balance(self) -> dict[str, Any]:
        """This participant's balances (minor units, per currency) and credit limit, from its ledger."""
        assert self.ledger is not None, "a node without a ledger has no balance"
        me = self.identity.public_key
        charter = self.ledger.state.charter
        return {"member": self.identity.peer_id,
                "balances": {c: b for (m, c), b in self.ledger.state.balances.items() if m == me},
                "credit_limit": self.ledger.state.credit_limit(me), "currency": charter[1].currency if charter else None}

    async def search(self, query: Query, now: int | None = None) -> list[Result]:
        return await find_chargers(self.host, self.dht, query, int(self.clock()) if now is None else now,
                                   blame=lambda peer, reason: self.conduct.note(peer, AD_PROTOCOL, reason))

    async def book(self, ad: ChargerAd, start: int, end: int, spend_cap: int) -> Booking:
        """Book `ad`'s charger for [start, end) (`_asking.book`); raises BookingRejected."""
        return await _asking.book(self, ad, start, end, spend_cap)

    async def ask_again(self, request: Signed[BookingRequest]) -> Booking:
        """Send a booking request again and keep its answer (`_asking.ask_again`)."""
        return await _asking.ask_again(self, request)

    async def ask_again_pending(self) -> list[bytes]:
        """Ask again for this driver's pending bookings (`_asking.ask_again_pending`)."""
        return await _asking.ask_again_pending(self)

    def catch_up_bookings(self) -> list[bytes]:
        """This driver's bookings brought up to date with its hosts' claims (`_claims.catch_up`)."""
        assert self.ledger is not None, "a node without a ledger sees no claims"
        return catch_up(self.identity.public_key, self.store, self.ledger)

    async def _fetch_feed(self, key: bytes) -> None:
        """Bring this ledger up to date with a driver's node (its credit holds) before
        the booking desk decides on its request."""
        if self.sync is not None:
            await self.sync.catch_up(self.host, peer_of(key), HOLD_FETCH_TIMEOUT)

    async def _fetch_proof(self, key: bytes) -> bool:
        """Fetch the newest proof of a member's account from the peers this node joined
        through (its co-op's nodes) before a light host decides on its request."""
        peers = [peer_of_address(address) for address in self.store.peers()]
        return await self.accounts.fetch(self.host, peers, key)

    def access(self, booking: Booking) -> AccessInfo:
        """The address, code and instructions of a booking this node made (opened with its key)."""
        sealed = self.store.access(booking.id)
        if sealed is None:
            raise KeyError("this node did not make that booking")
        return open_access(self.identity, sealed)

    def dispute(self, booking: Booking, reason: Reason, detail: str = "") -> Dispute:
        """Dispute what the host claimed for one of this driver's bookings (`_claims.dispute`)."""
        assert self.ledger is not None, "a node without a ledger cannot dispute"
        return dispute(self.identity, self.store, self.ledger, int(self.clock()), booking, reason, detail)

    async def cancel(self, booking: Booking, detail: str = "") -> int:
        """Cancel a confirmed booking at its host (`_asking.cancel`); returns the fee the host claims."""
        return await _asking.cancel(self, booking, detail)

    async def reach(self, key: bytes) -> ID:
        """The peer id of a participant, with its addresses looked up on the DHT if this
        node knows none (a new wallet process that has only joined the co-op, say)."""
        peer = peer_of(key)
        try:
            known = bool(self.host.get_peerstore().addrs(peer))
        except PeerStoreError:
            known = False
        if not known and peer not in self.host.get_connected_peers():
            with trio.move_on_after(REACH_TIMEOUT):
                info = await self.dht.find_peer(peer)
                if info is not None and info.addrs:
                    self.host.get_peerstore().add_addrs(peer, info.addrs, 600)
        return peer

    async def push_feed(self, to: bytes) -> bool:
        """Make sure the participant `to` (a wallet's co-op, say) holds all of this node's
        own feed before it leaves; False if that could not be done (no ledger, `to` not
        reachable, or it did not pull in time): the next sync will bring it."""
        if self.sync is None:
            return False
        with trio.move_on_after(PUSH_TIMEOUT):
            return await self.sync.push(self.host, await self.reach(to), self.identity.public_key, PUSH_TIMEOUT)
        return False

    async def charge(self, booking: Booking, *, stop: trio.Event | None = None,
                     on_update: Callable[[Charging], None] | None = None, timeout: float = 3600.0,
                     attach: bool = False, resume: float = RESUME_WINDOW) -> Charging:
        """Start (or re-attach to) a booked session and follow it to its settlement
        (`_following.follow`); `attach`: only re-attach (a driver watching never starts one)."""
        return await follow(self, booking, stop=stop, on_update=on_update, timeout=timeout, attach=attach,
                            resume=resume)
