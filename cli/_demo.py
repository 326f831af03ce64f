"""`wattshare demo`: a whole neighbourhood on 127.0.0.1, narrated.

Theory of operation: the demo sets up homes with the real `init` commands (a co-op,
six hosts around Kollwitzplatz in Berlin, one driver's wallet), starts the co-op node
and every host's node as separate `wattshare ... run` processes (each host with a
simulated wallbox on its own OCPP WebSocket), all on one accelerated clock
(`$WATTSHARE_CLOCK`: the evening runs SPEED times faster), then plays the driver
in this process: search, book 22:30 to 00:00, start, live metering across the 23:00
off-peak boundary, settlement and ack, replication to the co-op, a checkpoint, an
audit of the co-op's ledger and everyone's balances. Every process is stopped on exit
or Ctrl-C, unless `--keep`, which leaves them running and prints what to type.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import trio
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from wattshare.ledger import audit
from wattshare.node import Charging, Node, admin_call
from wattshare.protocol import Query, peer_id, public_key_from_peer_id, wall_time

from ._daemon import ask, run_trio, short_lived
from ._home import CLOCK_ENV, HOME_ENV, Home, clock_from_env
from ._view import DELIVERED_NOTE, console, delivered, distance, kwh, money, settlement_table

SPEED = 360.0  # an evening hour in ten real seconds
TZ = ZoneInfo("Europe/Berlin")
CENTRE = (52.5365, 13.4175)  # Kollwitzplatz, Prenzlauer Berg
HOSTS = [  # name, lat, lon, kW, off-peak price, peak price
    ("Wörther Str.", 52.5378, 13.4168, 11, "0.12", "0.30"),
    ("Knaackstr.", 52.5350, 13.4150, 7.4, "0.11", "0.32"),
    ("Husemannstr.", 52.5392, 13.4170, 11, "0.14", "0.29"),
    ("Sredzkistr.", 52.5405, 13.4140, 22, "0.15", "0.35"),
    ("Rykestr.", 52.5340, 13.4210, 11, "0.10", "0.31"),
    ("Prenzlauer Allee", 52.5330, 13.4270, 7.4, "0.12", "0.28"),
]
READY_TIMEOUT = 45.0
SEARCH_PATIENCE = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_json(home: Path, *args: str) -> dict[str, Any]:
    """Run one `wattshare --json` command in this process; its JSON answer."""
    from ._main import main  # here, not at the top: _main imports this module

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main.main(["--home", str(home), *args, "--json"], standalone_mode=False)
    return json.loads(out.getvalue())


class Neighbourhood:
    """The demo's processes and homes (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.processes: list[subprocess.Popen] = []
        now = wall_time()
        evening = dt.datetime.combine(dt.datetime.fromtimestamp(now, TZ).date(), dt.time(21, 0), TZ)
        self.clock = f"{SPEED}:{evening.timestamp()}:{now}"
        self.env = {**os.environ, CLOCK_ENV: self.clock, "TZ": "Europe/Berlin"}
        os.environ[CLOCK_ENV] = self.clock  # this process (the driver) shares the clock
        self.coop = root / "coop"
        self.hosts = [root / f"host{i}" for i in range(len(HOSTS))]
        self.driver = root / "driver"

    def spawn(self, home: Path, *args: str) -> None:
        log = (home / "daemon.log").open("w")
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "wattshare.cli", "--home", str(home), *args], env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


async def ready(home: Path) -> dict[str, Any]:
    """Wait until the daemon of `home` answers on its admin socket; its status."""
    with trio.fail_after(READY_TIMEOUT):
        while True:
            with contextlib.suppress(OSError, trio.TooSlowError, ValueError):
                answer = await admin_call(Home(home).admin, {"cmd": "status"}, timeout=2)
                if answer.get("ok"):
                    return answer["data"]
            await trio.sleep(0.2)


@contextlib.contextmanager
def _step(title: str) -> Iterator[None]:
    console.rule(f"[bold cyan]{title}")
    started = time.perf_counter()
    yield
    console.print(f"[dim]({time.perf_counter() - started:.1f} s)[/]")


