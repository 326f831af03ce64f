"""Reaching and being reached from behind NAT: announced addresses, relays, hole punching.

Theory of operation (DESIGN.md, "Reachability"; LIBP2P-NOTES.md, "NAT traversal"):

- What a node tells peers (identify, DHT provider records) is `addresses()`: its own
  addresses that work in its network (`_addresses.tellable`: no loopback or LAN address
  goes to the internet), either those it was told (`--announce`) or its listen addresses
  and those a peer dialled it back at (`_dialback`: a port forward), plus one circuit
  address per relay it holds a reservation on. It replaces the host's
  `get_addrs`, whose own version mangles circuit addresses (LIBP2P-NOTES).
- A node with no such address is behind NAT: `keep_reserved` holds a reservation on
  every relay it knows (the peers it joined through, and up to MAX_RELAYS in all with
  those that provide `relay_key` on the DHT), renews it every RELAY_PROBE seconds (or at
  half its lifetime, if sooner), and makes a new one at once when the relay's link went
  down (a relay restart forgets reservations). The renewal is also the link's liveness
  probe: a link to a relay that restarted can look alive for minutes, so a renewal that
  fails closes it and the next round dials afresh.
- py-libp2p's swarm cannot dial circuit addresses, so every stream a node opens goes
  through `new_stream`, which first connects to a peer it has no link to: directly where
  it knows a direct address, else through each circuit address in turn.
- A relayed link is upgraded to a direct one by DCUtR (TCP: hole punching needs the
  listen port as source, which QUIC in py-libp2p 0.8.1 cannot do). Where the NATs do not
  allow it (symmetric NAT) the link stays relayed. Streams do not move to the new link:
  the relayed one closes (at once or after DCUtR's 60 s grace) and what ran on it is
  resumed by its caller, which every long conversation here can do (a session re-attaches,
  a booking request is answered again with its first answer, sync is idempotent).
- A node that serves a relay (a co-op node; a member with a public address that opts
  in) gives reservations to its co-op's admitted members only, with limits that fit a
  charging night (`RELAY_LIMITS`). Anyone may open a circuit to a member who holds one:
  that member's node applies its own limits to what comes through.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.relay.circuit_v2 import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2 import CircuitV2Protocol, CircuitV2Transport, DCUtRProtocol, RelayLimits
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.tools.anyio_service import background_trio_service

from wattshare.protocol import wall_time

from ._addresses import Scope, expand, ip_of, is_circuit, network_scope, scope_of, tellable
from ._dialback import dial_back

RELAY_LIMITS = RelayLimits(
    duration=12 * 3600,  # a circuit outlasts a night's session; a longer one is redialled
    data=64 * 1024 * 1024,  # a session's receipts and yamux pings are a few hundred KB a night
    max_circuit_conns=16, max_reservations=1024, reservation_ttl=3600)
RESERVE_CHECK = 2.0  # real seconds between looks at the links to our relays
RELAY_PROBE = 10.0  # real seconds between renewals on a link that looks alive: a restarted relay's old link can
RELAY_LOOKUP_FIRST, RELAY_LOOKUP_INTERVAL = 5.0, 600.0  # real seconds to the first and between DHT lookups
# (a tenth of the interval while fewer than two relays hold a slot for us)
MAX_RELAYS = 3  # reservations a node behind NAT holds at once
DIAL_BACK_INTERVAL = 1800.0  # real seconds between dial-back checks
DIAL_TIMEOUT = 5.0
PUNCH_DIAL_TIMEOUT = 2  # per hole-punch dial (LIBP2P-NOTES: 3 s to direct instead of 12 s)
log = logging.getLogger(__name__)


class _Unfiled(dict[ID, Any]):
    """py-libp2p 0.8.1's relay files each circuit under the destination's peer id, so the
    end of one circuit to a peer closed its newest one (a wallet's `find` leaving cut the
    link its `book` had just opened): nothing is filed here, `MemberRelay` closes each
    circuit's own streams instead."""

    def __setitem__(self, key: ID, value: Any) -> None:
        return None


