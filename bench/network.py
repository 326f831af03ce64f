"""Network benchmark: real py-libp2p nodes on 127.0.0.1, in one process.

    python -m bench.network                  # 20 and 50 nodes
    python -m bench.network --sizes 20 50 80

For each size: bootstrap time (every node joins through node 0, three refreshes at a
time); then, once half the nodes have published an ad and the network has had SETTLE
seconds for its first routing refreshes and re-announcements, search latency and recall
over random 2 km queries (recall against the hosts whose published cell is within the
radius), and the booking round trip against a raw libp2p echo of a frame on the same
hosts (the baseline). All nodes share one process and its two cores. Then ledger sync: a node pulls
20k entries from another, against ingesting the same envelopes locally (the baseline).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio
from libp2p.custom_types import TProtocol
from rich.console import Console
from rich.table import Table

from wattshare.ledger import LedgerStore
from wattshare.ledger._sample import EPOCH, SampleWorld, off_peak_tariff
from wattshare.node import Node
from wattshare.node._framing import FrameStream, serve, varint
from wattshare.protocol import (
    AccessInfo,
    BookingTerms,
    ChargerAd,
    Connector,
    DayOfWeek,
    Identity,
    Query,
    WeeklyWindow,
    geo,
)

ECHO = TProtocol("/wattshare-bench/echo/1.0.0")
CENTRE = (52.5200, 13.4050)
NIGHT = 1_796_511_600  # 2026-12-06 00:00 Berlin: a night in the future of the sample
SEARCHES = 20
BOOKINGS = 20
SETTLE = 25.0


def identity(label: str) -> Identity:
    return Identity(hashlib.sha256(f"bench-network/{label}".encode()).digest())


def ad_near(host: Identity, rng: random.Random) -> ChargerAd:
    north, east = rng.uniform(-5000, 5000), rng.uniform(-5000, 5000)
    lat = CENTRE[0] + north / 111_195
    lon = CENTRE[1] + east / (111_195 * 0.6088)
    return ChargerAd(
        host=host.public_key, charger_id="driveway", seq=1, expires=NIGHT + 30 * 86_400,
        geohash=geo.encode(lat, lon, 7), tz="Europe/Berlin", connector=Connector.TYPE_2, max_power_w=11_000,
        tariff=off_peak_tariff(), terms=BookingTerms(),
        availability=(WeeklyWindow(days=tuple(DayOfWeek), start="00:00", end="00:00"),),
    )


async def echo(stream) -> None:  # noqa: ANN001 - a libp2p stream
    async def respond(frames: FrameStream) -> None:
        data = await frames.read()
        await frames.stream.write(varint(len(data)) + data)

    await serve(stream, respond, 10)


async def echo_round_trip(client: Node, server: Node) -> float:
    started = time.perf_counter()
    stream = await client.host.new_stream(server.host.get_id(), [ECHO])
    payload = bytes(300)
    await stream.write(varint(len(payload)) + payload)
    await FrameStream(stream).read()
    await stream.close()
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def network_round(size: int, rng: random.Random) -> dict:
    async with AsyncExitStack() as stack:
        nodes = []
        for index in range(size):
            me = identity(f"{size}/{index}")
            node = Node(me, access=AccessInfo(address="withheld in benchmarks"))
            node.host.set_stream_handler(ECHO, echo)
            await stack.enter_async_context(node.running())
            nodes.append(node)
        started = time.perf_counter()
        limiter = trio.CapacityLimiter(3)
        async with trio.open_nursery() as nursery:
            for node in nodes[1:]:
                nursery.start_soon(node.join, [nodes[0].address], limiter)
        bootstrap = time.perf_counter() - started
        hosts = nodes[1::2]
        ads = {}
        for node in hosts:
            ads[node.identity.public_key] = (await node.publish(ad_near(node.identity, rng))).message
        await trio.sleep(SETTLE)  # the nodes' first routing refreshes and re-announcements
        drivers = nodes[2::2]
        latencies, recalls = [], []
        for _ in range(SEARCHES):
            lat = CENTRE[0] + rng.uniform(-3000, 3000) / 111_195
            lon = CENTRE[1] + rng.uniform(-3000, 3000) / (111_195 * 0.6088)
            query = Query(lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), radius_m=2000,
                          start=NIGHT + 23 * 3600, end=NIGHT + 30 * 3600)
            lat, lon = query.point
            expected = {key for key, ad in ads.items() if geo.distance_m(lat, lon, *geo.decode(ad.geohash)) <= 2000}
            driver = rng.choice(drivers)
            started = time.perf_counter()
            found = {r.ad.signer for r in await driver.search(query, now=EPOCH)}
            latencies.append(time.perf_counter() - started)
            recalls.append(len(found & expected) / len(expected) if expected else 1.0)
        echoes, bookings = [], []
        for index in range(BOOKINGS):
            host, driver = hosts[index % len(hosts)], drivers[index % len(drivers)]
            driver.host.get_peerstore().add_addrs(host.host.get_id(), host.host.get_addrs(), 600)
            echoes.append(await echo_round_trip(driver, host))
            ad = ads[host.identity.public_key]
            start = NIGHT + index * 86_400
            started = time.perf_counter()
            await driver.book(ad, start, start + 3600, spend_cap=5_000)
            bookings.append(time.perf_counter() - started)
    return {
        "bootstrap": bootstrap, "search_median": statistics.median(latencies),
        "search_p95": percentile(latencies, 0.95), "recall": min(recalls),
        "recall_mean": statistics.mean(recalls),
        "booking": statistics.median(bookings), "echo": statistics.median(echoes),
    }


async def sync_round(entries: int, workdir: Path) -> dict:
    world = SampleWorld(seed=7, hosts=20, drivers=20)
    source = LedgerStore(workdir / "source.db", world.coop.public_key)
    envelopes = [world.charter_entry().encode()] + [
        world.money(world.drivers[i % 20], 100, EPOCH + i).encode() for i in range(entries // 2)]
    for night in range(entries - len(envelopes)):
        session = world.session(world.hosts[night % 20], world.drivers[night % 20], EPOCH + night * 3600 * 5)
        envelopes.append(world.settlement_entry(session).encode())
    for start in range(0, len(envelopes), 1000):
        source.ingest(envelopes[start : start + 1000])
    local = LedgerStore(workdir / "local.db", world.coop.public_key)
    started = time.perf_counter()
    for start in range(0, len(envelopes), 1000):
        local.ingest(envelopes[start : start + 1000])
    ingest_rate = len(envelopes) / (time.perf_counter() - started)
    target = LedgerStore(workdir / "target.db", world.coop.public_key)
    a = Node(identity("sync/a"), ledger=source, sync_interval=3600, gossip=False)
    b = Node(identity("sync/b"), ledger=target, sync_interval=3600, gossip=False)
    async with AsyncExitStack() as stack:
        for node in (a, b):
            await stack.enter_async_context(node.running())
        await b.join([a.address])
        started = time.perf_counter()
        added = await b.sync.pull(b.host, a.host.get_id())
        sync_rate = added / (time.perf_counter() - started)
    assert target.sizes() == source.sizes()
    return {"entries": len(envelopes), "sync_rate": sync_rate, "ingest_rate": ingest_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50], help="network sizes (default 20 50)")
    parser.add_argument("--sync-entries", type=int, default=20_000, help="entries for the sync round")
    args = parser.parse_args()
    console = Console()
    rng = random.Random(2026)
    rows = []
    for size in args.sizes:
        console.print(f"network of {size} nodes ...")
        rows.append((size, trio.run(network_round, size, rng)))
    console.print(f"ledger sync of {args.sync_entries} entries ...")
    with tempfile.TemporaryDirectory() as tmp:
        sync = trio.run(sync_round, args.sync_entries, Path(tmp))

    table = Table(title="bench.network (one process, 127.0.0.1)")
    for column in ("nodes", "bootstrap", "search median", "search p95", "recall min / mean", "booking RTT",
                   "raw echo RTT", "booking / echo"):
        table.add_column(column, justify="right")
    for size, r in rows:
        table.add_row(str(size), f"{r['bootstrap']:.1f} s", f"{r['search_median'] * 1000:.0f} ms",
                      f"{r['search_p95'] * 1000:.0f} ms", f"{r['recall']:.0%} / {r['recall_mean']:.0%}", f"{r['booking'] * 1000:.1f} ms",
                      f"{r['echo'] * 1000:.1f} ms", f"{r['booking'] / r['echo']:.2f}x")
    console.print(table)
    ratio = sync["sync_rate"] / sync["ingest_rate"]
    console.print(f"ledger sync: {sync['entries']} entries at {sync['sync_rate']:,.0f} entries/s over libp2p, "
                  f"local ingest {sync['ingest_rate']:,.0f} entries/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
