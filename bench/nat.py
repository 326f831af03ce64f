"""NAT traversal, measured on the simulated internet (`wattshare.testing.netlab`).

    python -m bench.nat [--speed 120] [--minutes 30]

Needs root and the ip and nft commands. For each pair a fresh lab: the co-op node on its
public address (relay and bootstrap), the host at home A behind a port-restricted NAT with
its simulated wallbox on the LAN (real `wattshare` daemons), then a driver from cold
(`bench.nat_driver` in its namespace) behind another port-restricted NAT, a symmetric NAT,
a phone's two NATs, or on a public address. The baseline pair runs the same daemons and
driver on 127.0.0.1 of one namespace (no NAT, no relay) in the same run: the ratio column
is each pair's booking round trip over the baseline's. Times are real seconds; the
session runs on one accelerated clock (`--speed`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from wattshare.testing import netlab

WATTSHARE = str(Path(sys.executable).with_name("wattshare"))
ORIGIN = dt.datetime(2026, 11, 28, 22, 20, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
PUBLIC_COOP = "/ip4/198.51.100.10/tcp/4001"


@dataclass(frozen=True)
class Pair:
    name: str
    host_nat: str
    driver: str  # the driver's role in the lab
    driver_nat: str
    host: str = "hostA"
    coop: str = "coop"
    loopback: bool = False  # everything in one namespace on 127.0.0.1


PAIRS = (
    Pair("baseline", "none", "coop", "none", host="coop", loopback=True),
    Pair("A <- B", "port-restricted cone", "driverB", "port-restricted cone"),
    Pair("A <- C", "port-restricted cone", "driverC", "symmetric"),
    Pair("A <- phone", "port-restricted cone", "phone", "two cones (CGNAT)"),
    Pair("A <- public", "port-restricted cone", "coop2", "none (public address)"),
)


class Town:
    """The pair's homes, each command in its role's namespace, on one clock."""

    def __init__(self, lab: netlab.Netlab, root: Path, speed: float) -> None:
        self.lab, self.root, self.speed = lab, root, speed
        self.clock = f"{speed}:{ORIGIN}:{time.time()}"
        self.env = {**os.environ, "WATTSHARE_CLOCK": self.clock, "TZ": "Europe/Berlin"}

    def now(self) -> float:
        return ORIGIN + (time.time() - float(self.clock.split(":")[2])) * self.speed

    def json(self, role: str, home: str, *args: str) -> Any:
        done = self.lab.run(role, [WATTSHARE, "--home", str(self.root / home), *args, "--json"], env=self.env,
                            capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{args[:2]} in {role}: {done.stderr.strip()[-500:]}")
        return json.loads(done.stdout)

    def daemon(self, role: str, home: str, *args: str) -> None:
        log = (self.root / f"{home}.log").open("w")
        self.lab.popen(role, [WATTSHARE, "--home", str(self.root / home), *args], env=self.env, stdout=log,
                       stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (self.root / home / "admin.sock").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{home} did not start: see {self.root / f'{home}.log'}")
            time.sleep(0.1)


def measure(pair: Pair, speed: float, minutes: int, root: Path) -> dict[str, Any]:
    with netlab.Netlab() as lab:
        town = Town(lab, root, speed)
        listen = ["--listen", "/ip4/127.0.0.1/tcp/4001"] if pair.loopback else \
            ["--listen", "/ip4/0.0.0.0/tcp/4001", "--announce", PUBLIC_COOP]
        coop = town.json(pair.coop, "coop", "coop", "init", "--name", "Bench Energy", *listen)
        town.daemon(pair.coop, "coop", "coop", "node", "run")
        bootstrap = town.json(pair.coop, "coop", "coop", "status")["addresses"][0]
        ocpp = "127.0.0.1:8887" if pair.loopback else f"{lab.ip(pair.host)}:8887"
        host = town.json(pair.host, "host", "host", "init", "--lat", "52.5365", "--lon", "13.4175",
                         "--address", "12 Acacia Avenue", "--off-peak", "23:00-07:00@0.12", "--ocpp", ocpp,
                         "--coop", coop["coop"], "--bootstrap", bootstrap)
        town.json(pair.coop, "coop", "coop", "admit", host["peer_id"])
        wallet = town.json(pair.driver, "driver", "wallet", "init", "--coop", coop["coop"], "--bootstrap", bootstrap)
        town.json(pair.coop, "coop", "coop", "admit", wallet["peer_id"])
        town.json(pair.coop, "coop", "coop", "deposit", wallet["peer_id"], "40")
        cold = time.time()
        town.daemon(pair.host, "host", "host", "run", "--simulate-wallbox", "--wallbox-kw", "7.4")
        start = (int(town.now()) // 1800 + 2) * 1800
        done = lab.run(pair.driver, [sys.executable, "-m", "bench.nat_driver", str(root / "driver"), bootstrap,
                                     host["peer_id"], str(start), str(start + minutes * 60)],
                       env=town.env, capture_output=True, text=True, timeout=600)
        if done.returncode:
            raise RuntimeError(f"the driver of {pair.name} failed: {done.stderr.strip()[-800:]}")
        result = json.loads(done.stdout.splitlines()[-1])
        return {**result, "cold_s": result["booked_at"] - cold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=120.0, help="clock speed of the session (default 120)")
    parser.add_argument("--minutes", type=int, default=30, help="booked minutes charged per pair (default 30)")
    args = parser.parse_args()
    if (reason := netlab.available()) is not None:
        sys.exit(f"bench.nat {reason}")
    console = Console()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="wattshare-bench-nat-") as tmp:
        for pair in PAIRS:
            console.print(f"{pair.name}: host behind {pair.host_nat}, driver behind {pair.driver_nat} ...")
            rows[pair] = measure(pair, args.speed, args.minutes, Path(tmp) / pair.name.replace(" ", ""))
    baseline = rows[PAIRS[0]]["round_trip_s"]
    for pair, row in rows.items():
        table = Table(title=f"bench.nat: {pair.name}", title_justify="left")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for what, value in (
                ("host's NAT", pair.host_nat), ("driver's NAT", pair.driver_nat),
                ("path while charging", row["path"]),
                ("cold start (host launched) -> first booking confirmed", f"{row['cold_s']:.1f} s"),
                ("booking round trip", f"{row['round_trip_s'] * 1000:.0f} ms"),
                ("booking round trip / baseline's", f"{row['round_trip_s'] / baseline:.1f}"),
                ("settled and acked", "yes" if row["settled"] else "NO"),
                ("receipts kept by the driver", str(row["receipts"])),
                ("receipts lost", str(row["lost"]))):
            table.add_row(what, value)
        console.print(table)

if __name__ == "__main__":
    main()
