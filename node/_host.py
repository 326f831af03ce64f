"""The libp2p host and Kademlia DHT of one participant, set up the way wattshare needs.

Theory of operation (LIBP2P-NOTES.md, measured on py-libp2p 0.8.1):

- The host's key is the participant's own Ed25519 seed, so its peer id is stable and is
  the key that signs ads, bookings, receipts and ledger entries.
- Noise is the only security transport (the default would also offer plaintext, where a
  peer can claim any id) and yamux the only muxer; `max_connections_per_peer=1` avoids
  a 250 ms fallback delay on every connect, and `low_watermark=0` keeps py-libp2p's
  auto-connector from dialling up to 200 peers: a neighbourhood node connects on demand.
- The DHT runs in server mode with strict validation and a `wattshare` namespace.
  Provider keys are sha2-256 multihashes in hex (a bare cell name could parse as hex).
- Joining: connect to each bootstrap peer and add it to the routing table (connections
  alone do not fill it), then refresh the table once.
- py-libp2p configures loud logging on import; `quiet_libp2p` routes it through the
  standard logging tree at ERROR at least, where the daemon's own configuration decides,
  and turns the multi-line ERRORs it logs when a peer lacks a protocol or has left (a
  js-libp2p client without gossipsub, say) into one DEBUG line each.
- py-libp2p leaves a stopped host's links and listener open in the process (the
  listener even handshaking); `running` closes them, so a node that stops is gone, as a
  process that exits is, and its peers see it leave.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, IListener, IMuxedConn
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.records.validator import Validator
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from nacl.signing import SigningKey

from wattshare.protocol import Identity

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"
JOIN_TIMEOUT = 10.0
LEAVE_TIMEOUT = 2.0
CELL_PRECISION = 5  # a DHT cell is a geohash-5 (about 4.9 km x 4.9 km); an ad names a geohash-7
log = logging.getLogger(__name__)


# What py-libp2p 0.8.1 logs at ERROR, over several lines, when a peer lacks a protocol
# (gossipsub, a wattshare one, the DHT) or has left mid-way: the world's doing, which the
# caller hears of as an exception anyway (issue 18). basic_host logs its one ERROR only
# when negotiating a protocol with the peer failed.
_WORLDS_DOING = {
    "libp2p.host.basic_host": re.compile(r"Failed to open stream to peer "),
    "libp2p.protocol_muxer.multiselect_client": re.compile(r"MultiselectClient handshake: (read|write) failed"),
    "libp2p.transport.tcp.tcp": re.compile(r"Failed to open TCP stream"),
    # a peer's signed peer record no newer than the one held (js-libp2p re-sends its own: LIBP2P-NOTES)
    "libp2p.kad_dht.utils": re.compile(r"Failed to update the Certified-Addr-Book"),
}


class _OneDebugLine(logging.Filter):
    """Turns a record of the world's doing (`_WORLDS_DOING`) into one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _WORLDS_DOING[record.name].match(message := record.getMessage()):
            return True
        record.msg, record.args = " ".join(line.strip() for line in message.splitlines()[:2]), None
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_ONE_DEBUG_LINE = _OneDebugLine()


def quiet_libp2p() -> None:
    lib = logging.getLogger("libp2p")
    lib.handlers[:] = []
    lib.setLevel(max(lib.level, logging.ERROR))  # an application may have raised it
    lib.propagate = True
    for name, child in logging.root.manager.loggerDict.items():
        if name.startswith("libp2p.") and isinstance(child, logging.Logger):
            child.setLevel(logging.NOTSET)  # some set their own INFO level on import
    for name in _WORLDS_DOING:
        logging.getLogger(name).addFilter(_ONE_DEBUG_LINE)  # once: a filter is added only if absent


def _dht_key(name: str) -> str:
    """The DHT provider key of a name: its sha2-256 multihash, in hex (LIBP2P-NOTES)."""
    return "1220" + hashlib.sha256(name.encode()).hexdigest()


def cell_of(geohash: str) -> str:
    """The DHT cell of a charger's public geohash-7 location: its first CELL_PRECISION characters."""
    return geohash[:CELL_PRECISION]


def cell_key(cell: str) -> str:
    """The DHT provider key of a geohash-5 cell."""
    return _dht_key(f"wattshare/cell/v1/{cell}")


