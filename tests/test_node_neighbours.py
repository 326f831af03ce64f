"""Good neighbours (issue 18): plain libp2p peers that come and go, without gossipsub or
wattshare's protocols (as a js-libp2p client does), leave no trace in the log and are
not handed out once they have left, so a search stays as fast as before."""

import hashlib
import logging
from contextlib import AsyncExitStack

import pytest
import trio
from fixtures import at, error_lines, make_ad, pinned_clock, run_bounded

from wattshare import protocol as p
from wattshare.ledger import LedgerStore
from wattshare.node import Node, _liveness, cell_key, cell_of
from wattshare.node._ads import providers
from wattshare.node._host import join, make_dht, make_host, quiet_libp2p, running
from wattshare.node._sync import _may_speak_sync

GEOHASH = p.geo.encode(52.521, 13.405, 7)  # the host's charger, 110 m north of the query's centre
QUERY = p.Query(lat_e6=52_520_000, lon_e6=13_405_000, radius_m=2000,
                start=at("2026-11-27T23:00"), end=at("2026-11-28T06:00"))
VISITORS = 20
VISITS_AT_ONCE = 4
LOOKUP_TIMEOUT = 5.0


def identity(name):
    return p.Identity(hashlib.sha256(b"neighbours-test/" + name.encode()).digest())


def ledger(tmp_path, name):
    return LedgerStore(tmp_path / f"{name}.db", identity("the co-op").public_key)


async def visit(name, bootstrap):
    """A plain py-libp2p peer (the DHT in server mode, Noise only, one link per peer; no
    gossipsub, no wattshare protocol) joins through `bootstrap`, looks a cell up and leaves."""
    host = make_host(identity(name))
    dht = make_dht(host)
    async with running(host, dht):
        await join(host, dht, [bootstrap])
        with trio.move_on_after(LOOKUP_TIMEOUT):
            await dht.find_providers(cell_key(cell_of(GEOHASH)))
    return host.get_id()


async def street(stack, tmp_path):
    """A co-op node and a host advertising a charger, both keeping a ledger and gossiping heads."""
    clock = pinned_clock("2026-11-27T12:00")

    def node(name):
        return Node(identity(name), clock=clock, ledger=ledger(tmp_path, name))

    coop, host = node("coop"), node("host")
    for each in (coop, host):
        await stack.enter_async_context(each.running())
    await host.join([coop.address])
    await host.publish(make_ad(host=host.identity.public_key, geohash=GEOHASH))
    return coop, host


async def wallet_find(coop, tmp_path, name):
    """What `wattshare wallet find` does: a short-lived wallet node joins through the
    co-op node and searches. Its duration, results and routing table after the join."""
    wallet = Node(identity(name), clock=coop.clock, gossip=False, ledger=ledger(tmp_path, name))
    async with wallet.running():
        started = trio.current_time()
        await wallet.join([coop.address])
        table = set(wallet.dht.routing_table.get_peer_ids())
        results = await wallet.search(QUERY)
        return trio.current_time() - started, results, table


def test_wallet_find_stays_fast_and_quiet_after_twenty_plain_peers_came_and_went(tmp_path, caplog):
    async def scenario():
        async with AsyncExitStack() as stack:
            coop, host = await street(stack, tmp_path)
            baseline, results, _ = await wallet_find(coop, tmp_path, "wallet-before")
            assert [r.ad.message.host for r in results] == [host.identity.public_key]

            visited = len(caplog.records)
            limiter = trio.CapacityLimiter(VISITS_AT_ONCE)
            visitors = set()

            async def one(i):
                async with limiter:
                    visitors.add(await visit(f"visitor/{i}", coop.address))

            async with trio.open_nursery() as nursery:
                for i in range(VISITORS):
                    nursery.start_soon(one, i)
            assert error_lines(caplog.records[visited:]) == []  # no gossipsub, no wattshare protocol: no error

            with trio.fail_after(3 * _liveness.CHECK_INTERVAL):  # each node dials the peers it has no link to
                while visitors & set(coop.dht.routing_table.get_peer_ids() + host.dht.routing_table.get_peer_ids()):
                    await trio.sleep(0.2)

            searched = len(caplog.records)
            after, results, table = await wallet_find(coop, tmp_path, "wallet-after")
            assert error_lines(caplog.records[searched:]) == []
        assert [r.ad.message.host for r in results] == [host.identity.public_key]
        assert not visitors & table  # nobody handed a peer that left to the new wallet
        assert after < 2 * baseline + 1.0, (baseline, after)

    run_bounded(scenario, 55)


