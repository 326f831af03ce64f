"""Chaos run: a neighbourhood of real node processes under faults, then proof nothing is lost.

    python -m bench.chaos                              # 3 minutes, 10 hosts, 10 drivers
    python -m bench.chaos --minutes 0.5 --hosts 3 --drivers 3

A co-op node, host daemons (`wattshare host run --simulate-wallbox`) and driver
processes (`bench.chaos_driver`: book, charge, repeat) on 127.0.0.1 and one clock at
SPEED x. While they work, faults are injected at random moments: SIGKILL and restart
of a host, a driver or the co-op (mid-booking, mid-session, mid-sync, wherever they
fall), a wallbox's link cut for a while, a host's disk full for a while (its SQLite
files may not grow: every write that needs space fails as on a full disk), and the
link between a host and the co-op or a driver dropped (4 s) or delayed (0.3 s each
way, 4 s) in the host's transport (`wattshare.testing`; hosts run `--fault-hooks`). Before the load, a racing
driver (admitted, nothing deposited) books every charger it finds at once, each for
60 % of its credit: the credit over-commitment it gets is reported and must be 0
(credit holds: `ledger/_state.py`). Then the drivers stop booking and the network
settles (until every node holds of each feed it keeps what the co-op holds, at most
SETTLE_MAX seconds: hosts and wallets are light members), every process is stopped, and
every node's files are checked: the co-op's whole ledger audited (conservation
included), every node's feeds against the co-op's, each host's bookings for
overlapping confirmations, each session's receipts at host and driver. One table;
exit 1 if any must-be-zero is not zero.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing, suppress
from pathlib import Path

import trio
from rich.console import Console
from rich.table import Table

from wattshare.cli._demo import free_port, ready, run_json
from wattshare.cli._home import CLOCK_ENV, Home, clock_from_env
from wattshare.ledger import LedgerStore, Rule, audit
from wattshare.node import Node, admin_call
from wattshare.protocol import (
    BookingConfirmation,
    ChargerAd,
    MeterReceipt,
    Query,
    Settlement,
    Signed,
    public_key_from_peer_id,
)

SPEED = 360.0
CENTRE = (52.5365, 13.4175)
SETTLE_MIN = 10.0  # sessions under way end and are settled, replicas pull
SETTLE_MAX = 90.0
ROOT = Path(__file__).resolve().parent.parent
HOST_FAULTS = {"wallbox link cut": "wallbox-drop", "full disk": "disk-full", "link dropped": "link-drop",
               "link delayed": "link-delay"}  # told to a host daemon over its admin socket
KINDS = ["kill host", "kill driver", "kill co-op", *HOST_FAULTS]


class Processes:
    """The run's processes by name, each restartable with the same command."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.argv: dict[str, tuple[list[str], Path]] = {}
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], log: Path) -> None:
        self.argv[name] = (argv, log)
        self.running[name] = subprocess.Popen(argv, env=self.env, cwd=ROOT, stdin=subprocess.PIPE,
                                              stdout=log.open("a"), stderr=log.with_suffix(".err").open("a"))

    def restart(self, name: str) -> None:
        self.start(name, *self.argv[name])

    def kill(self, name: str) -> None:
        self.running[name].kill()
        self.running[name].wait()

    def quiet(self, names: list[str]) -> None:
        """Close their stdin (a chaos driver stops booking, keeps syncing)."""
        for name in names:
            self.running[name].stdin.close()

    def stop(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def set_up(root: Path, hosts: int, drivers: int, procs: Processes, rng: random.Random) -> tuple[list, list, str]:
    """Homes and processes of the co-op, hosts and drivers; their names and the bootstrap address."""
    wattshare = [sys.executable, "-m", "wattshare.cli", "--home"]
    coop = run_json(root / "coop", "coop", "init", "--name", "Chaos Co-op", "--credit-limit", "500",
                    "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}")
    no_checkpoints = ["--checkpoint-every", str(24 * 60)]  # none in a run: heads stay put while the nodes settle
    procs.start("coop", [*wattshare, str(root / "coop"), "coop", "node", "run", "--sync-interval", "2",
                         *no_checkpoints], root / "coop.log")
    bootstrap = trio.run(ready, root / "coop")["addresses"][0]
    host_names = []
    for i in range(hosts):
        home = root / f"host{i}"
        lat, lon = CENTRE[0] + rng.uniform(-0.01, 0.01), CENTRE[1] + rng.uniform(-0.015, 0.015)
        host = run_json(home, "host", "init", "--lat", f"{lat:.6f}", "--lon", f"{lon:.6f}", "--address",
                        f"Chaosweg {i}", "--off-peak", "23:00-07:00@0.12", "--peak", "0.30", "--ocpp",
                        f"127.0.0.1:{free_port()}", "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}", "--coop",
                        coop["coop"], "--bootstrap", bootstrap, "--tz", "Europe/Berlin", "--noshow-fee", "1")
        run_json(root / "coop", "coop", "admit", host["peer_id"])
        procs.start(f"host{i}", [*wattshare, str(home), "host", "run", "--simulate-wallbox", "--sync-interval", "2",
                                 "--fault-hooks"],
                    root / f"host{i}.log")
        host_names.append(f"host{i}")
    driver_names = []
    for i in range(drivers):
        home = root / f"driver{i}"
        wallet = run_json(home, "wallet", "init", "--coop", coop["coop"], "--bootstrap", bootstrap,
                          "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}")
        run_json(root / "coop", "coop", "admit", wallet["peer_id"])
        run_json(root / "coop", "coop", "deposit", wallet["peer_id"], "100")
        driver_names.append(f"driver{i}")

    async def all_ready() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(hosts):
                nursery.start_soon(ready, root / f"host{i}")

    trio.run(all_ready)
    for i in range(drivers):
        procs.start(f"driver{i}", [sys.executable, "-m", "bench.chaos_driver", str(root / f"driver{i}"), str(i),
                                   f"{CENTRE[0]},{CENTRE[1]}"], root / f"driver{i}.jsonl")
    return host_names, driver_names, bootstrap


RACE_SHARE = 0.6  # of its credit, per booking: any two confirmed would over-commit it


def race(root: Path, bootstrap: str, hosts: list[str]) -> dict[str, int]:
    """The credit attack of one admitted driver with nothing deposited: every charger
    found, booked at once (see the module doc); what it tried and what it got."""
    home = root / "racer"
    wallet = run_json(home, "wallet", "init", "--coop", Home(root / "coop").config()["node"]["coop"],
                      "--bootstrap", bootstrap, "--listen", f"/ip4/127.0.0.1/tcp/{free_port()}")
    run_json(root / "coop", "coop", "admit", wallet["peer_id"])
    me = public_key_from_peer_id(wallet["peer_id"])
    racer = Home(home)
    node = Node(racer.identity(), listen=racer.config()["node"]["listen"], state=racer.state, ledger=racer.ledger(),
                clock=clock_from_env(), gossip=False, sync_interval=1.0)
    caps: list[int] = []

    async def book(ad: ChargerAd, start: int, cap: int) -> None:
        with suppress(Exception):  # a refusal is the outcome we are after
            await node.book(ad, start, start + 1800, cap)
            caps.append(cap)

    async def run() -> dict[str, int]:
        async with node.running():
            await node.join([bootstrap])
            coop = public_key_from_peer_id(Home(root / "coop").config()["node"]["coop"])
            with trio.fail_after(60):  # until the racer and every host hold the charter admitting it
                while not (node.ledger.state.is_member(me)  # type: ignore[union-attr]
                           and all(_sizes(root / h / "ledger.db", coop).get(coop) == node.ledger.sizes().get(coop)
                                   for h in hosts)):  # type: ignore[union-attr]
                    await trio.sleep(0.5)
            start = int(node.clock()) + 7200
            credit = node.ledger.state.available(me, "EUR", start)  # type: ignore[union-attr]
            found = await node.search(Query(lat_e6=round(CENTRE[0] * 1e6), lon_e6=round(CENTRE[1] * 1e6),
                                            radius_m=3000, start=start, end=start + 1800, energy_wh=1_000))
            async with trio.open_nursery() as nursery:
                for result in found:
                    nursery.start_soon(book, result.ad.message, start, int(credit * RACE_SHARE))
        return {"tried": len(found), "confirmed": len(caps), "credit": credit, "over": max(0, sum(caps) - credit)}

    return trio.run(run)


def inject(root: Path, procs: Processes, hosts: list[str], drivers: list[str], seconds: float,
           rng: random.Random, every: float) -> Counter:
    """Random faults until `seconds` have passed; counts by kind."""
    faults: Counter = Counter()
    kinds: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.5, 1.5) * every)
        if not kinds:  # every kind once per round, in a random order
            kinds = rng.sample(KINDS, len(KINDS))
        kind = kinds.pop()
        if kind == "kill host":
            name = rng.choice(hosts)
            procs.kill(name)
            time.sleep(rng.uniform(0.5, 2.0))
            procs.restart(name)
        elif kind == "kill driver":
            name = rng.choice(drivers)
            procs.kill(name)
            time.sleep(rng.uniform(0.5, 2.0))
            procs.restart(name)
        elif kind == "kill co-op":
            procs.kill("coop")
            time.sleep(rng.uniform(0.5, 2.0))
            procs.restart("coop")
        else:
            request = {"cmd": HOST_FAULTS[kind], "seconds": 2.0}
            if kind.startswith("link"):  # between a host and the co-op or a driver
                peer = Home(root / rng.choice(["coop", *drivers])).identity().peer_id
                request.update(peer=peer, seconds=4.0, latency=0.3)
            try:
                trio.run(admin_call, Home(root / rng.choice(hosts)).admin, request)
            except (OSError, trio.TooSlowError):
                continue  # that host is down just now
        faults[kind] += 1
    return faults