def relay_key() -> str:
    """The DHT provider key under which nodes that relay for members announce themselves."""
    return _dht_key("wattshare/relay/v1")


class _NoValues(Validator):
    """wattshare publishes no DHT values (ads travel over their own protocol): refuse all."""

    def validate(self, key: str, value: bytes) -> None:
        raise ValueError("wattshare stores no values in the DHT")

    def select(self, key: str, values: list[bytes]) -> int:
        return 0


def make_host(identity: Identity, listen: str = DEFAULT_LISTEN) -> IHost:
    private = Ed25519PrivateKey(SigningKey(identity.seed))
    key_pair = KeyPair(private, private.get_public_key())
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)},
        muxer_opt={YAMUX_ID: Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1, min_connections=0, low_watermark=0),
        listen_addrs=[multiaddr.Multiaddr(listen)],
    )


def make_dht(host: IHost) -> KadDHT:
    dht = KadDHT(host, DHTMode.SERVER, strict_validation=True)
    dht.register_validator("wattshare", _NoValues())
    return dht


@asynccontextmanager
async def running(host: IHost, dht: KadDHT, listen: str = DEFAULT_LISTEN) -> AsyncIterator[None]:
    """Listen and run the DHT for the life of the block (no timeout may be opened in here
    around these contexts: LIBP2P-NOTES)."""
    async with AsyncExitStack() as stack:
        stack.push_async_callback(_leave, host)  # runs once the host has stopped
        await stack.enter_async_context(host.run(listen_addrs=[multiaddr.Multiaddr(listen)]))
        await stack.enter_async_context(background_trio_service(dht))
        yield


async def _leave(host: IHost) -> None:
    """Close the links and listeners py-libp2p 0.8.1 leaves open (a listener even
    handshaking) once its host has stopped: a node that stops is gone, as a process that
    exits is, and its peers see it leave."""
    swarm = host.get_network()
    with trio.CancelScope(shield=True), trio.move_on_after(LEAVE_TIMEOUT):  # left by a cancellation, maybe
        async with trio.open_nursery() as nursery:
            for links in list(swarm.connections.values()):
                for link in links:
                    if not link.muxed_conn.is_closed:
                        nursery.start_soon(_close_quietly, link.muxed_conn)
            for listener in list(swarm.listeners.values()):
                nursery.start_soon(_close_quietly, listener)


async def _close_quietly(closable: IMuxedConn | IListener) -> None:
    try:
        await closable.close()
    except Exception as error:  # noqa: BLE001 - leaving anyway
        log.debug("closing %r on leaving: %r", closable, error)


async def join(host: IHost, dht: KadDHT, bootstrap: list[str], limiter: trio.CapacityLimiter | None = None) -> int:
    """Connect to the bootstrap peers (full multiaddrs with /p2p/), seed and refresh the
    routing table; returns how many bootstrap peers answered."""
    joined = 0
    for address in bootstrap:
        info: PeerInfo = info_from_p2p_addr(multiaddr.Multiaddr(address))
        if info.peer_id == host.get_id():
            continue
        with trio.move_on_after(JOIN_TIMEOUT):
            try:
                await host.connect(info)
            except Exception as error:  # noqa: BLE001 - a bootstrap peer that is down is the world's fault
                log.info("bootstrap peer %s unreachable: %s", info.peer_id, error)
                continue
            if await dht.add_peer(info.peer_id):
                joined += 1
    if joined:
        with trio.move_on_after(JOIN_TIMEOUT):
            if limiter is None:
                await dht.refresh_routing_table()
            else:
                async with limiter:
                    await dht.refresh_routing_table()
    return joined


def peer_of(public_key: bytes) -> ID:
    """The libp2p peer id of a participant's key."""
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key))


def peer_of_address(address: str) -> ID:
    """The peer id in a full /p2p/ address."""
    return info_from_p2p_addr(multiaddr.Multiaddr(address)).peer_id


def address(host: IHost) -> str:
    """The host's first announced address, /ip4/.../tcp/.../p2p/<peer id> (a circuit
    address behind NAT; empty before it has any)."""
    addresses = host.get_addrs()
    return str(addresses[0]) if addresses else ""
