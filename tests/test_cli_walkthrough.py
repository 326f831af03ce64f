"""The README's walkthrough, as people type it: real daemons in subprocesses, temp homes,
one accelerated clock ($WATTSHARE_CLOCK) shared by every command."""

import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import tomllib
from zoneinfo import ZoneInfo

import pytest
import trio
from test_cli import WATTSHARE

from wattshare import protocol as p
from wattshare.node import admin_call
from wattshare.protocol import public_key_from_peer_id

BERLIN = ZoneInfo("Europe/Berlin")
SPEED = 360  # ten real seconds an hour
ORIGIN = dt.datetime(2026, 11, 28, 22, 20, tzinfo=BERLIN)  # a Saturday evening


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Street:
    def __init__(self, tmp_path, speed=SPEED):
        self.tmp = tmp_path
        self.speed = speed
        self.env = {**os.environ, "WATTSHARE_CLOCK": f"{speed}:{ORIGIN.timestamp()}:{time.time()}",
                    "TZ": "Europe/Berlin", "COLUMNS": "120"}
        self.daemons = []

    def command(self, home, args):
        """The argv of a `wattshare` command in `home` (a subclass may run it elsewhere)."""
        return [WATTSHARE, "--home", str(self.tmp / home), *args]

    def run(self, home, *args, ok=True, timeout=60):
        result = subprocess.run(self.command(home, args), capture_output=True, text=True, env=self.env, timeout=timeout)
        if ok:
            assert result.returncode == 0, (args, result.stdout, result.stderr[-3000:])
        return result

    def json(self, home, *args, timeout=60):
        return json.loads(self.run(home, *args, "--json", timeout=timeout).stdout)

    def daemon(self, home, *args):
        log = (self.tmp / f"{home}.log").open("w")
        self.daemons.append(subprocess.Popen(self.command(home, args), env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 30
        while not (self.tmp / home / "admin.sock").exists():
            assert time.monotonic() < deadline, (self.tmp / f"{home}.log").read_text()[-3000:]
            time.sleep(0.1)

    def sim_now(self):
        speed, origin, anchor = map(float, self.env["WATTSHARE_CLOCK"].split(":"))
        return origin + (time.time() - anchor) * speed

    def wait_until(self, target):
        time.sleep(max(0.0, (target - self.sim_now()) / self.speed))

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


def move_in(street, approval="auto", *host_options):
    """A co-op node, a host with a simulated wallbox, a wallet with 40 EUR, both admitted: as people type it."""
    port = free_port()
    coop = street.json("coop", "coop", "init", "--name", "Acacia Avenue Energy", "--listen", f"/ip4/127.0.0.1/tcp/{port}")
    street.daemon("coop", "coop", "node", "run")
    bootstrap = street.json("coop", "coop", "status")["addresses"][0]
    host = street.json("host", "host", "init", "--lat", "52.5365", "--lon", "13.4175", "--address", "12 Acacia Avenue",
                       "--access-code", "4711", "--max-kw", "7.4", "--off-peak", "23:00-07:00@0.12", "--peak", "0.30",
                       "--ocpp", f"127.0.0.1:{free_port()}", "--coop", coop["coop"], "--bootstrap", bootstrap,
                       "--approval", approval, *host_options)
    assert (len(host["geohash"]), host["cell"]) == (7, host["geohash"][:5])  # issue 18: a cell is the DHT's geohash-5
    street.json("coop", "coop", "admit", host["peer_id"])
    street.daemon("host", "host", "run", "--simulate-wallbox", "--wallbox-kw", "7.4")
    wallet = street.json("driver", "wallet", "init", "--coop", coop["coop"], "--bootstrap", bootstrap)
    street.json("coop", "coop", "admit", wallet["peer_id"])
    street.json("coop", "coop", "deposit", wallet["peer_id"], "40", "--reference", "SEPA 1")
    return coop, bootstrap, wallet


def balance_becomes(street, expected):
    """The wallet's balance, pulled from the co-op, once the co-op has synced the host's claim."""
    deadline = time.monotonic() + 20
    while (balance := street.json("driver", "wallet", "balance"))["balances"].get("EUR") != expected:
        assert time.monotonic() < deadline, balance
        time.sleep(0.5)


def window(street, start, hours=1):
    """--from and --to for an hour from `start`, as dates and times (no guessing which day)."""
    return [dt.datetime.fromtimestamp(t, BERLIN).isoformat(timespec="minutes") for t in (start, start + hours * 3600)]


def test_host_wallet_and_coop_from_the_command_line(street):
    coop, bootstrap, wallet = move_in(street)
    start = street.next_half_hour() + 3600  # ten real seconds more: a too-early start must still be too early
    # after find and book, however slowly those processes start
    begin, end = window(street, start)
    found = street.json("driver", "wallet", "find", "--near", "52.5360,13.4180", "--radius", "1km",
                        "--from", begin, "--to", end)
    assert [(f["rank"], f["charger"]) for f in found] == [(1, "driveway")]
    booked = street.json("driver", "wallet", "book", "1", "--from", begin, "--to", end, "--cap", "20")
    assert booked["address"] == "12 Acacia Avenue" and booked["code"] == "4711"  # sealed to the driver alone
    assert (booked["start_local"], booked["end_local"], booked["plug_in_from"]) == (begin, end, start - 300)
    assert street.json("host", "host", "bookings")[0]["state"] == "confirmed"
    assert "20.00 EUR" in street.run("driver", "wallet", "bookings").stdout  # amounts as people read them

    early = street.run("driver", "wallet", "start", booked["booking"][:10], ok=False)
    assert early.returncode == 1 and "too_early" in early.stderr and early.stderr.count("\n") == 1

    street.wait_until(start - 180)
    charged = street.run("driver", "wallet", "start", booked["booking"][:10], "--json", timeout=90)
    settled = json.loads(charged.stdout)
    progress = [json.loads(line) for line in charged.stderr.splitlines() if line.startswith("{")]  # not a terminal
    assert len(progress) > 10 and progress[-1]["energy_wh"] == settled["energy_wh"]
    # at most an hour at 7.4 kW (a wallet takes a while to start)
    assert settled["answer"] == "acked" and 6_000 <= settled["energy_wh"] <= 7_500
    receipts = street.json("driver", "wallet", "receipts", booked["booking"][:10])
    assert receipts["settlement"]["amount"] == settled["amount"] and len(receipts["receipts"]) > 50
    assert sum(line["amount"] for line in receipts["settlement"]["breakdown"]) == settled["amount"]
    assert "Settlement, by tariff period" in street.run("driver", "wallet", "receipts", booked["booking"][:10]).stdout
    assert street.json("host", "host", "earnings")["balances"] == {"EUR": settled["amount"]}

    balance_becomes(street, 4_000 - settled["amount"])
    assert "credit limit 50.00 EUR" in street.run("driver", "wallet", "balance").stdout
    copy = street.tmp / "copy.db"  # anyone can pull the co-op's ledger and audit it
    pulled = street.run("auditor", "audit", str(copy), "--from", bootstrap, "--coop", coop["coop"], "--json")
    report = json.loads(pulled.stdout)
    assert report["ok"] and report["entries"] >= 4 and "pulled" in pulled.stderr
    assert street.stop() == [0, 0]  # both daemons stop cleanly on SIGTERM
    for daemon in ("coop", "host"):  # their logs hold what needs a person's attention, not py-libp2p's chatter
        assert "ERROR libp2p" not in (street.tmp / f"{daemon}.log").read_text()
    audit = subprocess.run([WATTSHARE, "audit", str(street.tmp / "coop" / "ledger.db"), "--json"],
                           capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0 and json.loads(audit.stdout)["ok"]


def test_wallet_killed_mid_session_watches_it_to_one_settlement_and_one_ack(street):
    _, _, driver = move_in(street, "auto", "--ocpp-tls")  # and the wallbox on OCPP security profile 2
    config = tomllib.loads((street.tmp / "host" / "config.toml").read_text())
    assert config["charger"]["ocpp_tls"] and (street.tmp / "host" / "ocpp-key.pem").stat().st_mode & 0o077 == 0
    start = street.next_half_hour()
    begin, end = window(street, start)
    street.json("driver", "wallet", "find", "--near", "52.5360,13.4180", "--from", begin, "--to", end)
    booking = street.json("driver", "wallet", "book", "1", "--from", begin, "--to", end, "--cap", "20")["booking"]
    street.wait_until(start - 180)
    wallet = subprocess.Popen([WATTSHARE, "--home", str(street.tmp / "driver"), "wallet", "start", booking[:10]],
                              env=street.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(s["booking"] == booking and s["energy_wh"] for s in street.json("host", "host", "status")["sessions"]):
        assert time.monotonic() < deadline and wallet.poll() is None
        time.sleep(0.2)
    street.json("driver", "wallet", "balance")  # a second command of this wallet meanwhile (issue 19, item 3)...
    assert wallet.poll() is None  # ...leaves the live view running
    wallet.send_signal(signal.SIGINT)  # Ctrl-C once it charges: the session goes on, and the wallet says so
    assert wallet.wait(10) == 130
    said = wallet.stderr.read()
    assert said.count("\n") == 1 and f"wattshare wallet watch {booking[:10]}" in said, said
    wallet = subprocess.Popen([WATTSHARE, "--home", str(street.tmp / "driver"), "wallet", "watch", booking[:10]],
                              env=street.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    street.wait_until(start + 900)
    wallet.kill()  # SIGKILL, a quarter of an hour into the session
    assert wallet.wait(10) == -signal.SIGKILL
    partial = street.json("driver", "wallet", "receipts", booking[:10])
    assert partial["receipts"] and partial["settlement"] is None  # what it had kept so far
    settled = street.json("driver", "wallet", "watch", booking[:10], timeout=90)
    assert settled["answer"] == "acked" and 6_000 <= settled["energy_wh"] <= 7_500
    again = street.json("driver", "wallet", "watch", booking[:10])  # a finished session replays the same
    assert again == settled
    assert street.stop() == [0, 0]
    with sqlite3.connect(street.tmp / "driver" / "ledger.db") as db:
        acks = db.execute("SELECT COUNT(*) FROM entries WHERE author = ? AND kind = 'ack'",
                          [public_key_from_peer_id(driver["peer_id"])]).fetchone()[0]
    assert acks == 1  # one ack on the driver's feed, however often it watched


def test_find_and_book_say_what_the_price_covers_when_to_plug_in_and_which_day(street):
    """Issue 19, items 1, 4, 5 and 6, as a neighbour types them: a short window is priced
    for what it can deliver and says so, distances are only as precise as the public
    cell, the early-start grace is shown, and a bare time that has passed today books
    tomorrow and says so (and --json carries the window)."""
    move_in(street)
    now = dt.datetime.fromtimestamp(street.sim_now(), BERLIN)
    if now.hour >= 21 or now.time() < dt.time(0, 5):  # commands take sim minutes: keep clear of midnight
        street.wait_until(dt.datetime.combine(now.date() + dt.timedelta(days=now.hour >= 21), dt.time(0, 5),
                                              BERLIN).timestamp())
        now = dt.datetime.fromtimestamp(street.sim_now(), BERLIN)
    passed = (now - dt.timedelta(minutes=2)).strftime("%H:%M")  # passed today: the next one is tomorrow
    until = (now + dt.timedelta(minutes=10)).strftime("%H:%M")  # a 12-minute window: 1.5 kWh at 7.4 kW
    found = street.json("driver", "wallet", "find", "--near", "52.5360,13.4180", "--from", passed, "--to", until,
                        "--kwh", "20")
    [charger] = found
    assert (charger["full"], charger["wanted_wh"]) == (False, 20_000) and charger["energy_wh"] < 1_500
    assert charger["distance_m"] % 100 == 0 and 12 <= charger["per_kwh"] <= 30  # off-peak to peak, per kWh
    table = street.run("driver", "wallet", "find", "--near", "52.5360,13.4180", "--from", passed, "--to", until).stdout
    assert "all the window allows" in table and "~" in table and "nearest first" in table
    booked = street.run("driver", "wallet", "book", "1", "--from", passed, "--to", until, "--cap", "5").stdout
    assert "tomorrow" in booked and "you may plug in from" in booked and "5 min early" in booked
    [row] = street.json("driver", "wallet", "bookings")
    assert dt.datetime.fromtimestamp(row["start"], BERLIN).date() == (now + dt.timedelta(days=1)).date()
    assert street.stop() == [0, 0]


def test_manual_approval_cancel_stop_ad_update_withdraw_and_admit(street):
    # six clock hours (a minute at 360x) before a booking lapses as a no-show: a loaded machine's slow
    # `wallet stop` must still find its session open
    _, _, driver = move_in(street, "manual", "--noshow-timeout", "360")
    start = street.next_half_hour()

    def book_pending(begin, end):
        street.json("driver", "wallet", "find", "--near", "52.5360,13.4180", "--from", begin, "--to", end)
        process = subprocess.Popen([WATTSHARE, "--home", str(street.tmp / "driver"), "wallet", "book", "1",
                                    "--from", begin, "--to", end, "--cap", "20", "--json"], env=street.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not (pending := street.json("host", "host", "status")["pending"]):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        return process, pending[0]

    first, pending = book_pending(*window(street, start + 6 * 3600))
    street.json("host", "host", "approve", pending[:8])
    out, _ = first.communicate(timeout=30)
    assert first.returncode == 0 and json.loads(out)["booking"] == pending
    assert street.json("driver", "wallet", "cancel", pending[:10])["fee"] == 0  # hours ahead: free
    states = {b["booking"][:10]: b["state"] for b in street.json("driver", "wallet", "bookings")}
    assert states[pending[:10]] == "cancelled"
    second, pending = book_pending(*window(street, start + 8 * 3600))
    street.json("host", "host", "decline", pending[:8])
    _, err = second.communicate(timeout=30)
    assert second.returncode == 1 and "declined" in err
    update = street.json("host", "host", "ad", "update")
    assert (update["seq"], update["geohash"], update["cell"]) == (2, "u33dc7f", "u33dc")  # as `host init` placed it

    soon = int(street.sim_now()) + 600
    third, pending = book_pending(*window(street, soon))
    street.json("host", "host", "approve", pending[:8])
    third.communicate(timeout=30)
    street.wait_until(soon)
    stopped = street.json("driver", "wallet", "stop", pending[:10], timeout=90)
    assert stopped["answer"] == "acked" and stopped["energy_wh"] < 1_000
    late = street.run("driver", "wallet", "dispute", pending[:10], "--reason", "mispriced", ok=False)
    assert late.returncode == 2 and "the first answer stands" in late.stderr  # acked means final
    stranger = p.peer_id(p.Identity(bytes([9]) * 32).public_key)  # well formed, but nobody the co-op admitted
    refused = street.run("coop", "coop", "deposit", stranger, "40", ok=False)
    assert refused.returncode == 2 and "is not a member of this co-op" in refused.stderr
    mistake = street.json("coop", "coop", "withdraw", driver["peer_id"], "25")  # meant 10: undo it, then pay 10
    assert street.json("coop", "coop", "reverse", str(mistake["seq"]))["kind"] == "deposit"  # through the daemon
    street.json("coop", "coop", "withdraw", driver["peer_id"], "10")
    balance_becomes(street, 3_000 - stopped["amount"])
    assert street.json("coop", "coop", "admit", driver["peer_id"], "--credit-limit", "80")["credit_limit"] == 8_000
    deadline = time.monotonic() + 20
    while street.json("driver", "wallet", "balance")["credit_limit"] != 8_000:  # the new admission reached it
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert street.stop() == [0, 0]
    audit = subprocess.run([WATTSHARE, "audit", str(street.tmp / "coop" / "ledger.db"), "--json"],
                           capture_output=True, text=True, timeout=60)
    kinds = json.loads(audit.stdout)
    assert audit.returncode == 0 and kinds["ok"]


def test_a_bad_admin_request_is_refused_and_the_coop_daemon_carries_on(street):
    """Issue 14, bug 2: a money request naming no member's id used to raise SystemExit
    inside the co-op daemon, which its admin handler does not catch."""
    street.json("coop", "coop", "init", "--name", "Acacia Avenue Energy", "--listen",
                f"/ip4/127.0.0.1/tcp/{free_port()}")
    street.daemon("coop", "coop", "node", "run")
    socket_path = street.tmp / "coop" / "admin.sock"
    for request in ({"cmd": "money", "kind": "deposit", "member": "nobody", "amount": 100},
                    {"cmd": "admit", "member": "12D3KooWnot-a-key", "limit": None}):
        answer = trio.run(admin_call, socket_path, request)
        assert not answer["ok"] and "is not a member's peer id" in answer["error"]
    status = street.json("coop", "coop", "status")  # still serving
    shown = street.run("coop", "coop", "status").stdout  # the address to copy: whole, on a line of its own
    assert f"  {status['addresses'][0]}\n" in shown
    second = street.run("coop", "coop", "node", "run", ok=False)  # one daemon per home
    assert second.returncode == 2 and f"a node already runs in this home (pid {status['pid']}" in second.stderr
    assert second.stderr.count("\n") == 1
    assert street.stop() == [0]


def test_a_damaged_ledger_is_named_at_start_and_rebuilt_from_peers(street):
    move_in(street)
    ledger = street.tmp / "host" / "ledger.db"
    deadline = time.monotonic() + 20
    while street.json("host", "host", "status")["ledger_entries"] < 2:  # the charter and the deposit
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert street.stop() == [0, 0]
    street.daemons.clear()
    data = ledger.read_bytes()
    ledger.write_bytes(data[: len(data) // 2])  # power lost while the disk was half written
    damaged = street.run("host", "host", "run", ok=False)
    assert damaged.returncode == 2 and "not a usable ledger database" in damaged.stderr
    assert "mv " in damaged.stderr and damaged.stderr.count("\n") == 1
    ledger.rename(ledger.with_suffix(".damaged"))
    street.daemon("coop", "coop", "node", "run")
    street.daemon("host", "host", "run")
    deadline = time.monotonic() + 20
    while street.json("host", "host", "status")["ledger_entries"] < 2:  # pulled back from the co-op
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.parametrize("args, message", [
    (("wallet", "find", "--near", "north", "--from", "22:00", "--to", "23:00"), "--near must be LAT,LON"),
    (("wallet", "find", "--near", "95,13.4", "--from", "22:00", "--to", "23:00"), "a latitude is between -90 and 90"),
    (("wallet", "init", "--coop", "c", "--bootstrap", "127.0.0.1:4001"), "--bootstrap must be a co-op node's full"),
    (("coop", "init", "--name", "x", "--listen", "4001"), "--listen must be a libp2p address"),
    (("wallet", "find", "--near", "52.5,13.4", "--radius", "far", "--from", "22:00", "--to", "23:00"),
     "--radius must be a distance"),
    (("host", "approve", "abc"), "no daemon is running"),
    (("wallet", "bookings"), "run `wattshare host init`, `wallet init` or `coop init` first"),
    (("host", "init", "--lat", "52.5", "--lon", "13.4", "--address", "x", "--coop", "c", "--peak", "cheap"),
     "--peak must be an amount"),
    (("coop", "deposit", "nobody", "10"), "is not a member's peer id"),
    (("host", "init", "--lat", "52.5", "--lon", "13.4", "--address", "x", "--coop", "c", "--days", "funday"),
     "--days must be days like mon-fri"),
    (("coop", "init", "--name", "x", "--announce", "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWQ"),
     "--announce must be this node's public address"),
    (("host", "wallbox", "--url", "http://192.168.1.10:8887/", "--password", "p"), "--url must be ws://HOST:PORT/ocpp/"),
    (("host", "wallbox", "--url", "wss://192.168.1.10:8887/ocpp/driveway", "--password", "p"), "needs --ca"),
])
def test_bad_arguments_get_one_line_that_says_what_to_do(street, args, message):
    result = street.run("empty", *args, ok=False)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
