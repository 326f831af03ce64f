"""Ledger replication between real nodes: writes on each converge, a node that was offline
catches up, and nothing depends on gossip (anti-entropy alone converges)."""

import hashlib
from contextlib import AsyncExitStack

import trio

from wattshare import protocol as p
from wattshare.ledger import LedgerStore, audit
from wattshare.ledger._sample import EPOCH, SampleWorld
from wattshare.node import Node

NIGHT = EPOCH + 22 * 3600


def snapshot(store):
    return sorted(store.sizes().items()), sorted((k, v) for k, v in store.state.balances.items() if v)


async def converged(stores, seconds=15):
    with trio.fail_after(seconds):
        while any(snapshot(s) != snapshot(stores[0]) for s in stores):
            await trio.sleep(0.05)


def test_three_nodes_converge_and_an_offline_node_catches_up(tmp_path):
    world = SampleWorld(seed=51)
    ledgers = [LedgerStore(tmp_path / f"{name}.db", world.coop.public_key) for name in "abc"]
    nodes = [Node(p.Identity(hashlib.sha256(name.encode()).digest()), ledger=ledger, sync_interval=0.2)
             for name, ledger in zip("abc", ledgers)]
    a, b, c = nodes

    async def scenario():
        async with AsyncExitStack() as stack:
            for node in (a, b):
                await stack.enter_async_context(node.running())
            await b.join([a.address])
            ledgers[0].ingest([world.charter_entry().encode(), world.money(world.drivers[0], 9_000, EPOCH).encode()])
            session = world.session(world.hosts[0], world.drivers[0], NIGHT)
            ledgers[1].ingest([world.settlement_entry(session).encode()])
            await converged(ledgers[:2])

            # c is offline while a and b write more; then it starts and catches up
            ledgers[0].ingest([world.money(world.drivers[1], 4_000, EPOCH + 5).encode()])
            ledgers[1].ingest([world.ack_entry(session).encode()])
            await stack.enter_async_context(c.running())
            await c.join([b.address])
            await converged(ledgers)
        return session

    async def main():
        with trio.fail_after(60):
            return await scenario()

    trio.run(main)
    assert ledgers[2].sizes() == ledgers[0].sizes() and len(ledgers[2].sizes()) == 4  # co-op, treasurer, host, driver
    assert all(audit(ledger.path).ok for ledger in ledgers)
