"""wattshare across NATs, on a simulated internet (`wattshare.testing.netlab`): the co-op
node on a public address, the host at home behind a router with its wallbox on the LAN
(another namespace, `wattshare host wallbox`), drivers behind another port-restricted
NAT and a symmetric NAT (a phone's two NATs: `bench.nat`). Real daemons and wallet
commands in the lab's namespaces, one accelerated clock, as in the walkthrough."""

import json
import subprocess
import time

from test_cli import WATTSHARE
from test_cli_walkthrough import Street, window

COOP_ADDRESS = "/ip4/198.51.100.10/tcp/4001"
HOMES = {"coop": "coop", "coop2": "coop2", "host": "hostA", "driver": "driverB", "symmetric": "driverC",
         "phone": "phone"}


class Internet(Street):
    """The walkthrough's street, each home in its namespace of the lab, on a clock a third
    as fast (an hour in 30 s): a wallet whose co-op node is down takes seconds to start."""

    def __init__(self, tmp_path, lab):
        super().__init__(tmp_path, speed=120)
        self.lab = lab
        self.running = {}  # home -> its daemon

    def command(self, home, args):
        return self.lab.command(HOMES[home], super().command(home, args))

    def daemon(self, home, *args):
        super().daemon(home, *args)
        self.running[home] = self.daemons[-1]

    def halt(self, home):
        """Stop the daemon of `home` as its owner would (SIGTERM)."""
        process = self.running.pop(home)
        process.terminate()
        assert process.wait(15) == 0
        self.daemons.remove(process)

    def status_until(self, home, check, timeout=30):
        deadline = time.monotonic() + timeout
        while not check(status := self.json(home, "host" if home != "coop" else "coop", "status")):
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        return status


def open_coop(town):
    """The co-op node on its public address; its init and the members' bootstrap address."""
    coop = town.json("coop", "coop", "init", "--name", "Acacia Avenue Energy",
                     "--listen", "/ip4/0.0.0.0/tcp/4001", "--announce", COOP_ADDRESS)
    town.daemon("coop", "coop", "node", "run")
    bootstrap = town.json("coop", "coop", "status")["addresses"][0]
    assert bootstrap.startswith(COOP_ADDRESS + "/p2p/")
    return coop, bootstrap


