"""Charger ads on the network: served over `/wattshare/ad/1.0.0`, found through the DHT.

Theory of operation (DESIGN.md, "Charger advertisement and search"):

- `AdBoard` holds a host's own signed ads; its stream handler answers one `AdRequest`
  with an `AdList`, under a deadline, and refuses anything else with a reason code.
- A running host re-signs each ad (next seq, a fresh `AD_LIFETIME`) once it is within
  `AD_RENEW_AHEAD` of expiry (`AdBoard.renewals`), so a daemon left on for a year stays
  bookable; the tariff, terms and zone stay as they were, so bookings asked against
  the previous seq still stand (see `_bookings`).
- A host provides the DHT key of each geohash-5 cell its chargers are in (`cell_key`),
  again whenever an ad changes and periodically, so late joiners and restarted DHT
  nodes keep finding it.
- A search covers the query's circle with cells (four lookups at a time: a burst gets
  streams reset) and collects providers of every cell by merging the local provider
  store with its own bounded Kademlia lookup: ask the DIRECT_ASKS known peers nearest
  the key at once, then, for at most LOOKUP_ROUNDS rounds, the closer peers they name
  that are nearer than any asked so far; a peer that does not answer the dial is
  forgotten (`_liveness`), not asked. (py-libp2p 0.8.1's `find_providers` answers
  from the local store alone once it holds any record, which can be a subset, and its
  walk queries every peer it hears of until its deadline: too slow for a search.)
  It then fetches each provider's ads concurrently under one deadline, and hands
  (serving peer's key, ad) pairs to `protocol.search`, which drops ads not signed by
  the peer that served them, expired or superseded ones.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.kad_dht.utils import xor_distance
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from wattshare.protocol import (
    AdList,
    AdRequest,
    ChargerAd,
    ErrorReply,
    Identity,
    InvalidValue,
    Query,
    Reason,
    RemoteProtocolError,
    Result,
    Signed,
    forged,
    geo,
    search,
    sign,
)

from ._conduct import at_fault
from ._framing import FrameStream, ask, serve
from ._host import CELL_PRECISION, cell_key, cell_of
from ._liveness import reachable

AD_PROTOCOL = TProtocol("/wattshare/ad/1.0.0")
HANDLER_TIMEOUT = 10.0
FETCH_TIMEOUT = 3.0
QUERY_TIMEOUT = 2.0
ASK_TIMEOUT = 2.0
DIRECT_ASKS = 12  # peers asked at once per cell and lookup round
LOOKUP_ROUNDS = 3
CELL_LOOKUPS = 4  # cells looked up at once
AD_LIFETIME = 6 * 24 * 3600  # clock seconds an ad is signed for (the protocol's most is a week)
AD_RENEW_AHEAD = 2 * 24 * 3600  # a running host re-signs an ad this long before it expires
log = logging.getLogger(__name__)


class AdBoard:
    """A host's own ads (see the module doc)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.ads: dict[str, Signed[ChargerAd]] = {}

    def publish(self, ad: ChargerAd) -> Signed[ChargerAd]:
        """Sign and hold `ad`; its seq must be above the one it replaces."""
        current = self.ads.get(ad.charger_id)
        if current is not None and ad.seq <= current.message.seq:
            raise InvalidValue(f"ad seq {ad.seq} does not replace seq {current.message.seq}")
        signed = sign(self.identity, ad)
        self.ads[ad.charger_id] = signed
        return signed

    def renewals(self, now: int) -> list[ChargerAd]:
        """The ads due for re-signing at `now`, as their renewed versions (see the module doc)."""
        return [signed.message.replace(seq=signed.message.seq + 1, expires=now + AD_LIFETIME)
                for signed in self.ads.values() if signed.message.expires - now <= AD_RENEW_AHEAD]

    def next_renewal(self) -> int | None:
        """When the first ad falls due for re-signing (clock seconds), if any ad is held."""
        return min((signed.message.expires - AD_RENEW_AHEAD for signed in self.ads.values()), default=None)

    @property
    def cells(self) -> set[str]:
        return {cell_of(signed.message.geohash) for signed in self.ads.values()}

    async def handle(self, stream: INetStream) -> RemoteProtocolError | None:
        return await serve(stream, self._answer, HANDLER_TIMEOUT)

    async def _answer(self, frames: FrameStream) -> None:
        request = await frames.receive(AdRequest)
        if not isinstance(request, ErrorReply):
            await frames.send(AdList(ads=tuple(self.ads.values())))


