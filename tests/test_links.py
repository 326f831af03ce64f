"""Link faults between real libp2p hosts on loopback: a dropped link fails both ways and
heals by itself while other peers are served; a delayed link is slow, in order, and fast
again once the fault is over."""

import hashlib
from contextlib import AsyncExitStack

import pytest
import trio
from fixtures import run_bounded
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import PeerInfo

from wattshare.node._host import make_dht, make_host, running
from wattshare.protocol import Identity
from wattshare.testing import LinkFaults

ECHO = "/wattshare-test/echo/1.0.0"


async def echo(stream):
    try:
        while data := await stream.read(65536):
            await stream.write(data)
    except StreamEOF:
        pass
    finally:
        await stream.close()


async def start(stack, name):
    host = make_host(Identity(hashlib.sha256(f"links-test/{name}".encode()).digest()))
    links = LinkFaults(host)  # as FaultHooks does: before any connection exists
    host.set_stream_handler(ECHO, echo)
    await stack.enter_async_context(running(host, make_dht(host)))
    return host, links


async def connect(host, other):
    with trio.fail_after(5):
        await host.connect(PeerInfo(other.get_id(), other.get_addrs()))


async def exchange(stream, chunks):
    """Write the chunks on an open echo stream and read them all back; returns the seconds."""
    t0 = trio.current_time()
    for chunk in chunks:
        await stream.write(chunk)
    expected, got = b"".join(chunks), b""
    while len(got) < len(expected):
        got += await stream.read(len(expected) - len(got))
    assert got == expected
    return trio.current_time() - t0


async def round_trip(host, peer, chunks=(b"ping",)):
    """Open an echo stream to `peer`, time one exchange on it, close it."""
    with trio.fail_after(10):
        stream = await host.new_stream(peer, [ECHO])
        try:
            return await exchange(stream, list(chunks))
        finally:
            await stream.close()


async def fails(host, peer):
    """Seconds until a new stream from `host` to `peer` fails (it must) with an ordinary dial
    error, and the error's name."""
    t0 = trio.current_time()
    with trio.fail_after(5), pytest.raises(SwarmException) as error:
        await round_trip(host, peer)
    return trio.current_time() - t0, type(error.value).__name__


def test_a_dropped_link_fails_both_ways_spares_others_and_heals():
    seen = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            (a, links), (b, _), (c, _) = [await start(stack, name) for name in "abc"]
            await connect(a, b)
            await connect(c, a)
            await round_trip(a, b.get_id())
            t0 = trio.current_time()
            assert links.drop(b.get_id(), 3.0) == {"dropped": str(b.get_id()), "seconds": 3.0}
            seen["a->b open"] = await fails(a, b.get_id())  # over the connection being closed
            with trio.fail_after(2):  # the old connection is gone on both sides
                while b.get_id() in a.get_connected_peers() or a.get_id() in b.get_connected_peers():
                    await trio.sleep(0.01)

            async def dial(name, host, peer):  # new connections fail at the upgrade, both ways
                seen[name] = await fails(host, peer)

            async with trio.open_nursery() as nursery:  # each dial retries 4 times: ~0.7-1 s
                nursery.start_soon(dial, "a->b dial", a, b.get_id())
                nursery.start_soon(dial, "b->a dial", b, a.get_id())
            seen["c<->a"] = await round_trip(c, a.get_id()) + await round_trip(a, c.get_id())
            await connect(c, b)  # both listeners still serve everyone else
            seen["c->b"] = await round_trip(c, b.get_id())
            seen["within"] = trio.current_time() - t0
            await trio.sleep_until(t0 + 3.05)
            assert not links.dropped
            await connect(a, b)  # the link works again by itself (A's dial backoff lifted)
            seen["after"] = await round_trip(a, b.get_id())
            seen["b->a after"] = await round_trip(b, a.get_id())

    run_bounded(scenario, 60)
    assert seen["within"] < 3.0  # all of it while the link was down
    assert all(seen[name][0] < 1.5 for name in ("a->b open", "a->b dial", "b->a dial"))
    assert seen["c<->a"] < 0.5 and seen["c->b"] < 0.5 and seen["after"] < 0.5 and seen["b->a after"] < 0.5


def test_a_delayed_link_is_slow_in_order_and_recovers():
    seen = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            (a, links), (b, _) = [await start(stack, name) for name in "ab"]
            await connect(a, b)
            with trio.fail_after(5):  # streams opened before the fault (opening one costs round trips)
                ab = await a.new_stream(b.get_id(), [ECHO])
                ba = await b.new_stream(a.get_id(), [ECHO])
            with trio.fail_after(30):
                seen["before"] = await exchange(ab, [b"ping"])
                links.delay(b.get_id(), 0.3, 5.0)
                t0 = trio.current_time()
                seen["a->b"] = await exchange(ab, [b"ping"])
                seen["b->a"] = await exchange(ba, [b"ping"])
                burst = [bytes([i]) * 1000 for i in range(40)]  # in order, and pipelined: not 40 x 0.3 s
                seen["burst"] = await exchange(ab, burst)
                seen["new stream"] = await round_trip(a, b.get_id())
                await trio.sleep_until(t0 + 5.0)
                seen["after"] = await exchange(ab, [b"ping"])
                seen["b->a after"] = await exchange(ba, [b"ping"])
                seen["new stream after"] = await round_trip(a, b.get_id())

    run_bounded(scenario, 60)
    assert seen["before"] < 0.2 and seen["after"] < 0.2 and seen["b->a after"] < 0.2
    assert 0.3 <= seen["a->b"] < 1.0 and 0.3 <= seen["b->a"] < 1.0 and 0.3 <= seen["new stream"] < 1.0
    assert 0.3 <= seen["burst"] < 1.5
    assert seen["new stream after"] < 0.2


def test_a_connection_made_under_delay_is_slow_from_its_first_byte():
    seen = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            (a, links), (b, _) = [await start(stack, name) for name in "ab"]
            links.delay(b.get_id(), 0.1, 3.0)
            t0 = trio.current_time()
            await connect(a, b)  # the handshake and muxer negotiation go through the delay line
            seen["connect"] = trio.current_time() - t0
            with trio.fail_after(5):
                stream = await a.new_stream(b.get_id(), [ECHO])
                seen["during"] = await exchange(stream, [b"ping"])
                await trio.sleep_until(t0 + 3.0)
                seen["after"] = await exchange(stream, [b"ping"])

    run_bounded(scenario, 60)
    assert seen["connect"] >= 0.2 and 0.1 <= seen["during"] < 0.5 and seen["after"] < 0.15
