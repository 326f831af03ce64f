"""Ledger benchmark: build a neighbourhood ledger, then time append, ingest and audit.

    python -m bench.ledger                 # 100k entries from 200 members
    python -m bench.ledger --entries 20000 # quicker

The baseline is raw PyNaCl Ed25519 verification on this machine, in this run. The co-op's
witness checkpoints the ledger once a day's worth of entries (`--day`) as it grows, so
the audits recompute every member's account at each checkpoint. After the full audits
(one process, then all), a day of new entries and its checkpoint are added and audited
incrementally from the mark the first audit left. A second table holds issue 17's
targets beside the figures measured before it. Audit rates are given per entry and per
signature check; a settlement entry holds two signatures to check (the host's entry,
the driver's booking request: the host's own receipts inside are bound by the entry
signature), an ack one, an admission one, a deposit and a checkpoint two (the entry,
the co-op's embedded charter).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from nacl.signing import SigningKey
from rich.console import Console
from rich.table import Table

from wattshare.ledger import EntryKind, LedgerStore, MoneyMove, SettlementClaim, audit, sign_checkpoint
from wattshare.protocol import SettlementAck
from wattshare.testing import EPOCH, SampleWorld

SEED = 2026
LATER = EPOCH + 20 * 365 * 86_400  # the ledgers' clock: after every night this bench dates an entry


def clock() -> float:
    return float(LATER)
SIGNATURES = {EntryKind.SETTLEMENT: 2, EntryKind.ACK: 1, EntryKind.DEPOSIT: 2, EntryKind.COOP: 1, EntryKind.ADMIT: 1,
              EntryKind.CHECKPOINT: 2}


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


def host_sessions(args: tuple[int, int, int, int, int]) -> list[tuple[SettlementClaim, int]]:
    """Worker: `count` finished sessions at host `host` from night `first` on, drivers round-robin."""
    host, first, count, hosts, drivers = args
    world = SampleWorld(SEED, hosts=hosts, drivers=drivers)
    out = []
    for night in range(first, first + count):
        driver = (host + night) % drivers
        start = EPOCH + night * 86_400 + 22 * 3600
        session = world.session(world.hosts[host], world.drivers[driver], start, spend_cap=10_000)
        out.append((SettlementClaim(booking=session.booking, receipts=session.receipts,
                                    settlement=session.settlement), driver))
    return out


def _bounded(pool: ProcessPoolExecutor, chunks: list[tuple[int, int, int, int, int]]) -> Iterator[list]:
    """`pool.map(host_sessions, chunks)` with at most four chunks in flight: made sessions
    wait for the store, not in memory."""
    pending: deque[Future[list]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(host_sessions, chunk))
        if len(pending) >= 4:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def settle(store: LedgerStore, world: SampleWorld, nights: range, pool: ProcessPoolExecutor,
           kinds: dict[EntryKind, int]) -> None:
    """Append every host's sessions of `nights` (as they are made, 100 at a time: never all
    in memory), then every driver's acks of them, through `LedgerStore.append`."""
    hosts, drivers = len(world.hosts), len(world.drivers)
    chunks = [(h, first, min(100, nights.stop - first), hosts, drivers)
              for h in range(hosts) for first in range(nights.start, nights.stop, 100)]
    acks: dict[int, list[SettlementAck]] = {d: [] for d in range(drivers)}
    for (host, *_), made in zip(chunks, _bounded(pool, chunks)):
        last = max(claim.settlement.message.t for claim, _ in made)
        store.append(world.hosts[host], [(EntryKind.SETTLEMENT, claim) for claim, _ in made], t=last + 60)
        for claim, driver in made:
            acks[driver].append(SettlementAck(booking_id=claim.booking.id, settlement=claim.settlement.digest,
                                              t=claim.settlement.message.t + 600))
        kinds[EntryKind.SETTLEMENT] += len(made)
    for driver, items in acks.items():
        for batch_start in range(0, len(items), 100):
            batch = items[batch_start : batch_start + 100]
            store.append(world.drivers[driver], [(EntryKind.ACK, a) for a in batch], t=max(a.t for a in batch))
        kinds[EntryKind.ACK] += len(items)


