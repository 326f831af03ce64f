"""A running node's upkeep: staying joined, fresh ads, re-announcing, hanging up on exit.

Theory of operation: `Node.running` runs these beside its protocols. `stay_joined`
reconnects to the peers joined through whenever their link is gone (anti-entropy pulls
only from connected peers); `keep_ads_fresh` re-signs every ad well before it expires,
so a host left running for months stays bookable and one woken after a long sleep (a
jumped clock) renews at once; `reannounce` refreshes the routing table and re-provides
the node's cells soon after it joins, then every `REANNOUNCE_INTERVAL`, and at once when
`Node.announced` is set; `hang_up` takes every link down before gossip stops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import multiaddr
import trio
from libp2p.kad_dht.kad_dht import DHTMode
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from ._ads import provide
from ._host import cell_key, peer_of_address, relay_key

if TYPE_CHECKING:
    from ._node import Node

REANNOUNCE_INTERVAL = 600.0
JOIN_REFRESHES = (2.0, 6.0, 20.0, 60.0)  # seconds between the first refreshes after start
REFRESH_TIMEOUT = 10.0
REJOIN_INTERVAL = 5.0
HANG_UP_TIMEOUT = 2.0
AD_RENEW_CHECK = 3600.0  # clock seconds between looks for ads due for re-signing
log = logging.getLogger(__name__)


async def hang_up(node: Node) -> None:
    """Take every link down before gossip stops: a head announcement arriving while
    py-libp2p's pubsub shuts down kills the connection's task with "Nursery is closed
    to new arrivals", and with it the node's exit."""
    swarm = node.host.get_network()
    for everyone in ("0.0.0.0/0", "::/0"):  # no new link, in or out (py-libp2p's connection gate)...
        swarm.connection_gate.add_to_deny_list(everyone)
    with trio.move_on_after(HANG_UP_TIMEOUT):
        async with trio.open_nursery() as nursery:  # ...and every link there is goes down
            for peer in list(swarm.connections):
                nursery.start_soon(_close_link, node, peer)


async def _close_link(node: Node, peer: ID) -> None:
    try:
        await node.host.get_network().close_peer(peer)
    except Exception as error:  # noqa: BLE001 - leaving anyway; close_peer logs its own failures
        log.debug("closing the link to %s: %r", peer, error)


async def stay_joined(node: Node) -> None:
    """Reconnect to the peers joined through (a restarted co-op node, say) whenever
    the link is gone, back into the routing table too: anti-entropy pulls only from
    connected peers, and lookups start from the table."""
    while True:
        await trio.sleep(REJOIN_INTERVAL)
        connected = set(node.host.get_connected_peers())
        for joined in node.store.peers():
            peer = peer_of_address(joined)
            if peer not in connected and peer != node.host.get_id():
                with trio.move_on_after(REFRESH_TIMEOUT):
                    node.host.get_network().unblock_peer(peer)  # not 60 s of py-libp2p's negative cache
                    try:
                        await node.host.connect(info_from_p2p_addr(multiaddr.Multiaddr(joined)))
                    except Exception as error:  # noqa: BLE001 - still down: try again next round
                        log.info("peer %s still unreachable: %s", peer, error)
                        continue
                    await node.dht.add_peer(peer)  # forgotten while it was down (`_liveness`)
                if node.sync is not None:
                    node.sync.nudge(peer)


async def keep_ads_fresh(node: Node) -> None:
    """Re-sign every ad well before it expires (`AdBoard.renewals`), then re-announce:
    a host left running for months stays bookable, and one woken after a long sleep
    (a jumped clock) renews at once."""
    while True:
        look = node.clock() + AD_RENEW_CHECK  # an ad published meanwhile may fall due sooner
        due = node.board.next_renewal()
        await node.clock.sleep_until(look if due is None else min(due, look))
        for ad in node.board.renewals(int(node.clock())):
            signed = node.announce(ad)
            log.info("ad renewed charger=%s seq=%d expires=%d", ad.charger_id, ad.seq, signed.message.expires)


async def match_dht_mode(node: Node) -> None:
    """A DHT server where peers can dial the node, a client behind NAT: a server peers
    cannot reach slows their lookups (LIBP2P-NOTES)."""
    mode = DHTMode.SERVER if node.reachability.reachable else DHTMode.CLIENT
    if node.dht.mode is not mode:
        await node.dht.switch_mode(mode)


async def reannounce(node: Node) -> None:
    """Refresh the routing table and re-provide our cells: soon after joining (the
    network around a newcomer is still filling in), then every REANNOUNCE_INTERVAL,
    and at once when an ad changes."""
    delays = iter(JOIN_REFRESHES)
    while True:
        with trio.move_on_after(next(delays, REANNOUNCE_INTERVAL)):
            await node.announced.wait()
        node.announced = trio.Event()
        await match_dht_mode(node)  # a dial-back found us reachable, or a port forward went
        if node.host.get_connected_peers():
            with trio.move_on_after(REFRESH_TIMEOUT):
                await node.dht.refresh_routing_table()
        keys = [cell_key(cell) for cell in sorted(node.board.cells)]
        if node.reachability.serves_relay:
            keys.append(relay_key())  # members behind NAT find relays by it
        await provide(node.dht, keys)
