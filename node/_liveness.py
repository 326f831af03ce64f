"""Peers that left are forgotten, not handed out as "closer" peers (issue 18).

Theory of operation: py-libp2p 0.8.1 checks a routing-table peer only after an hour of
silence, five peers every five minutes, and adds every closer peer a lookup hears of
without dialling it. So a node that has seen many short-lived peers (a js-libp2p client
per search, say) keeps naming departed ones in its FIND_NODE and GET_PROVIDERS answers,
its neighbours add them back from those answers, and every lookup through them waits
on failed dials.

- `reachable` dials a peer (a live link is reused); a peer that does not answer is
  `forget`-ten: dropped from the DHT routing table, so this node neither asks it nor
  names it to others, and its addresses from the peerstore, where py-libp2p's lookups
  look for more peers when the table is small. The provider lookup (`_ads`) asks only
  the peers it reached.
- `forget_departed` dials, every CHECK_INTERVAL, each routing-table peer this node has
  no link to: one that left (its link went down, or a neighbour named it again) fails
  and is forgotten; one that answers keeps the new link, so it is not dialled again
  while that lasts.
"""

from __future__ import annotations

import logging

import trio
from libp2p.abc import IHost
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.id import ID

CHECK_INTERVAL = 5.0
DIAL_TIMEOUT = 3.0
CHECKS_AT_ONCE = 4
log = logging.getLogger(__name__)


def forget(host: IHost, dht: KadDHT, peer: ID) -> None:
    """Stop asking `peer` and naming it to others (see the module doc)."""
    dht.routing_table.remove_peer(peer)
    host.get_peerstore().clear_addrs(peer)


async def reachable(host: IHost, dht: KadDHT, peer: ID, timeout: float = DIAL_TIMEOUT) -> bool:
    """Does `peer` answer a dial within `timeout`? It is forgotten if not."""
    with trio.move_on_after(timeout):
        try:
            await host.get_network().dial_peer(peer)
            return True
        except Exception as error:  # noqa: BLE001 - a peer that left, or never listened: the world's doing
            log.debug("forgetting %s: %s", peer, error)
    forget(host, dht, peer)
    return False


async def forget_departed(host: IHost, dht: KadDHT) -> None:
    """Forget the routing-table peers that have left (see the module doc), until cancelled."""
    limiter = trio.CapacityLimiter(CHECKS_AT_ONCE)

    async def check(peer: ID) -> None:
        async with limiter:
            await reachable(host, dht, peer)

    while True:
        await trio.sleep(CHECK_INTERVAL)
        unlinked = set(dht.routing_table.get_peer_ids()) - set(host.get_connected_peers())
        async with trio.open_nursery() as nursery:
            for peer in unlinked:
                nursery.start_soon(check, peer)
