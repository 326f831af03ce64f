"""Network benchmark: real py-libp2p nodes on 127.0.0.1, one process per node.

    python -m bench.network                  # 20 and 50 nodes
    python -m bench.network --sizes 20 50 80

For each size: bootstrap time (the first node starts alone, the others are started
WAVE at a time, each joining through the first: `bench.peer` processes); then, once
half the nodes have published an ad and the network has had SETTLE seconds for its
first routing refreshes and re-announcements, a driver joins last (in this process)
and runs random 2 km searches: latency and recall (against the hosts whose published
cell is within the radius; no host outside may be found), then books at the hosts,
against a raw libp2p echo of a frame on the same hosts (the baseline). Then ledger
sync: a node pulls 20k entries from another, against ingesting the same envelopes
locally (the baseline).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import multiaddr
import trio
from libp2p.peer.id import ID
from rich.console import Console
from rich.table import Table

from wattshare.ledger import LedgerStore
from wattshare.node import Node
from wattshare.node._framing import FrameStream, varint
from wattshare.node._host import peer_of
from wattshare.protocol import ChargerAd, Query, geo
from wattshare.testing import EPOCH, SampleWorld

from .peer import ECHO, NIGHT, ad_at, bench_node, identity

CENTRE = (52.5200, 13.4050)
SEARCHES = 20
BOOKINGS = 20
SETTLE = 30.0
WAVE = 4
START_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parent.parent


def near_centre(rng: random.Random, metres: float) -> tuple[float, float]:
    north, east = rng.uniform(-metres, metres), rng.uniform(-metres, metres)
    return CENTRE[0] + north / 111_195, CENTRE[1] + east / (111_195 * 0.6088)


async def echo_round_trip(client: Node, server: ID) -> float:
    started = time.perf_counter()
    stream = await client.host.new_stream(server, [ECHO])
    payload = bytes(300)
    await stream.write(varint(len(payload)) + payload)
    await FrameStream(stream).read()
    await stream.close()
    return time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@asynccontextmanager
async def peer_processes() -> AsyncIterator[list[trio.Process]]:
    """Every peer process started in the block is ended with it (stdin closed, then killed)."""
    processes: list[trio.Process] = []
    try:
        yield processes
    finally:
        with trio.CancelScope(shield=True):
            for process in processes:
                await process.stdin.aclose()
            with trio.move_on_after(10):
                for process in processes:
                    await process.wait()
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def start_peer(processes: list[trio.Process], label: str, bootstrap: str | None,
                     position: tuple[float, float] | None) -> str:
    """Start a `bench.peer`; its address once it is ready."""
    argv = [sys.executable, "-m", "bench.peer", label]
    if bootstrap:
        argv += ["--bootstrap", bootstrap]
    if position:
        argv += ["--ad", f"{position[0]},{position[1]}"]
    process = await trio.lowlevel.open_process(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.DEVNULL)
    processes.append(process)
    line = b""
    with trio.fail_after(START_TIMEOUT):
        while not line.endswith(b"\n"):
            chunk = await process.stdout.receive_some(1024)
            if not chunk:
                raise RuntimeError(f"peer {label} exited before it was ready")
            line += chunk
    word, address = line.decode().split()
    assert word == "ready", line
    return address


async def network_round(size: int, rng: random.Random) -> dict:
    ads: dict[bytes, ChargerAd] = {}
    addresses: dict[bytes, str] = {}
    async with peer_processes() as processes:
        started = time.perf_counter()
        first = await start_peer(processes, f"{size}/0", None, None)

        async def peer(index: int) -> None:
            label = f"{size}/{index}"
            position = near_centre(rng, 5000) if index % 2 else None
            address = await start_peer(processes, label, first, position)
            if position:
                key = identity(label).public_key
                ads[key], addresses[key] = ad_at(identity(label), *position), address

        for wave in range(1, size - 1, WAVE):
            async with trio.open_nursery() as nursery:
                for index in range(wave, min(wave + WAVE, size - 1)):
                    nursery.start_soon(peer, index)
        bootstrap = time.perf_counter() - started
        await trio.sleep(SETTLE)  # the nodes' first routing refreshes and re-announcements
        driver = bench_node(f"{size}/driver")
        async with driver.running():
            await driver.join([first])
            latencies, recalls, strays = [], [], 0
            for _ in range(SEARCHES):
                lat, lon = near_centre(rng, 3000)
                query = Query(lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), radius_m=2000,
                              start=NIGHT + 23 * 3600, end=NIGHT + 30 * 3600)
                lat, lon = query.point
                expected = {key for key, ad in ads.items()
                            if geo.distance_m(lat, lon, *geo.decode(ad.geohash)) <= 2000}
                started = time.perf_counter()
                found = {r.ad.signer for r in await driver.search(query, now=EPOCH)}
                latencies.append(time.perf_counter() - started)
                recalls.append(len(found & expected) / len(expected) if expected else 1.0)
                strays += len(found - expected)
            echoes, bookings = [], []
            hosts = sorted(ads)
            for index in range(BOOKINGS):
                host = hosts[index % len(hosts)]
                driver.host.get_peerstore().add_addrs(peer_of(host), [multiaddr.Multiaddr(addresses[host])], 600)
                echoes.append(await echo_round_trip(driver, peer_of(host)))
                start = NIGHT + index * 86_400
                started = time.perf_counter()
                await driver.book(ads[host], start, start + 3600, spend_cap=5_000)
                bookings.append(time.perf_counter() - started)
    return {
        "bootstrap": bootstrap, "search_median": statistics.median(latencies),
        "search_p95": percentile(latencies, 0.95), "recall": min(recalls),
        "recall_mean": statistics.mean(recalls), "strays": strays,
        "booking": statistics.median(bookings), "echo": statistics.median(echoes),
    }


async def sync_round(entries: int, workdir: Path) -> dict:
    world = SampleWorld(seed=7, hosts=20, drivers=20)
    source = LedgerStore(workdir / "source.db", world.coop.public_key, clock=world.clock)
    envelopes = [world.charter_entry().encode()] + [
        world.money(world.drivers[i % 20], 100, EPOCH + i).encode() for i in range(entries // 2)]
    for night in range(entries - len(envelopes)):
        session = world.session(world.hosts[night % 20], world.drivers[night % 20], EPOCH + night * 3600 * 5)
        envelopes.append(world.settlement_entry(session).encode())
    for start in range(0, len(envelopes), 1000):
        source.ingest(envelopes[start : start + 1000])
    local = LedgerStore(workdir / "local.db", world.coop.public_key, clock=world.clock)
    started = time.perf_counter()
    for start in range(0, len(envelopes), 1000):
        local.ingest(envelopes[start : start + 1000])
    ingest_rate = len(envelopes) / (time.perf_counter() - started)
    target = LedgerStore(workdir / "target.db", world.coop.public_key, clock=world.clock)
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
    console = Console(width=150)
    rng = random.Random(2026)
    rows = []
    for size in args.sizes:
        console.print(f"network of {size} nodes ...")
        rows.append((size, trio.run(network_round, size, rng)))
    console.print(f"ledger sync of {args.sync_entries} entries ...")
    with tempfile.TemporaryDirectory() as tmp:
        sync = trio.run(sync_round, args.sync_entries, Path(tmp))

    table = Table(title="bench.network (one process per node, 127.0.0.1)")
    for column in ("nodes", "bootstrap", "search median", "search p95", "recall min / mean", "found outside",
                   "booking RTT", "raw echo RTT", "booking / echo"):
        table.add_column(column, justify="right")
    for size, r in rows:
        table.add_row(str(size), f"{r['bootstrap']:.1f} s", f"{r['search_median'] * 1000:.0f} ms",
                      f"{r['search_p95'] * 1000:.0f} ms", f"{r['recall']:.0%} / {r['recall_mean']:.0%}",
                      str(r["strays"]), f"{r['booking'] * 1000:.1f} ms", f"{r['echo'] * 1000:.1f} ms",
                      f"{r['booking'] / r['echo']:.2f}x")
    console.print(table)
    ratio = sync["sync_rate"] / sync["ingest_rate"]
    console.print(f"ledger sync: {sync['entries']} entries at {sync['sync_rate']:,.0f} entries/s over libp2p, "
                  f"local ingest {sync['ingest_rate']:,.0f} entries/s: {ratio:.2f}x")


if __name__ == "__main__":
    main()
