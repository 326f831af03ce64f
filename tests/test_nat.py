"""wattshare across NATs, on a simulated internet (`wattshare.testing.netlab`): the co-op
node on a public address, the host and its wallbox at home behind a router, drivers
behind another port-restricted NAT, a symmetric NAT and a phone's two NATs. Real daemons
and wallet commands in the lab's namespaces, one accelerated clock, as in the walkthrough."""

import json
import subprocess
import time

import pytest
from test_cli_walkthrough import SPEED, Street, window

from wattshare.testing import netlab

COOP_ADDRESS = "/ip4/198.51.100.10/tcp/4001"
HOMES = {"coop": "coop", "coop2": "coop2", "host": "hostA", "driver": "driverB", "symmetric": "driverC",
         "phone": "phone"}


class Internet(Street):
    """The walkthrough's street, each home in its namespace of the lab."""

    def __init__(self, tmp_path, lab):
        super().__init__(tmp_path)
        self.lab = lab

    def command(self, home, args):
        return self.lab.command(HOMES[home], super().command(home, args))

    def status_until(self, home, check, timeout=30):
        deadline = time.monotonic() + timeout
        while not check(status := self.json(home, "host" if home != "coop" else "coop", "status")):
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        return status


@pytest.fixture
def internet(tmp_path):
    if (reason := netlab.available()) is not None:
        pytest.skip(reason)
    with netlab.Netlab() as lab:
        town = Internet(tmp_path, lab)
        yield town
        for process in town.daemons:
            if process.poll() is None:
                process.kill()


def settle_in(town):
    """The co-op on the internet, the host at home A with its wallbox on the LAN."""
    coop = town.json("coop", "coop", "init", "--name", "Acacia Avenue Energy",
                     "--listen", "/ip4/0.0.0.0/tcp/4001", "--announce", COOP_ADDRESS)
    town.daemon("coop", "coop", "node", "run")
    bootstrap = town.json("coop", "coop", "status")["addresses"][0]
    assert bootstrap.startswith(COOP_ADDRESS + "/p2p/")
    host = town.json("host", "host", "init", "--lat", "52.5365", "--lon", "13.4175", "--address", "12 Acacia Avenue",
                     "--max-kw", "7.4", "--off-peak", "23:00-07:00@0.12", "--peak", "0.30",
                     "--ocpp", f"{town.lab.ip('hostA')}:8887", "--coop", coop["coop"], "--bootstrap", bootstrap)
    town.json("coop", "coop", "admit", host["peer_id"])
    town.daemon("host", "host", "run", "--simulate-wallbox", "--wallbox-kw", "7.4")
    status = town.status_until("host", lambda s: "relay" in s["reach"] and "no relay" not in s["reach"])
    assert all("/p2p-circuit/" in a and a.startswith(COOP_ADDRESS) for a in status["addresses"]), status
    return coop, bootstrap


def driver(town, home, coop, bootstrap):
    wallet = town.json(home, "wallet", "init", "--coop", coop["coop"], "--bootstrap", bootstrap)
    town.json("coop", "coop", "admit", wallet["peer_id"])
    town.json("coop", "coop", "deposit", wallet["peer_id"], "40", "--reference", "SEPA 1")
    return wallet


def book_and_charge(town, home, peer, path):
    """Find, book and charge an hour at the host from `home`; the host's link to the
    driver must end up `path` (direct or relayed) while it charges."""
    start = town.next_half_hour()
    begin, end = window(town, start)
    found = town.json(home, "wallet", "find", "--near", "52.5360,13.4180", "--radius", "1km",
                      "--from", begin, "--to", end)
    assert [f["charger"] for f in found] == ["driveway"]
    booked = town.json(home, "wallet", "book", "1", "--from", begin, "--to", end, "--cap", "20")
    assert booked["address"] == "12 Acacia Avenue"
    town.wait_until(start - 180)
    wallet = subprocess.Popen(town.command(home, ["wallet", "start", booked["booking"][:10], "--json"]),
                              env=town.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    town.status_until("host", lambda s: s["links"].get(peer) == path, timeout=40)
    out, _ = wallet.communicate(timeout=120)
    settled = json.loads(out)
    assert settled["answer"] == "acked" and 6_000 <= settled["energy_wh"] <= 7_500
    receipts = town.json(home, "wallet", "receipts", booked["booking"][:10])["receipts"]
    assert [r["seq"] for r in receipts] == list(range(len(receipts)))  # none lost on the way
    return booked, settled


def test_a_driver_behind_another_nat_books_and_charges_at_a_host_behind_nat_and_the_path_becomes_direct(internet):
    coop, bootstrap = settle_in(internet)
    wallet = driver(internet, "driver", coop, bootstrap)
    booked, settled = book_and_charge(internet, "driver", wallet["peer_id"], "direct")
    deadline = time.monotonic() + 20  # the host's claim and the driver's ack reach the co-op
    while internet.json("driver", "wallet", "balance")["balances"].get("EUR") != 4_000 - settled["amount"]:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert SPEED and internet.stop() == [0, 0]
