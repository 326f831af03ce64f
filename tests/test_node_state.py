"""What a node keeps across restarts: peers to rejoin (ads and bookings: test_node_booking)."""

import hashlib
from contextlib import AsyncExitStack

import pytest
import trio
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


def test_an_error_inside_a_running_node_comes_out_as_itself(tmp_path):
    """Issue 19, item 15: not nested past Python's display depth in py-libp2p's groups."""
    async def scenario():
        async with Node(p.Identity(bytes([7]) * 32)).running():
            raise LookupError("the test's own failure")

    with pytest.raises(LookupError, match="the test's own failure"):
        trio.run(scenario)