def settle(root: Path, names: list[str]) -> float:
    """Let the network settle: at least SETTLE_MIN seconds, then until every node's
    ledger holds of each feed it keeps what the co-op's holds (read beside the running
    nodes; hosts and wallets are light members: they keep only some feeds), at most
    SETTLE_MAX."""
    started = time.monotonic()
    time.sleep(SETTLE_MIN)
    while time.monotonic() - started < SETTLE_MAX:
        coop = _held(root / "coop" / "ledger.db")
        if all(_agrees(_held(root / name / "ledger.db"), coop) for name in names):
            break
        time.sleep(1.0)
    return time.monotonic() - started


def _held(path: Path) -> dict[bytes, int]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return dict(db.execute("SELECT author, COUNT(*) FROM entries WHERE frozen = 0 GROUP BY author"))


def _agrees(held: dict[bytes, int], coop: dict[bytes, int]) -> bool:
    """Does a node hold, of every feed it keeps, as much as the co-op does?"""
    return all(coop.get(author) == size for author, size in held.items())


def _light(path: Path) -> bool:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute("SELECT 1 FROM meta WHERE key = 'light'").fetchone() is not None


def outcomes(root: Path, drivers: list[str]) -> tuple[Counter, Counter]:
    events: Counter = Counter()
    reasons: Counter = Counter()
    for name in drivers:
        for line in (root / f"{name}.jsonl").read_text().splitlines():
            event = json.loads(line)
            events[event["event"]] += 1
            if event["event"] in ("rejected", "failed"):
                reasons[f"{event['event']}: {event['reason']}"] += 1
    return events, reasons