def test_a_lookup_forgets_a_routing_table_peer_that_does_not_answer(tmp_path, monkeypatch):
    monkeypatch.setattr(_liveness, "CHECK_INTERVAL", 3600.0)  # the lookup, not the periodic check, finds out

    async def scenario():
        async with AsyncExitStack() as stack:
            coop, host = await street(stack, tmp_path)
            gone = await visit("visitor/gone", coop.address)
            assert coop.dht.routing_table.peer_in_table(gone)  # it asked the co-op node, and left
            found = await providers(coop.dht, coop.host, cell_key(cell_of(GEOHASH)))
            assert set(found) == {host.host.get_id()}
            assert not coop.dht.routing_table.peer_in_table(gone)  # forgotten at once, not at the next check
            assert coop.host.get_peerstore().addrs(gone) == []

    run_bounded(scenario, 30)


def test_a_peer_without_gossipsub_or_ledger_sync_costs_one_debug_line_not_an_error(tmp_path, caplog):
    async def scenario():
        async with AsyncExitStack() as stack:
            coop, _ = await street(stack, tmp_path)
            caplog.set_level(logging.DEBUG, logger="libp2p.host.basic_host")
            plain = make_host(identity("plain"))
            dht = make_dht(plain)
            async with running(plain, dht):
                await join(plain, dht, [coop.address])
                with trio.fail_after(10):  # the co-op node's gossipsub tries a stream to every new peer
                    while not (refused := [r for r in caplog.records if "/meshsub/" in r.getMessage()]):
                        await trio.sleep(0.05)
                with trio.fail_after(10):  # once identify has told, anti-entropy does not even try
                    while _may_speak_sync(coop.host, plain.get_id()):
                        await trio.sleep(0.05)
        assert error_lines(caplog.records) == []
        assert all(r.levelno == logging.DEBUG and "\n" not in r.getMessage() and r.exc_info is None
                   for r in refused), [r.getMessage() for r in refused]
        assert str(plain.get_id()) in refused[0].getMessage()

    run_bounded(scenario, 30)


@pytest.mark.parametrize("logger, message", [
    ("libp2p.kad_dht.utils", "Failed to update the Certified-Addr-Book"),  # a js-libp2p peer's record, re-sent
    ("libp2p.transport.tcp.tcp", "Failed to open TCP stream to /ip4/127.0.0.1/tcp/9: [Errno 111] Connect call failed"),
    ("libp2p.host.basic_host", "Failed to open stream to peer 12D3KooW: protocols not supported: /meshsub/1.0.0\n"
                               "  details on a second line"),
])
def test_what_a_departed_or_plainer_peer_makes_libp2p_log_is_one_debug_line_and_other_errors_stay(caplog, logger, message):
    quiet_libp2p()
    caplog.set_level(logging.DEBUG, logger=logger)
    try:
        raise OSError("the peer is gone")
    except OSError:
        logging.getLogger(logger).error(message, exc_info=True)
    logging.getLogger(logger).error("a real fault of this node")
    world, real = caplog.records[-2:]
    assert (world.levelno, world.exc_info, world.getMessage()) == (logging.DEBUG, None, " ".join(
        line.strip() for line in message.splitlines()))
    assert real.levelno == logging.ERROR