class MemberRelay(CircuitV2Protocol):
    """A circuit relay v2 that gives reservations to `admitted` peers only."""

    def __init__(self, host: IHost, admitted: Callable[[ID], bool]) -> None:
        super().__init__(host, limits=RELAY_LIMITS, allow_hop=True)
        self.admitted = admitted
        self._active_relays = _Unfiled()

    async def _relay_data(self, src_stream: INetStream, dst_stream: INetStream, *args: Any) -> None:
        try:
            await super()._relay_data(src_stream, dst_stream, *args)
        finally:  # one direction ended: the circuit is over, both ways
            await self._close_stream(src_stream)
            await self._close_stream(dst_stream)

    async def _handle_reserve(self, stream: INetStream, msg: Any) -> None:
        peer = stream.muxed_conn.peer_id
        claimed = ID(msg.peer.id) if msg.HasField("peer") and msg.peer.id else peer
        if claimed != peer or not self.admitted(peer):
            log.info("relay reservation refused to %s: not an admitted member", peer)
            await self._send_status(stream, StatusCode.PERMISSION_DENIED, "reservations are for admitted members")
            return
        await super()._handle_reserve(stream, msg)


class _Listening:
    """The host as DCUtR must see it: its real listen addresses (the port it punches
    from), not the announced ones."""

    def __init__(self, host: IHost) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    def get_addrs(self) -> list[multiaddr.Multiaddr]:
        return self._host.get_transport_addrs()


class HolePunch(DCUtRProtocol):
    """DCUtR that offers the peer only addresses that work in the node's network
    (the NAT's public address and our listen port, never the LAN address)."""

    def __init__(self, host: IHost, network: Callable[[], Scope]) -> None:
        super().__init__(_Listening(host), dial_timeout=PUNCH_DIAL_TIMEOUT)  # type: ignore[arg-type]
        self.network = network
        # the host tells DCUtR of every closed link, through this attribute, so a peer's
        # next process (a wallet's `start` after its `book`) is punched to again, not
        # taken for the direct link of the last one
        host._dcutr_protocol = self  # type: ignore[attr-defined]

    async def _get_observed_addrs(self) -> list[bytes]:
        return [raw for raw in await super()._get_observed_addrs()
                if tellable(multiaddr.Multiaddr(raw), self.network())]


