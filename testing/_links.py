"""Link faults: for a while, the link to one named peer fails (for the chaos run and tests).

Theory of operation: py-libp2p secures every connection, inbound and outbound, in its
upgrader's `upgrade_security`, then yamux multiplexes it. `LinkFaults` replaces that method
on this host's upgrader (an instance attribute), so yamux gets each secured connection in a
`_Link`, a proxy whose `read` and `write` apply the remote peer's faults; all else is the
Noise session's. Faults end by themselves (trio time).

- drop: the peer's connections are closed (`close_peer`), reads and writes still under way
  fail as on a closed connection, and new connections fail at the upgrade with
  SecurityUpgradeFailure (a plain dial error for the dialler; the listener discards them).
  The swarm blocks dials to a peer for 60 s after one fails: ending the drop lifts that.
- delay: a delay line, not a sleep per call (yamux writes under one lock per connection: a
  sleep would cap it at one frame per latency). A pump sends queued writes in order when
  due; another stamps chunks on arrival for `read` to hand up when due. Pumps stay for the
  connection's life (a Noise read cannot be cut off without losing a frame). The Noise
  handshake precedes the proxy and is not delayed; the muxer negotiation on is.
- A hook has no nursery: pumps and the drop's timer are trio system tasks (as libp2p's
  identify push is) that catch every error: a failing link ends its connection, not the node.
"""

from __future__ import annotations

import contextlib
import logging

import trio
from libp2p.abc import IHost, IRawConnection, ISecureConn
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.peer.id import ID
from libp2p.transport.exceptions import SecurityUpgradeFailure

QUEUE = 64  # chunks in flight per direction before a delayed connection pushes back
log = logging.getLogger(__name__)


class LinkFaults:
    """Faults on the links of one host, installed on its swarm when constructed."""

    def __init__(self, host: IHost) -> None:
        self.swarm = host.get_network()
        self.dropped: dict[ID, float] = {}  # peer -> trio time the drop ends (its `_cut` heals it)
        self.delayed: dict[ID, tuple[float, float]] = {}  # peer -> (latency, trio time it ends)
        upgrade = self.swarm.upgrader.upgrade_security

        async def upgrade_security(raw_conn: IRawConnection, is_initiator: bool, peer_id: ID | None = None) -> _Link:
            if self.down(peer_id):  # our own dial: refused before a byte is sent
                raise SecurityUpgradeFailure(f"link to {peer_id} is down (injected fault)")
            conn = await upgrade(raw_conn, is_initiator, peer_id)
            if self.down(peer := conn.get_remote_peer()):  # a dial in, or a drop begun meanwhile
                await conn.close()
                raise SecurityUpgradeFailure(f"link to {peer} is down (injected fault)")
            return _Link(self, conn)

        self.swarm.upgrader.upgrade_security = upgrade_security

    def drop(self, peer: ID, seconds: float) -> dict:
        until = trio.current_time() + seconds
        self.dropped[peer] = until
        log.warning("fault: link to %s dropped for %g s", peer, seconds)
        trio.lowlevel.spawn_system_task(self._cut, peer, until)
        return {"dropped": str(peer), "seconds": seconds}

    def delay(self, peer: ID, latency: float, seconds: float) -> dict:
        self.delayed[peer] = (latency, trio.current_time() + seconds)
        log.warning("fault: link to %s delayed %g s each way for %g s", peer, latency, seconds)
        return {"delayed": str(peer), "latency": latency, "seconds": seconds}

    def down(self, peer: ID | None) -> bool:
        return peer in self.dropped

    async def _close(self, peer: ID) -> None:
        with contextlib.suppress(Exception):  # close_peer logs its own failures
            await self.swarm.close_peer(peer)

    def latency(self, peer: ID) -> float:
        latency, until = self.delayed.get(peer, (0.0, 0.0))
        return latency if trio.current_time() < until else 0.0

    async def _cut(self, peer: ID, until: float) -> None:
        await self._close(peer)
        await trio.sleep_until(until)
        if self.dropped.get(peer) == until:  # not extended by a later drop: heal, all at once
            del self.dropped[peer]
            self.swarm.unblock_peer(peer)


@ISecureConn.register  # an ISecureConn by delegation (__getattr__), for any isinstance check
class _Link:
    """A secured connection as yamux sees it, with the faults of its peer applied."""

    def __init__(self, faults: LinkFaults, conn: ISecureConn) -> None:
        self._faults, self._conn, self._peer = faults, conn, conn.get_remote_peer()
        self._outbox: trio.MemorySendChannel | None = None  # writes, once delayed
        self._inbox: trio.MemoryReceiveChannel | None = None  # reads, once delayed
        self._held: tuple[float, bytes | Exception] | None = None  # (due, rest of a chunk, or the end)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)

    def _check(self) -> float:
        if self._faults.down(self._peer):
            raise ConnectionClosedError(f"link to {self._peer} is down (injected fault)")
        return self._faults.latency(self._peer)

    async def write(self, data: bytes) -> None:
        latency = self._check()
        if self._outbox is None and not latency:
            return await self._conn.write(data)
        if self._outbox is None:
            self._outbox, queue = trio.open_memory_channel(QUEUE)
            trio.lowlevel.spawn_system_task(self._send, queue)
        await self._outbox.send((trio.current_time() + latency, data))

    async def read(self, n: int | None = None) -> bytes:
        latency = self._check()
        if self._inbox is None and not latency:
            return await self._conn.read(n)
        if self._inbox is None:
            queue, self._inbox = trio.open_memory_channel(QUEUE)
            trio.lowlevel.spawn_system_task(self._receive, queue)
        if self._held is None:
            self._held = await self._inbox.receive()  # kept across a cancelled sleep
        due, data = self._held
        await trio.sleep_until(due)
        if isinstance(data, Exception):
            raise data
        cut = len(data) if n is None else n
        self._held = (due, data[cut:]) if data[cut:] else None
        return data[:cut]

    async def close(self) -> None:
        if self._outbox is not None:
            return self._outbox.close()  # the pump sends what is queued, then closes the connection
        await self._conn.close()

    async def _send(self, queue: trio.MemoryReceiveChannel) -> None:
        try:
            async with queue:
                async for due, data in queue:
                    await trio.sleep_until(due)
                    self._check()
                    await self._conn.write(data)
        except Exception as error:  # noqa: BLE001 - a failed link closes the connection, not the node
            log.debug("delayed write to %s: %r", self._peer, error)
        with contextlib.suppress(Exception):  # queue drained or link failed: the connection ends
            await self._conn.close()

    async def _receive(self, queue: trio.MemorySendChannel) -> None:
        data: bytes | Exception = b""
        while not isinstance(data, Exception):
            try:
                data = await self._conn.read() or ConnectionClosedError("connection closed")
            except Exception as error:  # noqa: BLE001 - handed to the reader, in turn, as the connection's end
                data = error
            await queue.send((trio.current_time() + self._faults.latency(self._peer), data))

