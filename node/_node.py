"""The node: one participant's libp2p host, DHT and protocol services, run under trio.

Theory of operation: `Node` wires the pieces together and owns their lifetimes; the
pieces themselves (`_host`, `_ads`, `_framing`) know nothing of each other. A node is
started with `async with node.running():` and stopped by leaving the block; while it
runs it serves its protocols and re-provides its ads' cells every
`REANNOUNCE_INTERVAL` (and at once after `publish`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import trio

from wattshare.protocol import ChargerAd, Identity, Query, Result, Signed

from ._ads import AD_PROTOCOL, AdBoard, find_chargers, provide_cells
from ._host import DEFAULT_LISTEN, address, join, make_dht, make_host, quiet_libp2p, running

REANNOUNCE_INTERVAL = 600.0


class Node:
    """One participant on the network (see the module doc)."""

    def __init__(self, identity: Identity, *, listen: str = DEFAULT_LISTEN) -> None:
        quiet_libp2p()
        self.identity = identity
        self.listen = listen
        self.host = make_host(identity, listen)
        self.dht = make_dht(self.host)
        self.board = AdBoard(identity)
        self.host.set_stream_handler(AD_PROTOCOL, self.board.handle)
        self._announce = trio.Event()

    @property
    def address(self) -> str:
        return address(self.host)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Node]:
        async with running(self.host, self.dht, self.listen), trio.open_nursery() as nursery:
            nursery.start_soon(self._reannounce)
            yield self
            nursery.cancel_scope.cancel()

    async def join(self, bootstrap: list[str], limiter: trio.CapacityLimiter | None = None) -> int:
        joined = await join(self.host, self.dht, bootstrap, limiter)
        self._announce.set()
        return joined

    async def publish(self, ad: ChargerAd) -> Signed[ChargerAd]:
        signed = self.board.publish(ad)
        await provide_cells(self.dht, {ad.geohash[:5]})
        return signed

    async def search(self, query: Query, now: int | None = None) -> list[Result]:
        return await find_chargers(self.host, self.dht, query, now)

    async def _reannounce(self) -> None:
        while True:
            with trio.move_on_after(REANNOUNCE_INTERVAL):
                await self._announce.wait()
            self._announce = trio.Event()
            if self.board.cells:
                await provide_cells(self.dht, self.board.cells)