class Reach:
    """One node's reachability (see the module doc)."""

    def __init__(self, host: IHost, *, announce: Sequence[str] = (),
                 relay_for: Callable[[ID], bool] | None = None, changed: Callable[[], None] = lambda: None,
                 discover: Callable[[], Awaitable[dict[ID, PeerInfo]]] | None = None) -> None:
        self.host = host
        self.discover = discover  # the relays announced on the DHT
        self.changed = changed  # called when the addresses we tell peers change
        self.told = [multiaddr.Multiaddr(a) for a in announce]
        self.joined: list[str] = []  # the full addresses of the peers joined through
        self.relays: dict[ID, list[multiaddr.Multiaddr]] = {}  # known relays and their addresses
        self.reserved: dict[ID, tuple[float, multiaddr.Multiaddr]] = {}  # relay -> (renew at, its address)
        self.confirmed: list[multiaddr.Multiaddr] = []  # public addresses a peer dialled us back at
        self.protocol = MemberRelay(host, relay_for) if relay_for is not None else CircuitV2Protocol(host)
        self.transport = CircuitV2Transport(host, self.protocol, RelayConfig(roles=RelayRole.STOP))
        self.punch = HolePunch(host, lambda: self.network)
        self._open = host.new_stream
        host.new_stream = self.new_stream  # type: ignore[method-assign]
        host.get_addrs = self.addresses  # type: ignore[method-assign]

    @property
    def serves_relay(self) -> bool:
        return isinstance(self.protocol, MemberRelay)

    @property
    def network(self) -> Scope:
        """The scope of this node's network: that of the peers it joined through, or
        of its own addresses for a node that joins nobody (a co-op's first node)."""
        if self.joined:
            return network_scope(self.joined)
        own = self.told or expand(self.host.get_transport_addrs(), [])
        return max((scope_of(a) for a in own), default=Scope.LOOPBACK)

    def own(self) -> list[multiaddr.Multiaddr]:
        """This node's direct addresses that work in its network."""
        towards = [ip for peer in self.joined if (ip := ip_of(multiaddr.Multiaddr(peer))) is not None]
        own = [*(self.told or expand(self.host.get_transport_addrs(), towards)), *self.confirmed]
        network = self.network
        return [a for a in own if tellable(a, network)]

    @property
    def reachable(self) -> bool:
        """Can peers in this node's network dial it directly?"""
        return bool(self.own())

    def addresses(self) -> list[multiaddr.Multiaddr]:
        """What this node tells peers: its own addresses, or, with none, its circuit addresses."""
        me = multiaddr.Multiaddr(f"/p2p/{self.host.get_id()}")
        if own := self.own():
            return [a.encapsulate(me) for a in own]
        return [address.encapsulate(multiaddr.Multiaddr(f"/p2p/{relay}/p2p-circuit")).encapsulate(me)
                for relay, (_, address) in self.reserved.items()]

    def summary(self) -> str:
        """One line for `status`: how peers reach this node."""
        relay = "; relays for members" if self.serves_relay else ""
        if self.reachable:
            return f"direct ({self.network.name.lower()} network){relay}"
        if self.reserved:
            return f"behind NAT, through {len(self.reserved)} relay(s){relay}"
        return f"behind NAT, no relay reservation yet{relay}"

    def join(self, peers: list[str]) -> None:
        """Remember the peers joined through: they set the network's scope and are the
        first relays to try."""
        self.joined = sorted(set(self.joined) | set(peers))
        for peer in peers:
            info = info_from_p2p_addr(multiaddr.Multiaddr(peer))
            if info.peer_id != self.host.get_id():
                self.relays.setdefault(info.peer_id, []).extend(info.addrs)

    def links(self) -> dict[str, str]:
        """Each connected peer and the path of its link: "direct", or "relayed" when every
        link to it goes through a relay."""
        def path(peer: ID) -> str:
            links = self.host.get_network().get_connections(peer)
            relayed = all(any(is_circuit(a) for a in link.get_transport_addresses()) for link in links)
            return "relayed" if links and relayed else "direct"
        return {str(peer): path(peer) for peer in self.host.get_connected_peers()}

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with background_trio_service(self.protocol), background_trio_service(self.punch):
            task_status.started()
            await self.keep_reserved()

    async def keep_reserved(self) -> None:
        """Hold a reservation on every known relay while this node is not reachable,
        looking for more on the DHT now and then; on the internet, ask now and then
        whether a peer can dial it back (a port forward makes it reachable)."""
        look_at = trio.current_time() + RELAY_LOOKUP_FIRST
        check_at = 0.0
        while True:
            if not self.reachable and self.joined and self.discover is not None and trio.current_time() >= look_at:
                look_at = trio.current_time() + RELAY_LOOKUP_INTERVAL * (1 if len(self.reserved) > 1 else 0.1)
                await self._look_for_relays(self.discover)
            if not self.reachable:
                connected = set(self.host.get_connected_peers())
                for relay, addresses in list(self.relays.items()):
                    renew_at = self.reserved.get(relay, (0.0, None))[0]
                    if relay not in connected or trio.current_time() >= renew_at:
                        await self._reserve(relay, addresses)
            if self.network is Scope.PUBLIC and not self.told and self.joined and trio.current_time() >= check_at:
                check_at = trio.current_time() + DIAL_BACK_INTERVAL  # after the relays: it takes seconds
                await self._ask_dial_back()
            await trio.sleep(RESERVE_CHECK)

    async def _ask_dial_back(self) -> None:
        """Ask the peers joined through to dial this node back (`_dialback`)."""
        ports = {int(a.value_for_protocol("tcp")) for a in self.host.get_transport_addrs() if not is_circuit(a)}
        answers = []
        for peer in {info_from_p2p_addr(multiaddr.Multiaddr(a)).peer_id for a in self.joined}:
            for port in ports:
                try:
                    answers.append((await dial_back(self.host, peer, port), port))
                except Exception as error:  # noqa: BLE001 - a peer that cannot tell: ask the others
                    log.info("no dial-back from %s: %s", peer, error)
        confirmed = sorted({f"/ip4/{seen.observed}/tcp/{port}" for seen, port in answers
                            if seen.reachable and ":" not in seen.observed})
        if answers and confirmed != [str(a) for a in self.confirmed]:
            log.info("dialled back at %s", ", ".join(confirmed) or "none of our addresses: reached through relays")
            self.confirmed = [multiaddr.Multiaddr(a) for a in confirmed]
            self.changed()

    async def _look_for_relays(self, discover: Callable[[], Awaitable[dict[ID, PeerInfo]]]) -> None:
        with trio.move_on_after(DIAL_TIMEOUT * 2):
            for relay, info in (await discover()).items():
                if relay != self.host.get_id() and len(self.relays) < MAX_RELAYS:
                    self.relays.setdefault(relay, [a for a in info.addrs if not is_circuit(a)])

    async def _reserve(self, relay: ID, addresses: list[multiaddr.Multiaddr]) -> None:
        usable = [a for a in addresses if tellable(a, self.network)]
        if not usable:
            return
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                self.host.get_network().unblock_peer(relay)  # see `connect`
                await self.host.connect(PeerInfo(relay, usable))
                stream = await self._open(relay, [HOP_PROTOCOL])
                # not the public reserve(): it adds a refresher that misses relay restarts
                ok = await self.transport._make_reservation(stream, relay)
                await stream.close()
        except Exception as error:  # noqa: BLE001 - a relay that is down: try again next round
            log.info("no reservation at relay %s: %s", relay, error)
            ok = False
            with trio.move_on_after(DIAL_TIMEOUT):  # a link that only looked alive: the next round dials afresh
                await self.host.get_network().close_peer(relay)
        if not ok:
            if self.reserved.pop(relay, None) is not None:
                self.changed()
            return
        expires = self.transport._reservations.get(relay, 0)  # the relay's wall-clock time, not domain time
        lifetime = max(RESERVE_CHECK, expires - wall_time()) if expires else RELAY_LIMITS.reservation_ttl
        new = relay not in self.reserved
        self.reserved[relay] = (trio.current_time() + min(lifetime / 2, RELAY_PROBE), usable[0])
        if new:
            log.info("reserved a slot at relay %s", relay)
            self.changed()

    async def new_stream(self, peer: ID, protocols: list[TProtocol]) -> INetStream:
        """Open a stream to `peer`, connecting first where the swarm cannot (circuit addresses)."""
        await self.connect(peer)
        return await self._open(peer, protocols)

    async def connect(self, peer: ID) -> None:
        """Connect to `peer`: directly where a direct address is known, else through its
        relays; a peer with no address that works leaves the swarm to say so. Its relays
        are dialled even if they failed lately (a relay back from a restart): callers
        bound how often."""
        if peer in self.host.get_connected_peers():
            return
        try:
            known = self.host.get_peerstore().addrs(peer)
        except Exception:  # noqa: BLE001 - py-libp2p raises PeerStoreError for an unknown peer
            return
        direct = [a for a in known if not is_circuit(a)]
        for relay in {self._relay_of(a) for a in known if is_circuit(a)}:
            self.host.get_network().unblock_peer(relay)  # py-libp2p refuses for 60 s a peer that once failed
        if direct:
            with trio.move_on_after(DIAL_TIMEOUT):
                try:
                    await self.host.connect(PeerInfo(peer, direct))
                    return
                except Exception as error:  # noqa: BLE001 - try its relays next
                    log.info("no direct link to %s: %s", peer, error)
        connected = set(self.host.get_connected_peers())
        circuits = sorted((a for a in known if is_circuit(a)), key=lambda a: self._relay_of(a) not in connected)
        for circuit in circuits:  # through relays we hold a link to first: one may be down
            with trio.move_on_after(DIAL_TIMEOUT):
                try:
                    await self.transport.dial(circuit)
                    return
                except Exception as error:  # noqa: BLE001 - try the next relay
                    log.info("no link to %s through %s: %s", peer, circuit, error)

    def _relay_of(self, circuit: multiaddr.Multiaddr) -> ID:
        return info_from_p2p_addr(self.transport.parse_circuit_ma(circuit)[0]).peer_id
