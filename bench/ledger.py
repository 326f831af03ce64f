"""Ledger benchmark: build a neighbourhood ledger, then time append, ingest and audit.

    python -m bench.ledger                 # 100k entries from 200 members
    python -m bench.ledger --entries 20000 # quicker

The baseline is raw PyNaCl Ed25519 verification on this machine, in this run. Audit
rates are given per entry and per signature check; a settlement entry holds two
signatures to check (the host's entry, the driver's booking request: the host's own
receipts inside are bound by the entry signature), an ack one, a deposit two (the
treasurer's entry, the co-op's embedded charter).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nacl.signing import SigningKey
from rich.console import Console
from rich.table import Table

from wattshare.ledger import EntryKind, LedgerStore, MoneyMove, SettlementClaim, audit
from wattshare.protocol import SettlementAck
from wattshare.testing import EPOCH, SampleWorld

SEED = 2026
SIGNATURES = {EntryKind.SETTLEMENT: 2, EntryKind.ACK: 1, EntryKind.DEPOSIT: 2, EntryKind.COOP: 1}


def raw_verify_rate(seconds: float = 2.0) -> float:
    key = SigningKey(bytes(range(32)))
    message = b"x" * 300
    signature = key.sign(message).signature
    verify = key.verify_key.verify
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(500):
            verify(message, signature)
        count += 500
    return count / (time.perf_counter() - started)


def host_sessions(args: tuple[int, int, int, int]) -> list[tuple[SettlementClaim, int]]:
    """Worker: `count` finished sessions at host `host`, drivers round-robin."""
    host, count, hosts, drivers = args
    world = SampleWorld(SEED, hosts=hosts, drivers=drivers)
    out = []
    for night in range(count):
        driver = (host + night) % drivers
        start = EPOCH + night * 86_400 + 22 * 3600
        session = world.session(world.hosts[host], world.drivers[driver], start, spend_cap=10_000)
        out.append((SettlementClaim(booking=session.booking, receipts=session.receipts,
                                    settlement=session.settlement), driver))
    return out


def build(store: LedgerStore, world: SampleWorld, settlements: int, workers: int) -> tuple[int, float, dict]:
    """Write the whole ledger through `LedgerStore.append`; returns (entries, seconds, kinds)."""
    hosts, drivers = len(world.hosts), len(world.drivers)
    per_host = settlements // hosts
    with ProcessPoolExecutor(max_workers=workers) as pool:
        made = list(pool.map(host_sessions, [(h, per_host, hosts, drivers) for h in range(hosts)]))
    kinds = {kind: 0 for kind in SIGNATURES}
    started = time.perf_counter()
    [world.charter] = store.append(world.coop, [(EntryKind.COOP, world.charter_body())], t=EPOCH)
    deposits = [(EntryKind.DEPOSIT, MoneyMove(charter=world.charter, member=d.public_key, amount=10**7, currency="EUR"))
                for d in world.drivers]
    store.append(world.treasurer, deposits, t=EPOCH + 60)
    kinds[EntryKind.COOP], kinds[EntryKind.DEPOSIT] = 1, len(deposits)
    acks: dict[int, list] = {d: [] for d in range(drivers)}
    for host, claims in enumerate(made):
        for batch_start in range(0, len(claims), 100):
            batch = claims[batch_start : batch_start + 100]
            store.append(world.hosts[host], [(EntryKind.SETTLEMENT, claim) for claim, _ in batch], t=EPOCH + 3600)
            for claim, driver in batch:
                acks[driver].append(SettlementAck(booking_id=claim.booking.id, settlement=claim.settlement.digest,
                                                  t=claim.settlement.message.t + 600))
        kinds[EntryKind.SETTLEMENT] += len(claims)
    for driver, items in acks.items():
        for batch_start in range(0, len(items), 100):
            store.append(world.drivers[driver], [(EntryKind.ACK, a) for a in items[batch_start : batch_start + 100]],
                         t=EPOCH + 7200)
        kinds[EntryKind.ACK] += len(items)
    return sum(kinds.values()), time.perf_counter() - started, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="about this many entries (default 100000)")
    parser.add_argument("--members", type=int, default=200, help="hosts + drivers (default 200)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes for parallel audit")
    args = parser.parse_args()
    console = Console()
    hosts = args.members // 2
    drivers = args.members - hosts
    settlements = (args.entries - drivers - 1) // 2  # each settlement is acked: two entries
    world = SampleWorld(SEED, hosts=hosts, drivers=drivers)

    console.print("baseline: raw PyNaCl verify on one core ...")
    raw = raw_verify_rate()
    with tempfile.TemporaryDirectory() as tmp:
        source = LedgerStore(Path(tmp) / "source.db", world.coop.public_key, clock=world.clock)
        console.print(f"building {settlements} sessions at {hosts} hosts for {drivers} drivers ...")
        entries, append_seconds, kinds = build(source, world, settlements, args.workers)
        envelopes = [row[0] for row in source.db.execute("SELECT envelope FROM entries ORDER BY rowid")]
        source.close()

        console.print(f"ingesting {entries} entries into a fresh store ...")
        path = Path(tmp) / "ledger.db"
        target = LedgerStore(path, world.coop.public_key, clock=world.clock)
        started = time.perf_counter()
        for batch_start in range(0, len(envelopes), 1000):
            target.ingest(envelopes[batch_start : batch_start + 1000])
        ingest_seconds = time.perf_counter() - started
        target.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        target.close()
        db_bytes = path.stat().st_size

        console.print("auditing on one core, then on all ...")
        single = audit(path, workers=1)
        parallel = audit(path, workers=args.workers)
    assert single.ok and parallel.ok, (single.violations[:3], parallel.violations[:3])
    assert single.violations == parallel.violations and single.balances == parallel.balances

    signatures = sum(SIGNATURES[kind] * n for kind, n in kinds.items())
    per_entry = signatures / entries
    table = Table(title=f"bench.ledger: {entries} entries, {args.members} members "
                        f"({kinds[EntryKind.SETTLEMENT]} settlements of 13 receipts, {kinds[EntryKind.ACK]} acks)")
    for column in ("measure", "entries/s", "signature checks/s", "ratio to raw verify"):
        table.add_column(column, justify="right" if column != "measure" else "left")

    def row(name: str, seconds: float, checks: bool = True) -> None:
        rate = entries / seconds
        sig_rate = rate * per_entry
        table.add_row(name, f"{rate:,.0f}", f"{sig_rate:,.0f}" if checks else "-",
                      f"{sig_rate / raw:.2f}x" if checks else "-")

    table.add_row("raw PyNaCl verify, 1 core (baseline)", "-", f"{raw:,.0f}", "1.00x")
    row("append (sign + check + store)", append_seconds, checks=False)
    row("ingest (verify + check + store)", ingest_seconds)
    row("audit, 1 process", single.seconds)
    row(f"audit, {args.workers} processes", parallel.seconds)
    console.print(table)
    speedup = single.seconds / parallel.seconds
    million = 1_000_000 / (entries / parallel.seconds)
    console.print(f"parallel audit speed-up: {speedup:.2f}x on {args.workers} processes")
    console.print(f"DB size per entry: {db_bytes / entries:,.0f} bytes ({db_bytes / 2**20:,.1f} MiB in all)")
    console.print(f"1M entries audit, extrapolated from this run: {million:,.0f} s on {args.workers} processes")


if __name__ == "__main__":
    main()