def ledger_checks(root: Path, names: list[str], coop_key: bytes) -> dict:
    """Audit every whole ledger (the co-op's); check every node's feeds against the co-op's."""
    coop_sizes = _sizes(root / "coop" / "ledger.db", coop_key)
    result = {"violations": 0, "conserved": 0, "converged": 0, "double": 0, "nodes": len(names), "audited": 0}
    for name in names:
        path = root / name / "ledger.db"
        result["converged"] += _agrees(_sizes(path, coop_key), coop_sizes)
        if _light(path):
            continue
        report = audit(path)
        result["audited"] += 1
        result["violations"] += len(report.violations)
        result["conserved"] += not any(v.rule is Rule.CONSERVATION for v in report.violations)
        result["double"] += sum(v.rule is Rule.DUPLICATE_CLAIM for v in report.violations)
    with closing(sqlite3.connect(root / "coop" / "ledger.db")) as db:
        result["settled"] = db.execute("SELECT COUNT(DISTINCT booking_id) FROM entries WHERE kind = 'settlement'"
                                       ).fetchone()[0]
    return result


def _sizes(path: Path, coop: bytes) -> dict[bytes, int]:
    store = LedgerStore(path, coop)
    try:
        return store.sizes()
    finally:
        store.close()


def slot_conflicts(root: Path, hosts: list[str]) -> int:
    """Pairs of bookings of one charger with overlapping windows that both held the slot
    at once: each confirmed before the other released it (a settled session releases its
    slot at its settlement, so the rest of its window may be booked again)."""
    conflicts = 0
    for name in hosts:
        with closing(sqlite3.connect(root / name / "node.db")) as db:
            held = []
            for charger, start, end, answer, settlement in db.execute(
                    "SELECT b.charger_id, b.start, b.end, b.answer, s.settlement FROM bookings b "
                    "LEFT JOIN sessions s ON s.booking_id = b.booking_id "
                    "WHERE b.state IN ('confirmed', 'started', 'settled')"):
                confirmed = Signed.decode(answer, BookingConfirmation).message.confirmed
                released = Signed.decode(settlement, Settlement).message.t if settlement else end
                held.append((charger, start, end, confirmed, released))
            for i, a in enumerate(held):
                for b in held[i + 1:]:
                    overlap = a[0] == b[0] and a[1] < b[2] and b[1] < a[2]
                    conflicts += overlap and a[3] < b[4] and b[3] < a[4]
    return conflicts


