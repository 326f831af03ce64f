"""Joining a co-op at scale: a new light wallet's first sync, and a light host's credit check of it.

    python -m bench.join                      # 1M entries, 1,000 members (the build takes a while)
    python -m bench.join --entries 50000      # quicker

A co-op node serves the whole ledger (full, with its witness's latest checkpoint) on
127.0.0.1. A new member, admitted with a deposit just before that checkpoint, starts a
light wallet node with an empty ledger and joins: the time until it can book (it has
synced what it needs: it knows it is admitted, its credit and its balance) and the
bytes it stored. A new light host then takes its booking; its credit check (pull the
driver's feed from the driver's node, fetch the co-op's proof of the driver's account,
count) is timed on its own, several times. The baseline, measured in the same run: the
same wallet joining with `--full`, replicating every entry, for a bounded time, its rate
and bytes per entry extrapolated to the whole ledger. A second table: a second co-op
node holding the same ledger and the first, having pulled each other, pull again with
nothing new, each `Have` telling only what changed since the last pull, against the
baseline of telling everything (as every pull did before marks).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from wattshare.ledger import EntryKind, LedgerStore, MoneyMove, Replicator, light_credit, sign_checkpoint
from wattshare.node import Clock, Node
from wattshare.node._host import peer_of
from wattshare.protocol import AccessInfo, BookingTerms, ChargerAd, Connector, DayOfWeek, Identity, WeeklyWindow
from wattshare.testing import SampleWorld, off_peak_tariff

from .ledger import LATER, SEED, build

NOW = LATER  # the nodes' clock starts here: after every entry of the built ledger
ACCESS = AccessInfo(address="12 Acacia Avenue", instructions="wallbox by the garage", code="4711")
TARGETS = {"ready": 10.0, "bytes": 20 * 2**20, "credit": 0.100}


def clock() -> float:
    return float(NOW)


def build_ledger(path: Path, entries: int, members: int, workers: int) -> tuple[SampleWorld, Identity, Identity]:
    """The co-op's ledger: `members` in all (two of them newcomers: a wallet with a
    deposit and a host), about `entries` entries, and the witness's checkpoint of it."""
    hosts = (members - 2) // 2
    world = SampleWorld(SEED, hosts=hosts, drivers=members - 2 - hosts)
    store = LedgerStore(path, world.coop.public_key, clock=clock)
    settlements = max(1, (entries - 2 * members) // 2)
    build(store, world, settlements, workers)
    wallet, host = world.identity("newcomer", 0), world.identity("newcomer", 1)
    charter = world.charter_body()
    store.append(world.coop, [(EntryKind.ADMIT, charter.admission(i.public_key)) for i in (wallet, host)], t=NOW - 3600)
    store.append(world.treasurer, [(EntryKind.DEPOSIT, MoneyMove(charter=world.charter, member=wallet.public_key,
                                                                  amount=5_000, currency="EUR"))], t=NOW - 3000)
    sign_checkpoint(store, world.witness, world.charter, NOW - 60)
    store.close()
    return world, wallet, host


def charger_ad(host: Identity) -> ChargerAd:
    return ChargerAd(host=host.public_key, charger_id="driveway", seq=1, expires=NOW + 30 * 86_400, geohash="u33dc0r",
                     country="DEU", tz="Europe/Berlin", connector=Connector.TYPE_2, max_power_w=11_000,
                     tariff=off_peak_tariff(), terms=BookingTerms(),
                     availability=(WeeklyWindow(days=tuple(DayOfWeek), start="00:00", end="00:00"),))


def stored(*paths: Path) -> int:
    """Bytes on disk of SQLite files with their write-ahead logs."""
    return sum(p.stat().st_size for path in paths for p in (path, Path(f"{path}-wal")) if p.exists())


async def join_light(coop: Node, tmp: Path, world: SampleWorld, wallet_id: Identity, host_id: Identity,
                     node_clock: Clock) -> dict:
    """The light wallet's join and the light host's credit check of it (see the module doc)."""
    coop_peer = peer_of(coop.identity.public_key)
    async with AsyncExitStack() as stack:
        started = time.perf_counter()
        wallet = Node(wallet_id, state=tmp / "wallet.db", clock=node_clock, gossip=False, full=False,
                      ledger=LedgerStore(tmp / "wallet-ledger.db", world.coop.public_key))
        await stack.enter_async_context(wallet.running())
        await wallet.join([coop.address])
        await wallet.sync.pull(wallet.host, coop_peer)  # type: ignore[union-attr]
        ready = time.perf_counter() - started
        standing = wallet.balance()
        assert standing["credit_limit"] > 0 and standing["balances"].get("EUR") == 5_000, standing
        host = Node(host_id, state=tmp / "host.db", access=ACCESS, clock=node_clock, gossip=False, full=False,
                    ledger=LedgerStore(tmp / "host-ledger.db", world.coop.public_key))
        await stack.enter_async_context(host.running())
        await host.join([coop.address])
        await host.sync.pull(host.host, coop_peer)  # type: ignore[union-attr]
        ad = (await host.publish(charger_ad(host_id))).message
        start = NOW + 86_400
        booked = time.perf_counter()
        booking = await wallet.book(ad, start, start + 6 * 3600, spend_cap=2_000)
        booking_seconds = time.perf_counter() - booked
        assert booking.confirmation.signer == host_id.public_key
        checks = []
        for _ in range(5):
            began = time.perf_counter()
            await host._fetch_feed(wallet_id.public_key)
            await host._fetch_proof(wallet_id.public_key)
            light_credit(host.ledger, wallet_id.public_key, "EUR")  # type: ignore[arg-type]
            checks.append(time.perf_counter() - began)
        entries = sum(wallet.ledger.sizes().values())  # type: ignore[union-attr]
        wallet_bytes = stored(tmp / "wallet-ledger.db", tmp / "wallet.db")
    return {"ready": ready, "bytes": wallet_bytes, "entries": entries, "credit": statistics.median(checks),
            "booking": booking_seconds}


async def join_full(coop: Node, tmp: Path, world: SampleWorld, wallet_id: Identity, node_clock: Clock,
                    seconds: float) -> dict:
    """The baseline: the same wallet with `--full`, replicating for at most `seconds`."""
    wallet = Node(wallet_id, state=tmp / "full-wallet.db", clock=node_clock, gossip=False,
                  ledger=LedgerStore(tmp / "full-ledger.db", world.coop.public_key))
    async with wallet.running():
        await wallet.join([coop.address])
        started = time.perf_counter()
        with trio.move_on_after(seconds):
            while await wallet.sync.pull(wallet.host, peer_of(coop.identity.public_key)):  # type: ignore[union-attr]
                pass
        spent = time.perf_counter() - started
        entries = sum(wallet.ledger.sizes().values())  # type: ignore[union-attr]
    return {"seconds": spent, "entries": entries, "bytes": stored(tmp / "full-ledger.db", tmp / "full-wallet.db")}


async def routine_pulls(coop: Node, tmp: Path, world: SampleWorld, node_clock: Clock, rounds: int = 5) -> dict:
    """A second co-op node holding the same ledger (a copy of the file), once the two have
    pulled each other, pulls again with nothing new: the bytes of the two `Have`s and the
    median time of a pull, each way telling what changed since the last pull (marks) and,
    the baseline, telling everything."""
    assert coop.sync is not None and coop.ledger is not None
    with sqlite3.connect(tmp / "mirror.db") as copy:
        coop.ledger.db.conn.backup(copy)
    mirror = Node(world.identity("mirror-node"), ledger=LedgerStore(tmp / "mirror.db", world.coop.public_key),
                  clock=node_clock, gossip=False, sync_interval=3600)
    async with mirror.running():
        sync, peer = mirror.sync, peer_of(coop.identity.public_key)
        assert sync is not None and mirror.ledger is not None
        await mirror.join([coop.address])
        for _ in range(2):  # each pulls the other twice: the second sends back the mark of the first
            await sync.pull(mirror.host, peer)
            await coop.sync.pull(coop.host, peer_of(mirror.identity.public_key))
        only, since = sync.their_wish[peer]
        mark = sync.marks[peer][0]
        marked_bytes = len(Replicator(mirror.ledger).have(only, since, ask_since=mark).encode()) + len(
            Replicator(coop.ledger).have(None, mark).encode())
        whole_bytes = len(Replicator(mirror.ledger).have().encode()) + len(Replicator(coop.ledger).have().encode())
        timings: dict[str, list[float]] = {"marked": [], "whole": []}
        for _ in range(rounds):
            for way, times in timings.items():
                remembered = dict(sync.their_wish)
                if way == "whole":
                    sync.their_wish.clear()  # as before marks: its Have tells all, and asks for all
                began = time.perf_counter()
                assert await sync.pull(mirror.host, peer, whole=way == "whole") == 0
                times.append(time.perf_counter() - began)
                sync.their_wish.update(remembered)
    return {"marked": statistics.median(timings["marked"]), "whole": statistics.median(timings["whole"]),
            "marked_bytes": marked_bytes, "whole_bytes": whole_bytes, "feeds": len(coop.ledger.sizes())}


async def scenario(path: Path, tmp: Path, world: SampleWorld, wallet_id: Identity, host_id: Identity,
                   baseline_seconds: float) -> tuple[dict, dict, int]:
    node_clock = Clock(speed=1.0, origin=NOW)
    ledger = LedgerStore(path, world.coop.public_key)
    total = sum(ledger.sizes().values())
    coop = Node(world.identity("coop-node"), ledger=ledger, clock=node_clock, gossip=False, sync_interval=3600)
    async with coop.running():
        light = await join_light(coop, tmp, world, wallet_id, host_id, node_clock)
        full = await join_full(coop, tmp, world, world.identity("newcomer", 2), node_clock, baseline_seconds)
        full["routine"] = await routine_pulls(coop, tmp, world, node_clock)
    return light, full, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="about this many entries (default 1000000)")
    parser.add_argument("--members", type=int, default=1_000, help="members of the co-op (default 1000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes that build the ledger")
    parser.add_argument("--baseline-seconds", type=float, default=30.0, help="how long the --full wallet syncs")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "coop.db"
        console.print(f"building a co-op ledger of about {args.entries:,} entries, {args.members:,} members ...")
        started = time.perf_counter()
        world, wallet_id, host_id = build_ledger(path, args.entries, args.members, args.workers)
        console.print(f"built in {time.perf_counter() - started:,.0f} s; a new wallet joins, a new host books it ...")
        light, full, total = trio.run(scenario, path, Path(tmp), world, wallet_id, host_id, args.baseline_seconds)
        coop_bytes = stored(path)

    rate = full["entries"] / full["seconds"]
    full_seconds, full_bytes = total / rate, coop_bytes
    table = Table(title=f"bench.join: a new wallet joins a co-op of {total:,} entries and {args.members:,} members")
    for column in ("measure", "light wallet", "--full wallet (baseline)", "light / full", "target", "met"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    table.add_row("time until it can book", f"{light['ready']:.2f} s",
                  f"{full_seconds:,.0f} s (extrapolated: {rate:,.0f} entries/s)",
                  f"{light['ready'] / full_seconds:.4f}x", "< 10 s", "yes" if light["ready"] < TARGETS["ready"] else "no")
    table.add_row("bytes it stored", f"{light['bytes'] / 2**20:,.2f} MiB ({light['entries']:,} entries)",
                  f"{full_bytes / 2**20:,.0f} MiB (the co-op's file)", f"{light['bytes'] / full_bytes:.4f}x",
                  "< 20 MB", "yes" if light["bytes"] < TARGETS["bytes"] else "no")
    table.add_row("host's credit check of it (median of 5)", f"{light['credit'] * 1000:.0f} ms", "-", "-", "< 100 ms",
                  "yes" if light["credit"] < TARGETS["credit"] else "no")
    table.add_row("its first booking, round trip", f"{light['booking'] * 1000:.0f} ms", "-", "-", "-", "-")
    console.print(table)
    routine = full["routine"]
    pulls = Table(title=f"a routine pull between two full nodes, nothing new ({routine['feeds']:,} feeds)")
    for column in ("measure", "told since the last pull", "told everything (baseline)", "ratio"):
        pulls.add_column(column, justify="left" if column == "measure" else "right")
    pulls.add_row("bytes of the two Haves", f"{routine['marked_bytes']:,}", f"{routine['whole_bytes']:,}",
                  f"{routine['marked_bytes'] / routine['whole_bytes']:.4f}x")
    pulls.add_row("one pull, round trip (median of 5)", f"{routine['marked'] * 1000:.1f} ms",
                  f"{routine['whole'] * 1000:.1f} ms", f"{routine['marked'] / routine['whole']:.4f}x")
    console.print(pulls)


if __name__ == "__main__":
    main()
