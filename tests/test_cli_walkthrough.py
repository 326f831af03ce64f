"""The README's walkthrough, as people type it: real daemons in subprocesses, temp homes,
one accelerated clock ($WATTSHARE_CLOCK) shared by every command."""

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
from zoneinfo import ZoneInfo

import pytest

from test_cli import WATTSHARE

BERLIN = ZoneInfo("Europe/Berlin")
SPEED = 360  # ten real seconds an hour
ORIGIN = dt.datetime(2026, 11, 28, 22, 20, tzinfo=BERLIN)  # a Saturday evening


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Street:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.env = {**os.environ, "WATTSHARE_CLOCK": f"{SPEED}:{ORIGIN.timestamp()}:{time.time()}",
                    "TZ": "Europe/Berlin", "COLUMNS": "120"}
        self.daemons = []

    def run(self, home, *args, ok=True, timeout=60):
        result = subprocess.run([WATTSHARE, "--home", str(self.tmp / home), *args], capture_output=True, text=True,
                                env=self.env, timeout=timeout)
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, home, *args, timeout=60):
        return json.loads(self.run(home, *args, "--json", timeout=timeout).stdout)

    def daemon(self, home, *args):
        log = (self.tmp / f"{home}.log").open("w")
        self.daemons.append(subprocess.Popen([WATTSHARE, "--home", str(self.tmp / home), *args], env=self.env,
                                             stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while not (self.tmp / home / "admin.sock").exists():
            assert time.monotonic() < deadline, (self.tmp / f"{home}.log").read_text()[-3000:]
            time.sleep(0.1)

    def sim_now(self):
        speed, origin, anchor = map(float, self.env["WATTSHARE_CLOCK"].split(":"))
        return origin + (time.time() - anchor) * speed

    def wait_until(self, target):
        time.sleep(max(0.0, (target - self.sim_now()) / SPEED))

    def next_half_hour(self):
        """The half hour after the next one, on the shared clock: set-up time varies."""
        return (int(self.sim_now()) // 1800 + 2) * 1800

    def stop(self):
        for process in self.daemons:
            process.send_signal(signal.SIGTERM)
        for process in self.daemons:
            process.wait(15)
        return [process.returncode for process in self.daemons]


@pytest.fixture
def street(tmp_path):
    street = Street(tmp_path)
    yield street
    for process in street.daemons:
        if process.poll() is None:
            process.kill()


def test_host_wallet_and_coop_from_the_command_line(street):
    port = free_port()
    coop = street.json("coop", "coop", "init", "--name", "Acacia Avenue Energy", "--listen", f"/ip4/127.0.0.1/tcp/{port}")
    street.daemon("coop", "coop", "node", "run")
    bootstrap = street.json("coop", "coop", "status")["addresses"][0]
    host = street.json("host", "host", "init", "--lat", "52.5365", "--lon", "13.4175", "--address", "12 Acacia Avenue",
                       "--access-code", "4711", "--max-kw", "7.4", "--off-peak", "23:00-07:00@0.12", "--peak", "0.30",
                       "--ocpp", f"127.0.0.1:{free_port()}", "--coop", coop["coop"], "--bootstrap", bootstrap)
    street.daemon("host", "host", "run", "--simulate-wallbox", "--wallbox-kw", "7.4")
    wallet = street.json("driver", "wallet", "init", "--coop", coop["coop"], "--bootstrap", bootstrap)
    street.json("coop", "coop", "deposit", wallet["peer_id"], "40", "--reference", "SEPA 1")

    start = street.next_half_hour()
    window = [dt.datetime.fromtimestamp(t, BERLIN).strftime("%H:%M") for t in (start, start + 3600)]
    found = street.json("driver", "wallet", "find", "--near", "52.5360,13.4180", "--radius", "1km",
                        "--from", window[0], "--to", window[1])
    assert [(f["rank"], f["charger"]) for f in found] == [(1, "driveway")]
    booked = street.json("driver", "wallet", "book", "1", "--from", window[0], "--to", window[1], "--cap", "20")
    assert booked["address"] == "12 Acacia Avenue" and booked["code"] == "4711"  # sealed to the driver alone
    assert street.json("host", "host", "bookings")[0]["state"] == "confirmed"

    early = street.run("driver", "wallet", "start", booked["booking"][:10], ok=False)
    assert early.returncode == 1 and "too_early" in early.stderr and early.stderr.count("\n") == 1

    street.wait_until(start - 180)
    settled = street.json("driver", "wallet", "start", booked["booking"][:10], timeout=90)
    assert settled["answer"] == "acked" and 7_000 <= settled["energy_wh"] <= 8_000  # an hour at 7.4 kW
    receipts = street.json("driver", "wallet", "receipts", booked["booking"][:10])
    assert receipts["settlement"]["amount"] == settled["amount"] and len(receipts["receipts"]) > 50
    assert street.json("host", "host", "earnings")["balances"] == {"EUR": settled["amount"]}

    deadline = time.monotonic() + 20
    while (balance := street.json("driver", "wallet", "balance"))["balances"].get("EUR") != 4_000 - settled["amount"]:
        assert time.monotonic() < deadline, balance  # the co-op has the host's claim once it has synced
        time.sleep(0.5)
    copy = street.tmp / "copy.db"  # anyone can pull the co-op's ledger and audit it
    pulled = street.run("auditor", "audit", str(copy), "--from", bootstrap, "--coop", coop["coop"], "--json")
    report = json.loads(pulled.stdout)
    assert report["ok"] and report["entries"] >= 4 and "pulled" in pulled.stderr
    assert street.stop() == [0, 0]  # both daemons stop cleanly on SIGTERM
    audit = subprocess.run([WATTSHARE, "audit", str(street.tmp / "coop" / "ledger.db"), "--json"],
                           capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0 and json.loads(audit.stdout)["ok"]


@pytest.mark.parametrize("args, message", [
    (("wallet", "find", "--near", "north", "--from", "22:00", "--to", "23:00"), "--near must be LAT,LON"),
    (("wallet", "find", "--near", "52.5,13.4", "--radius", "far", "--from", "22:00", "--to", "23:00"),
     "--radius must be a distance"),
    (("host", "approve", "abc"), "no daemon is running"),
    (("wallet", "bookings"), "run `wattshare host init`, `wallet init` or `coop init` first"),
    (("host", "init", "--lat", "52.5", "--lon", "13.4", "--address", "x", "--coop", "c", "--peak", "cheap"),
     "--peak must be an amount"),
    (("coop", "deposit", "nobody", "10"), "is not a member's peer id"),
])
def test_bad_arguments_get_one_line_that_says_what_to_do(street, args, message):
    result = street.run("empty", *args, ok=False)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