def lost_receipts(root: Path, hosts: list[str], drivers: list[str]) -> int:
    """Receipts a driver holds that its host's chain lacks, plus settled chains with a gap
    or a settlement not on their last receipt."""
    chains: dict[bytes, list[bytes]] = {}
    lost = 0
    for name in hosts:
        with closing(sqlite3.connect(root / name / "node.db")) as db:
            for booking, settlement in db.execute("SELECT booking_id, settlement FROM sessions"):
                receipts = [row[0] for row in db.execute(
                    "SELECT envelope FROM receipts WHERE booking_id = ? ORDER BY seq", [booking])]
                chains[booking] = receipts
                seqs = [Signed.decode(r, MeterReceipt).message.seq for r in receipts]
                lost += seqs != list(range(len(seqs)))
                if settlement is not None and receipts:
                    lost += Signed.decode(settlement, Settlement).message.last_receipt != \
                        Signed.decode(receipts[-1], MeterReceipt).digest
    for name in drivers:
        with closing(sqlite3.connect(root / name / "node.db")) as db:
            for booking, envelope in db.execute("SELECT booking_id, envelope FROM receipts"):
                lost += envelope not in chains.get(booking, [])
    return lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to drive load and faults (default 3)")
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--drivers", type=int, default=10)
    parser.add_argument("--fault-every", type=float, default=4.0, help="mean seconds between faults (default 4)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    console = Console()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="wattshare-chaos-"))
    os.environ[CLOCK_ENV] = f"{SPEED}:{time.time()}:{time.time()}"
    procs = Processes({**os.environ, "TZ": "Europe/Berlin"})
    try:
        console.print(f"setting up {args.hosts} hosts and {args.drivers} drivers in {root} ...")
        hosts, drivers, bootstrap = set_up(root, args.hosts, args.drivers, procs, rng)
        console.print("a driver races every host for more than its credit ...")
        raced = race(root, bootstrap, hosts)
        console.print(f"load and faults for {args.minutes:g} min ...")
        faults = inject(root, procs, hosts, drivers, args.minutes * 60, rng, args.fault_every)
        procs.quiet(drivers)
        console.print(f"settling (at most {SETTLE_MAX:g} s) ...")
        settled_in = settle(root, ["coop", *hosts, *drivers])
    finally:
        procs.stop()
    coop_key = public_key_from_peer_id(Home(root / "coop").config()["node"]["coop"])
    events, reasons = outcomes(root, drivers)
    ledgers = ledger_checks(root, ["coop", *hosts, *drivers], coop_key)
    conflicts = slot_conflicts(root, hosts)
    lost = lost_receipts(root, hosts, drivers)

    table = Table(title=f"bench.chaos: {args.minutes:g} min, {args.hosts} hosts, {args.drivers} drivers, "
                        f"clock x{SPEED:g}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("bookings attempted", str(events["attempt"]))
    table.add_row("bookings confirmed", str(events["confirmed"]))
    table.add_row("sessions settled (on the co-op's ledger)", str(ledgers["settled"]))
    for reason, count in sorted(reasons.items()):
        table.add_row(f"  {reason}", str(count))
    table.add_row("credit race: bookings confirmed of chargers tried at once",
                  f"{raced['confirmed']} of {raced['tried']} (each for {RACE_SHARE:.0%} of its credit)")
    must_be_zero = {
        "credit over-commitment of the racing driver, cents": raced["over"],
        "receipts lost": lost,
        "double settlements": ledgers["double"],
        "conflicting confirmations for one slot": conflicts,
        f"audit violations ({ledgers['audited']} whole ledgers: the co-op's)": ledgers["violations"],
        "whole ledgers whose balances are not conserved": ledgers["audited"] - ledgers["conserved"],
        "nodes holding less of a feed they keep than the co-op": ledgers["nodes"] - ledgers["converged"],
    }
    for name, value in must_be_zero.items():
        table.add_row(f"{name} (must be 0)", f"[{'green' if value == 0 else 'bold red'}]{value}")
    for kind, count in sorted(faults.items()):
        table.add_row(f"faults injected: {kind}", str(count))
    table.add_row("settling time after the load (s)", f"{settled_in:.0f}")
    console.print(table)
    console.print(f"homes and logs kept in {root}")
    raise SystemExit(0 if not any(must_be_zero.values()) else 1)


if __name__ == "__main__":
    main()