def settle_in(town, before_host=lambda coop, bootstrap: None, run_options=()):
    """The co-op on the internet, the host at home A with its wallbox on the LAN."""
    coop, bootstrap = open_coop(town)
    before_host(coop, bootstrap)
    host = town.json("host", "host", "init", "--lat", "52.5365", "--lon", "13.4175", "--address", "12 Acacia Avenue",
                     "--max-kw", "7.4", "--off-peak", "23:00-07:00@0.12", "--peak", "0.30",
                     "--ocpp", f"{town.lab.ip('hostA')}:8887", "--coop", coop["coop"], "--bootstrap", bootstrap)
    town.json("coop", "coop", "admit", host["peer_id"])
    town.daemon("host", "host", "run", *run_options)
    town.lab.popen("wallboxA", [WATTSHARE, "host", "wallbox", "--url", host["ocpp"], "--password", host["ocpp_password"]],
                   env=town.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # another machine on the LAN
    status = town.status_until("host", lambda s: "relay" in s["reach"] and "no relay" not in s["reach"]
                               and s["wallboxes"] == ["driveway"])
    relays = (COOP_ADDRESS, f"/ip4/{town.lab.ip('coop2')}/")  # the co-op's, and a member relay if one runs
    assert all("/p2p-circuit/" in a and a.startswith(relays) for a in status["addresses"]), status
    return coop, bootstrap


def open_a_public_relay(town, coop, bootstrap):
    """A member host on a public address (in another town) that relays for members."""
    relay = town.json("coop2", "host", "init", "--lat", "53.5511", "--lon", "9.9937", "--address", "1 Elbchaussee",
                      "--coop", coop["coop"], "--bootstrap", bootstrap, "--relay")
    town.json("coop", "coop", "admit", relay["peer_id"])
    town.daemon("coop2", "host", "run")


def driver(town, home, coop, *bootstrap):
    wallet = town.json(home, "wallet", "init", "--coop", coop["coop"], *(x for b in bootstrap for x in ("--bootstrap", b)))
    town.json("coop", "coop", "admit", wallet["peer_id"])
    town.json("coop", "coop", "deposit", wallet["peer_id"], "40", "--reference", "SEPA 1")
    return wallet


def book_and_charge(town, home, peer, path, hours=0.5, meanwhile=lambda: None):
    """Find, book and charge `hours` at the host from `home`; the host's link to the
    driver must be `path` (direct or relayed) while it charges, when `meanwhile` runs."""
    start = (int(town.sim_now()) // 600 + 3) * 600  # 20 to 30 minutes on: time to find and book
    begin, end = window(town, start, hours)
    found = town.json(home, "wallet", "find", "--near", "52.5360,13.4180", "--radius", "1km",
                      "--from", begin, "--to", end)
    assert [f["charger"] for f in found] == ["driveway"]
    booked = town.json(home, "wallet", "book", "1", "--from", begin, "--to", end, "--cap", "20")
    assert booked["address"] == "12 Acacia Avenue"
    town.wait_until(start - 180)
    wallet = subprocess.Popen(town.command(home, ["wallet", "start", booked["booking"][:10], "--json"]),
                              env=town.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    town.status_until("host", lambda s: s["links"].get(peer) == path, timeout=40)
    meanwhile()
    out, _ = wallet.communicate(timeout=180)
    settled = json.loads(out)
    # at least half the window (a wallet whose co-op node is down starts slowly), at most all of it and the early start
    assert settled["answer"] == "acked" and 3_700 * hours <= settled["energy_wh"] <= 7_400 * (hours + 5 / 60)
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
    assert internet.stop() == [0, 0]


def restart(town, home, *args):
    """Stop the daemon of `home` (SIGTERM) and start it again."""
    town.halt(home)
    town.daemon(home, *args)


def test_a_driver_behind_a_symmetric_nat_charges_over_the_relay_and_through_a_relay_restart(internet):
    coop, bootstrap = settle_in(internet)
    wallet = driver(internet, "symmetric", coop, bootstrap)

    def relay_restarts():
        restart(internet, "coop", "coop", "node", "run")  # every relayed link goes with it...
        internet.status_until("host", lambda s: s["links"].get(wallet["peer_id"]) == "relayed")  # ...and comes back

    book_and_charge(internet, "symmetric", wallet["peer_id"], "relayed", hours=1, meanwhile=relay_restarts)


def test_with_the_co_op_node_down_a_member_relay_carries_bookings_and_sessions(internet):
    coop, bootstrap = settle_in(internet, before_host=lambda coop, bootstrap: open_a_public_relay(internet, coop, bootstrap))
    internet.status_until("host", lambda s: "through 2 relay(s)" in s["reach"])
    relay = internet.json("coop2", "host", "status")
    assert relay["reach"].startswith("direct (public network); relays for members")
    wallet = driver(internet, "symmetric", coop, bootstrap, relay["addresses"][0])
    internet.halt("coop")
    book_and_charge(internet, "symmetric", wallet["peer_id"], "relayed", hours=1)


def test_a_host_behind_a_port_forward_learns_it_is_reachable_and_announces_its_public_address(internet):
    internet.lab.forward("routerA", 4002, "hostA")
    coop, bootstrap = open_coop(internet)
    host = internet.json("host", "host", "init", "--lat", "52.5365", "--lon", "13.4175", "--address", "12 Acacia Avenue",
                         "--listen", "/ip4/0.0.0.0/tcp/4002", "--coop", coop["coop"], "--bootstrap", bootstrap)
    internet.json("coop", "coop", "admit", host["peer_id"])
    internet.daemon("host", "host", "run")
    status = internet.status_until("host", lambda s: s["reach"].startswith("direct (public network)"))
    assert status["addresses"] == [f"/ip4/198.51.100.20/tcp/4002/p2p/{host['peer_id']}"]  # no LAN address, no relay
    driver(internet, "symmetric", coop, bootstrap)
    found = internet.json("symmetric", "wallet", "find", "--near", "52.5360,13.4180", "--radius", "1km",
                          "--from", "23:00", "--to", "06:00")
    assert [f["charger"] for f in found] == ["driveway"]  # dialled at that address: it holds no relay slot