def _set_up(town: Neighbourhood) -> str:
    with _step("1. A co-op, six hosts and a driver move into Kollwitzkiez; the co-op admits each"):
        port = free_port()
        coop = run_json(town.coop, "coop", "init", "--name", "Kollwitzkiez Energy", "--credit-limit", "50",
                          "--listen", f"/ip4/127.0.0.1/tcp/{port}")
        town.spawn(town.coop, "coop", "node", "run", "--ui", "127.0.0.1:0")
        status = run_trio(ready, town.coop)
        bootstrap = status["addresses"][0]
        console.print(f"co-op node [bold]{coop['coop'][:16]}…[/] is the neighbourhood's bootstrap peer "
                      f"(127.0.0.1:{port})")
        for home, (street, lat, lon, kw, off_peak, peak) in zip(town.hosts, HOSTS):
            host = run_json(home, "host", "init", "--lat", str(lat), "--lon", str(lon), "--address", f"{street} 12",
                            "--access-code", "4711", "--max-kw", str(kw), "--off-peak", f"23:00-07:00@{off_peak}",
                            "--peak", peak, "--ocpp", f"127.0.0.1:{free_port()}", "--coop", coop["coop"],
                            "--bootstrap", bootstrap, "--tz", "Europe/Berlin")
            run_json(town.coop, "coop", "admit", host["peer_id"])
            town.spawn(home, "host", "run", "--simulate-wallbox", "--wallbox-kw", str(min(kw, 11)), "--ui", "127.0.0.1:0")
        wallet = run_json(town.driver, "wallet", "init", "--coop", coop["coop"], "--bootstrap", bootstrap)
        run_json(town.coop, "coop", "admit", wallet["peer_id"])

        async def all_ready() -> None:
            async with trio.open_nursery() as nursery:
                for home in town.hosts:
                    nursery.start_soon(ready, home)

        run_trio(all_ready)
        table = Table(title="Hosts (each its own process, with a simulated wallbox on OCPP 1.6J)", title_justify="left")
        for column in ("street", "power", "off-peak 23-07", "peak"):
            table.add_column(column)
        for street, _, _, kw, off_peak, peak in HOSTS:
            table.add_row(street, f"{kw} kW", f"{off_peak} EUR/kWh", f"{peak} EUR/kWh")
        console.print(table)
        deposit = run_json(town.coop, "coop", "deposit", wallet["peer_id"], "40", "--reference", "demo top-up")
        console.print(f"driver {wallet['peer_id'][:16]}… deposits {money(deposit['amount'], 'EUR')} with the co-op")
    return bootstrap


def _local(t: float) -> str:
    return dt.datetime.fromtimestamp(t, TZ).strftime("%H:%M")


async def _drive(town: Neighbourhood, bootstrap: str) -> tuple[Charging, list]:
    home = Home(town.driver)
    clock = clock_from_env()
    node = Node(home.identity(), state=home.state, ledger=home.ledger(), clock=clock, gossip=False)
    tonight = dt.datetime.fromtimestamp(clock(), TZ).date()
    start = int(dt.datetime.combine(tonight, dt.time(22, 30), TZ).timestamp())
    end = start + 90 * 60
    async with short_lived(node, [bootstrap]):
        with _step(f"2. Search: chargers within 2 km of Kollwitzplatz, free {_local(start)}-{_local(end)}"):
            query = Query(lat_e6=round(CENTRE[0] * 1e6), lon_e6=round(CENTRE[1] * 1e6), radius_m=2000,
                          start=start, end=end, energy_wh=15_000)
            results: list = []
            with trio.move_on_after(SEARCH_PATIENCE):  # hosts that have just started may still be announcing
                while len(results := await node.search(query)) < len(HOSTS):
                    await trio.sleep(0.5)
            table = Table(title=f"{len(results)} found (verified signed ads, fetched from each host)",
                          title_justify="left")
            for column in ("#", "distance", "power", "price", "for", "per kWh", "host"):
                table.add_column(column)
            for rank, r in enumerate(results, 1):
                table.add_row(str(rank), distance(r.shown_distance_m), f"{r.ad.message.max_power_w / 1000:g} kW",
                              money(r.estimate, "EUR"), delivered(r.energy_wh, r.full), money(round(r.per_kwh), "EUR"),
                              peer_id(r.ad.message.host)[:12] + "…")
            table.caption = DELIVERED_NOTE
            console.print(table)
        if not results:
            raise click.ClickException("no charger found: the hosts did not come up; see the daemon.log files")
        cheapest = min(results, key=lambda r: (not r.full, r.per_kwh, r.distance_m))
        with _step("3. Book the cheapest per kWh of those that deliver the 15 kWh, with a 20 EUR spend cap"):
            booking = await node.book(cheapest.ad.message, start, end, 2_000)
            access = node.access(booking)
            console.print(f"booking {booking.id.hex()[:12]} confirmed, signed by host and driver; "
                          f"the sealed access info opens only for the driver: {access.address}, code {access.code}")
        with _step(f"4. Charge from {_local(start)}: a signed receipt every metered minute, off-peak from 23:00"):
            await clock.sleep_until(start - 60)
            with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[cost]}"),
                          console=console) as bar:
                task = bar.add_task("plugging in", total=2_000, cost="")

                def show(charging: Charging) -> None:
                    receipts = charging.machine.receipts
                    moment = _local(receipts[-1].message.t) if receipts else "--:--"
                    bar.update(task, completed=charging.cost, cost=f"{money(charging.cost, 'EUR')} of 20.00 EUR",
                               description=f"{moment}  {kwh(charging.energy_wh)}")

                charging = await node.charge(booking, on_update=show)
            settlement = charging.settlement.message
            console.print(settlement_table(settlement, booking.request.message.tariff,
                                           "Settlement (priced by the protocol, checked by the driver)"))
            console.print(f"{len(charging.machine.receipts)} hash-chained receipts; the driver "
                          f"{'acked' if charging.answer.message.TYPE == 'settlement_ack' else 'disputed'}")
        with _step("5. Replication: the co-op pulls the settlement and the ack"):
            await node.push_feed(public_key_from_peer_id(Home(town.coop).config()["node"]["coop"]))
            host, driver = booking.request.message.host, booking.request.message.driver
            with trio.fail_after(30):
                while not (_entries_by(town.coop, host) and _entries_by(town.coop, driver)):
                    await trio.sleep(0.2)
            console.print("the co-op's ledger holds the host's settlement and the driver's ack")
    return charging, results