async def provide(dht: KadDHT, keys: list[str]) -> None:
    """Announce this node as a provider of each DHT key (cells' keys, the relays' key)."""
    for key in keys:
        with trio.move_on_after(QUERY_TIMEOUT):
            await dht.provide(key)


async def providers(dht: KadDHT, host: IHost, dht_key: str) -> dict[ID, PeerInfo]:
    """Every provider of `dht_key` (a cell's, say) this node can learn of (see the module doc)."""
    key = bytes.fromhex(dht_key)
    found = {p.peer_id: p for p in dht.provider_store.get_providers(key)}
    asked: set[ID] = {host.get_id()}
    closer: set[ID] = set()

    async def ask(peer: ID) -> None:
        if not await reachable(host, dht, peer, ASK_TIMEOUT):
            return  # it left: forgotten, never asked again
        with trio.move_on_after(ASK_TIMEOUT):
            answer, peers = await dht.provider_store._get_providers_from_peer_with_closers(peer, key)
            for info in answer:
                found.setdefault(info.peer_id, info)
            closer.update(peers)

    target = hashlib.sha256(key).digest()

    def distance(peer: ID) -> int:  # Kademlia's, as py-libp2p measures it
        return xor_distance(target, hashlib.sha256(peer.to_bytes()).digest())

    candidates = set(dht.routing_table.get_peer_ids()) | set(host.get_connected_peers())
    for _ in range(LOOKUP_ROUNDS):
        batch = sorted(candidates - asked, key=distance)[:DIRECT_ASKS]
        if not batch:
            break
        async with trio.open_nursery() as nursery:
            for peer in batch:
                nursery.start_soon(ask, peer)
        asked.update(batch)
        bound = max(sorted(map(distance, asked - {host.get_id()}))[:DIRECT_ASKS])
        candidates = {peer for peer in closer - asked if distance(peer) < bound}  # nearer than the nearest asked
    return found


async def fetch_ads(host: IHost, peer: PeerInfo) -> list[Signed[ChargerAd]]:
    """A host's signed ads, asked over `/wattshare/ad/1.0.0`; raises on refusal or fault."""
    if peer.addrs:
        host.get_peerstore().add_addrs(peer.peer_id, peer.addrs, 600)
    reply = await ask(host, peer.peer_id, AD_PROTOCOL, AdRequest(), AdList, FETCH_TIMEOUT)
    return list(reply.ads)


async def find_chargers(host: IHost, dht: KadDHT, query: Query, now: int,
                        timeout: float = FETCH_TIMEOUT,
                        blame: Callable[[bytes, Reason], None] = lambda peer, reason: None) -> list[Result]:
    """Search the network for chargers answering `query`, best first; a peer serving an
    ad it did not sign as its host (another host's, or one naming another host), or a
    broken list, is `blame`d, and what it served dropped."""
    lat, lon = query.point
    cells = geo.covering_cells(lat, lon, query.radius_m, CELL_PRECISION)
    peers: dict[ID, PeerInfo] = {}

    limiter = trio.CapacityLimiter(CELL_LOOKUPS)  # a burst of lookups gets streams reset (LIBP2P-NOTES)

    async def collect(cell: str) -> None:
        async with limiter:
            peers.update(await providers(dht, host, cell_key(cell)))

    async with trio.open_nursery() as nursery:
        for cell in cells:
            nursery.start_soon(collect, cell)
    served: list[tuple[bytes, Signed[ChargerAd]]] = []

    async def fetch(peer: PeerInfo) -> None:
        key = peer.peer_id.extract_public_key().to_bytes()
        try:
            ads = await fetch_ads(host, peer)
        except Exception as error:  # noqa: BLE001 - one host's refusal, reset or dial error must not fail the search
            log.info("no ads from %s: %s", peer.peer_id, error)
            if at_fault(error):
                blame(key, error.reason)  # type: ignore[attr-defined] # it served a forged or broken list
            return
        if any(forged(key, ad) for ad in ads):
            blame(key, Reason.WRONG_SIGNER)
        served.extend((key, ad) for ad in ads)

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            for peer in peers.values():
                if peer.peer_id != host.get_id():
                    nursery.start_soon(fetch, peer)
    return search(query, served, now)