def build(store: LedgerStore, world: SampleWorld, settlements: int, workers: int,
          checkpoints: int = 1) -> tuple[int, float, dict]:
    """Write the whole ledger through `LedgerStore.append`, with about `checkpoints` witness
    checkpoints spread over it; returns (entries, seconds, kinds)."""
    kinds = {kind: 0 for kind in SIGNATURES}
    started = time.perf_counter()
    charter = world.charter_body()
    admissions = [(EntryKind.ADMIT, charter.admission(i.public_key)) for i in world.hosts + world.drivers]
    world.charter, *_ = store.append(world.coop, [(EntryKind.COOP, charter), *admissions], t=EPOCH)
    deposits = [(EntryKind.DEPOSIT, MoneyMove(charter=world.charter, member=d.public_key, amount=10**9, currency="EUR"))
                for d in world.drivers]
    store.append(world.treasurer, deposits, t=EPOCH + 60)
    kinds[EntryKind.COOP], kinds[EntryKind.ADMIT], kinds[EntryKind.DEPOSIT] = 1, len(admissions), len(deposits)
    nights = settlements // len(world.hosts)
    step = max(1, -(-nights // checkpoints))  # nights between the witness's checkpoints
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for first in range(0, nights, step):
            witness_after(store, world, range(first, min(first + step, nights)), pool, kinds)
    return sum(kinds.values()), time.perf_counter() - started, kinds


def witness_after(store: LedgerStore, world: SampleWorld, nights: range, pool: ProcessPoolExecutor,
                  kinds: dict[EntryKind, int]) -> None:
    """Settle `nights`, then the co-op's witness checkpoints the ledger (its accounts)."""
    settle(store, world, nights, pool, kinds)
    sign_checkpoint(store, world.witness, world.charter, EPOCH + nights.stop * 86_400)
    kinds[EntryKind.CHECKPOINT] += 1


def ingest(source: LedgerStore, path: Path, world: SampleWorld) -> float:
    """Ingest every entry of `source` into a fresh store at `path`, 1000 at a time as a
    peer's batches come; returns the seconds spent in ingest."""
    target = LedgerStore(path, world.coop.public_key, clock=clock)
    seconds = 0.0
    cursor = source.db.execute("SELECT unpacked(envelope) FROM entries ORDER BY rowid")
    while batch := [row[0] for row in cursor.fetchmany(1000)]:
        started = time.perf_counter()
        target.ingest(batch)
        seconds += time.perf_counter() - started
    target.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    target.close()
    return seconds


def one_more_day(path: Path, world: SampleWorld, first_night: int, entries: int, workers: int) -> int:
    """Append a day of about `entries` new entries (sessions settled and acked) to the
    ledger at `path`; returns how many."""
    kinds = {kind: 0 for kind in SIGNATURES}
    store = LedgerStore(path, world.coop.public_key, clock=clock)
    nights = max(1, entries // 2 // len(world.hosts))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        witness_after(store, world, range(first_night, first_night + nights), pool, kinds)
    store.close()
    return sum(kinds.values())


BEFORE = {  # issue 17's run before this work: 100k entries, 200 members, raw verify then 25,916/s on this machine
    "audit": "0.21x", "share": "80%", "ingest": "3,252/s", "bytes": "3,111", "million": "152 s (extrapolated)",
    "incremental": "- (none)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="about this many entries (default 100000)")
    parser.add_argument("--members", type=int, default=200, help="hosts + drivers (default 200)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes for parallel audit")
    parser.add_argument("--day", type=int, default=5_000, help="entries of the day the incremental audit checks")
    parser.add_argument("--checkpoints", type=int, default=0,
                        help="witness checkpoints spread over the ledger (default: one a day's worth, --day entries)")
    args = parser.parse_args()
    console = Console()
    hosts = args.members // 2
    drivers = args.members - hosts
    settlements = (args.entries - drivers - 1) // 2  # each settlement is acked: two entries
    world = SampleWorld(SEED, hosts=hosts, drivers=drivers)

    console.print("baseline: raw PyNaCl verify on one core ...")
    raw = raw_verify_rate()
    with tempfile.TemporaryDirectory() as tmp:
        source = LedgerStore(Path(tmp) / "source.db", world.coop.public_key, clock=clock)
        console.print(f"building {settlements} sessions at {hosts} hosts for {drivers} drivers ...")
        checkpoints = args.checkpoints or max(1, args.entries // args.day)
        entries, append_seconds, kinds = build(source, world, settlements, args.workers, checkpoints)
        console.print(f"ingesting {entries} entries into a fresh store ...")
        path = Path(tmp) / "ledger.db"
        ingest_seconds = ingest(source, path, world)
        source.close()
        db_bytes = path.stat().st_size

        console.print("auditing on one core, then on all ...")
        mark = Path(tmp) / "ledger.db.audit-mark"
        raw_beside = raw_verify_rate()  # the machine's pace drifts: the audit ratio takes the baseline beside it
        single = audit(path, workers=1, mark=mark)
        raw_beside = (raw_beside + raw_verify_rate()) / 2
        parallel = audit(path, workers=args.workers)
        console.print(f"adding a day of about {args.day} entries, then auditing incrementally ...")
        day = one_more_day(path, world, settlements // hosts, args.day, args.workers)
        incremental = audit(path, workers=1, mark=mark)
    assert single.ok and parallel.ok and incremental.ok, (single.violations[:3], incremental.violations[:3])
    assert single.violations == parallel.violations and single.balances == parallel.balances
    assert (incremental.since, incremental.entries) == (entries, day), (incremental.since, incremental.entries, day)

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

    audit_ratio = entries / single.seconds * per_entry / raw_beside
    measured = args.entries >= 1_000_000  # a real run of that size (the build rounds to whole sessions)
    million = parallel.seconds * 1_000_000 / entries
    targets = Table(title="issue 17's targets (before: the issue's run, 100k entries, raw verify 25,916/s then)")
    for column in ("target", "before", "this run", "met"):
        targets.add_column(column, justify="left" if column == "target" else "right")

    def target(name: str, before: str, now: str, met: bool) -> None:
        targets.add_row(name, before, now, "yes" if met else "no")

    target(f"single-process audit >= 0.6x raw verify ({raw_beside:,.0f}/s just before and after it)", BEFORE["audit"],
           f"{audit_ratio:.2f}x", audit_ratio >= 0.6)
    target("everything but Ed25519 <= 40% of audit", BEFORE["share"], f"{1 - audit_ratio:.0%}", audit_ratio >= 0.6)
    target("ingest >= 10,000 entries/s", BEFORE["ingest"], f"{entries / ingest_seconds:,.0f}/s",
           entries / ingest_seconds >= 10_000)
    target("<= 1,500 bytes per entry", BEFORE["bytes"], f"{db_bytes / entries:,.0f}", db_bytes / entries <= 1_500)
    target(f"1M-entry audit < 60 s on {args.workers} processes", BEFORE["million"],
           f"{million:,.0f} s" + ("" if measured else " (extrapolated)"), million < 60 and measured)
    target(f"incremental audit of a day ({day} entries) < 2 s", BEFORE["incremental"],
           f"{incremental.seconds:.2f} s on {entries:,}", incremental.seconds < 2)
    console.print(targets)
    console.print(f"parallel audit speed-up: {single.seconds / parallel.seconds:.2f}x on {args.workers} processes; "
                  f"DB {db_bytes / 2**20:,.1f} MiB in all")


if __name__ == "__main__":
    main()
