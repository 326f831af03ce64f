"""Real libp2p nodes on 127.0.0.1: advertise through the DHT, search, and bad input on the ad protocol."""

import hashlib
from contextlib import AsyncExitStack

import trio
from fixtures import at, make_ad, pinned_clock, run_bounded
from libp2p.network.stream.exceptions import StreamError

from wattshare import protocol as p
from wattshare.node import AD_PROTOCOL, FrameStream, Node, fetch_ads
from wattshare.node._framing import varint

CENTRE = (52.520000, 13.405000)
NOW = at("2026-11-27T12:00")  # every node's clock reads this (pinned_clock)
QUERY = p.Query(lat_e6=52_520_000, lon_e6=13_405_000, radius_m=2000,
                start=at("2026-11-27T23:00"), end=at("2026-11-28T06:00"))
DISTANCES = [300, 900, 1500, 1950, 2050, 2600, 3500, 800, 1200, 6000, 1800]


def identity(i):
    return p.Identity(hashlib.sha256(b"node-test/%d" % i).digest())


def geohash_north(metres):
    return p.geo.encode(CENTRE[0] + metres / 111_195, CENTRE[1], 7)


def within(metres):
    """Is the published cell of a charger `metres` north of the centre inside the query?"""
    return p.geo.distance_m(*CENTRE, *p.geo.decode(geohash_north(metres))) <= QUERY.radius_m


async def network(stack, count):
    clock = pinned_clock("2026-11-27T12:00")
    nodes = [Node(identity(i), clock=clock) for i in range(count)]
    for node in nodes:
        await stack.enter_async_context(node.running())
    limiter = trio.CapacityLimiter(3)
    async with trio.open_nursery() as nursery:
        for node in nodes[1:]:
            nursery.start_soon(node.join, [nodes[0].address], limiter)
    return nodes


def test_search_finds_exactly_the_hosts_within_the_radius():
    async def scenario():
        async with AsyncExitStack() as stack:
            nodes = await network(stack, len(DISTANCES) + 1)  # node 0 only bootstraps
            hosts = nodes[1:]
            for node, metres in zip(hosts, DISTANCES):
                await node.publish(make_ad(host=node.identity.public_key, geohash=geohash_north(metres)))
            # a newer seq replaces the older one
            await hosts[0].publish(make_ad(host=hosts[0].identity.public_key, geohash=geohash_north(300),
                                           seq=2, notes="new cable"))
            # an expired ad, and an ad its serving peer did not sign, are both dropped
            await hosts[1].publish(make_ad(host=hosts[1].identity.public_key, geohash=geohash_north(400),
                                           charger_id="old", expires=NOW - 60))
            impostor = identity(999)
            forged = p.sign(impostor, make_ad(host=impostor.public_key, geohash=geohash_north(200)))
            hosts[2].board.ads["forged"] = forged

            driver = Node(identity(500), clock=nodes[0].clock)  # joins last
            await stack.enter_async_context(driver.running())
            await driver.join([nodes[0].address])
            expected_hosts = {n.identity.public_key for n, m in zip(hosts, DISTANCES) if within(m)}
            with trio.fail_after(30):  # provider records spread as the hosts re-announce
                while True:
                    results = await driver.search(QUERY)
                    assert {r.ad.message.host for r in results} <= expected_hosts  # never one from outside
                    if {r.ad.message.host for r in results} == expected_hosts:
                        break
                    await trio.sleep(0.5)

        expected = {node.identity.public_key for node, metres in zip(hosts, DISTANCES) if within(metres)}
        assert 6 <= len(expected) < len(hosts)
        found = [r.ad.message for r in results]
        assert {ad.host for ad in found} == expected  # recall 100%, nothing from outside
        assert len(found) == len(expected)
        assert all(r.distance_m <= QUERY.radius_m for r in results)
        assert [r.distance_m for r in results] == sorted(r.distance_m for r in results)
        first = next(ad for ad in found if ad.host == hosts[0].identity.public_key)
        assert (first.seq, first.notes) == (2, "new cable")
        assert all(ad.charger_id not in ("old", "forged") and ad.host != impostor.public_key for ad in found)

    run_bounded(scenario)


def framed(data):
    return varint(len(data)) + data


async def raw_exchange(client, server, payload, half_close=False):
    """Open an ad stream, send raw bytes, return the reply frame (or None at EOF)."""
    with trio.fail_after(10):
        stream = await client.host.new_stream(server.host.get_id(), [AD_PROTOCOL])
        try:
            await stream.write(payload)
            if half_close:
                await stream.close_write()
            frames = FrameStream(stream)
            try:
                return await frames.receive(p.AdList)
            except Exception as error:  # noqa: BLE001 - EOF or reset: the server closed
                return type(error).__name__
        finally:
            try:
                await stream.close()
            except StreamError:
                pass


def test_ad_protocol_refuses_bad_input_and_keeps_serving():
    async def scenario():
        async with AsyncExitStack() as stack:
            client, server = await network(stack, 2)
            await server.publish(make_ad(host=server.identity.public_key))
            replies = [
                await raw_exchange(client, server, framed(b"\xff\xfe\xfd")),
                await raw_exchange(client, server, varint(10**9)),
                await raw_exchange(client, server, framed(p.encode_frame(p.AdList(ads=())))),  # a reply kind
                await raw_exchange(client, server, b"", half_close=True),
            ]
            with trio.fail_after(10):
                ads = await fetch_ads(client.host, server.host.get_peerstore().peer_info(server.host.get_id()))
        assert replies[0].reason is p.Reason.MALFORMED
        assert replies[1].reason is p.Reason.OVERSIZE
        assert replies[2].reason is p.Reason.UNEXPECTED_TYPE
        assert replies[3] == "StreamEnded"
        assert [a.message.charger_id for a in ads] == ["driveway"]

    run_bounded(scenario)
