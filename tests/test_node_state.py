"""What a node keeps across restarts: peers to rejoin (ads and bookings: test_node_booking)."""

import hashlib
from contextlib import AsyncExitStack

from fixtures import run_bounded

from wattshare import protocol as p
from wattshare.node import Node


def identity(name):
    return p.Identity(hashlib.sha256(name.encode()).digest())


def test_a_restarted_node_rejoins_the_peers_it_knew(tmp_path):
    state = tmp_path / "node.db"
    seen = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            anchor = Node(identity("anchor"))
            await stack.enter_async_context(anchor.running())
            first = Node(identity("restarting"), state=state)
            async with first.running():
                seen["first"] = await first.join([anchor.address])
            again = Node(identity("restarting"), state=state)
            async with again.running():
                seen["again"] = await again.rejoin()
                seen["connected"] = anchor.host.get_id() in again.host.get_connected_peers()

    run_bounded(scenario)
    assert seen == {"first": 1, "again": 1, "connected": True}