def app_url(home: Path) -> str:
    """The URL of the app the daemon of `home` serves (written once it listens, just
    after the node answers on its admin socket)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not (home / "app.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return json.loads((home / "app.json").read_text())["url"]


def _entries_by(coop: Path, author: bytes) -> int:
    """How many entries of `author` the co-op's ledger holds (read-only, beside its node)."""
    with contextlib.closing(sqlite3.connect(f"file:{Home(coop).ledger_file}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT COUNT(*) FROM entries WHERE author = ?", [author]).fetchone()[0]


def _audit(town: Neighbourhood) -> bool:
    with _step("6. The co-op's witness checkpoints the heads; anyone can audit the ledger"):
        ask(Home(town.coop), {"cmd": "checkpoint"})
        report = audit(Home(town.coop).ledger_file)
        verdict = "[bold green]audit passed[/]" if report.ok else f"[bold red]{len(report.violations)} violations[/]"
        console.print(f"{report.entries} entries in {report.feeds} feeds, {report.checkpoints} checkpoint(s): {verdict}")
        table = Table(title="Balances (they add up to the deposits: nothing created, nothing lost)",
                      title_justify="left")
        table.add_column("member")
        table.add_column("balance", justify="right")
        names = {run_json(h, "host", "status")["peer_id"]: street for h, (street, *_) in zip(town.hosts, HOSTS)}
        for (member, currency), value in sorted(report.balances.items(), key=lambda item: item[1]):
            who = names.get(peer_id(member), "driver")
            table.add_row(f"{who} ({peer_id(member)[:12]}…)", money(value, currency))
        console.print(table)
    return report.ok


@click.command()
@click.option("--keep", is_flag=True, help="Leave the nodes running afterwards and print commands to try.")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Where the homes go (default: a new temporary folder).")
def demo(keep: bool, folder: Path | None) -> None:
    """Run a co-op, six hosts and a driver on 127.0.0.1 and narrate a night's charge.

    \b
    Example:
      wattshare demo
      wattshare demo --keep     # then try the commands it prints
    """
    started = time.perf_counter()
    root = folder or Path(tempfile.mkdtemp(prefix="wattshare-demo-"))
    town = Neighbourhood(root)
    try:
        bootstrap = _set_up(town)
        run_trio(_drive, town, bootstrap)
        ok = _audit(town)
    finally:
        if not keep:
            town.stop()
    console.rule(f"[bold]done in {time.perf_counter() - started:.0f} s")
    if keep:
        town.spawn(town.driver, "wallet", "run", "--ui", f"127.0.0.1:{free_port()}")
        run_trio(ready, town.driver)
        console.print(f"the nodes keep running (homes in {root}); open the apps:\n"
                      f"  the driver's wallet:  [bold]{app_url(town.driver)}[/]\n"
                      f"  a host's charger:     {app_url(town.hosts[0])}\n"
                      f"  the co-op's office:   {app_url(town.coop)}\n"
                      "or try:\n"
                      f"  {HOME_ENV}={town.hosts[0]} {CLOCK_ENV}={town.clock} wattshare host status\n"
                      f"  wattshare audit {Home(town.coop).ledger_file}\n"
                      f"stop them with: pkill -f 'wattshare.cli --home {root}'")
    else:
        console.print("run `wattshare demo --keep` to leave the nodes running and open their web apps")
    raise SystemExit(0 if ok else 1)
