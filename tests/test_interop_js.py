"""A second implementation in the suite (issue 18): the JavaScript client of `interop/js`
(js-libp2p from npm, versions locked) against real Python nodes on 127.0.0.1. From the
co-op node alone it finds the host through the Kademlia DHT, fetches and verifies its
signed ad, then books a slot with a request and a HOLD ledger entry it signs itself, and
checks the host's signed confirmation; the Python host must hold both. It also checks
every test vector of `vectors/` with its own decoder and the JSON schemas."""

import hashlib
import json
import shutil
import subprocess
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from fixtures import at, error_lines, make_ad, pinned_clock, run_bounded

from wattshare import protocol as p
from wattshare.ledger import EntryKind, LedgerStore
from wattshare.node import Node
from wattshare.node._coop import CoopOffice
from wattshare.node._host import peer_of, peer_of_address

JS = Path(__file__).resolve().parent.parent / "interop" / "js"
CLIENT_TIMEOUT = 60  # seconds for one run of the client, startup included
NPM_TIMEOUT = 240  # `npm ci` of the locked packages (about 5 s here)
ACCESS = p.AccessInfo(address="12 Acacia Avenue", instructions="wallbox by the garage", code="4711")
NIGHT = (at("2026-11-28T23:00"), at("2026-11-29T06:00"))  # tonight, on the nodes' pinned clock (noon)


def identity(name):
    return p.Identity(hashlib.sha256(f"interop-js/{name}".encode()).digest())


@pytest.fixture(scope="module")
def node_js():
    """The `node` command, with the client's locked packages installed (`npm ci`)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js (`node`) is not installed: the JavaScript interop test needs it (.ci/run installs it)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.skip(f"Node.js {version} is too old: the JavaScript client needs Node.js 20 or later")
    if not (JS / "node_modules").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("`npm` is not installed: it installs the JavaScript client's packages")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, timeout=NPM_TIMEOUT,
                              capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"`npm ci` in {JS} failed: {done.stderr[-2000:]}")
    return node


def founded_ledger(path, coop, driver, host, clock):
    """The co-op's ledger: its charter, the host and the JS driver admitted (50.00 EUR of
    credit), and 30.00 EUR paid in for the driver."""
    ledger = LedgerStore(path, coop.public_key, clock=clock)
    office = CoopOffice(ledger, coop, identity("treasurer"), identity("witness"))
    t = int(clock()) - 3600
    office.found("Acacia Avenue Energy Co-op", "EUR", 5_000, t)
    for member in (host, driver):
        office.admit(member.public_key, None, t)
    office.move_money(EntryKind.DEPOSIT, driver.public_key, 3_000, "transfer 1", t)
    return ledger


async def run_client(node, coop, driver, clock, *extra):
    """Run the client against the co-op node; its exit status, JSON lines and stderr."""
    command = [node, str(JS / "client.mjs"), "--bootstrap", coop.address, "--cell", "u33dc",
               "--seed", driver.seed.hex(), "--now", str(int(clock())), *map(str, extra)]
    with trio.fail_after(CLIENT_TIMEOUT):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return done.returncode, lines, done.stderr.decode()


@pytest.mark.timeout(NPM_TIMEOUT + 120)  # the first run may install the packages
def test_the_js_client_finds_verifies_and_books_a_python_host(tmp_path, node_js, caplog):
    clock = pinned_clock()
    coop_key, host_id, driver = identity("coop"), identity("host"), identity("driver")

    async def scenario():
        async with AsyncExitStack() as stack:
            coop = Node(identity("coop-node"), clock=clock, gossip=False,
                        ledger=founded_ledger(tmp_path / "coop.db", coop_key, driver, host_id, clock))
            host = Node(host_id, state=tmp_path / "host.db", access=ACCESS, clock=clock, gossip=False,
                        ledger=LedgerStore(tmp_path / "host-ledger.db", coop_key.public_key))
            for node in (coop, host):
                await stack.enter_async_context(node.running())
            await host.join([coop.address])
            await host.sync.pull(host.host, peer_of_address(coop.address))  # the admissions: who may book
            ad = (await host.publish(make_ad(host=host_id.public_key))).message
            found = await run_client(node_js, coop, driver, clock)
            window = ("--start", NIGHT[0], "--end", NIGHT[1], "--cap", 2_000)
            booked = await run_client(node_js, coop, driver, clock, *window)
            stranger = await run_client(node_js, coop, identity("stranger"), clock, *window)
            return ad, found, booked, stranger, host

    ad, found, booked, stranger, host = run_bounded(scenario, 200)
    assert error_lines(caplog.records) == []  # three js-libp2p peers came and went: nothing for the log's ERRORs
    status, lines, errors = found
    host_peer = str(peer_of(host_id.public_key))
    assert status == 0, errors
    assert [line["step"] for line in lines] == ["joined", "found", "ad"]
    assert lines[1]["host"] == host_peer
    assert lines[2] | {"ms": 0} == {"step": "ad", "verified": True, "host": host_peer, "charger_id": ad.charger_id,
                                    "seq": ad.seq, "ads": 1, "ms": 0}

    status, lines, errors = booked
    assert status == 0, errors
    assert [line["step"] for line in lines] == ["joined", "found", "ad", "hold", "booked"]
    assert lines[3]["pushed"] is True  # the host pulled the HOLD back when the client showed its feed
    booking_id = bytes.fromhex(lines[-1]["booking_id"])
    row = host.store.get(booking_id)
    assert row["state"] == p.BookingState.CONFIRMED
    request = host.store.request(booking_id).message
    assert (request.driver, request.start, request.end, request.spend_cap) == (driver.public_key, *NIGHT, 2_000)
    assert (request.tariff, request.terms) == (ad.tariff, ad.terms)  # frozen from the ad
    assert host.ledger.state.hold(driver.public_key, booking_id) is not None  # the JS client's own HOLD entry

    status, lines, errors = stranger  # a key the co-op never admitted: the host's signed rejection
    assert status == 1
    assert [line["step"] for line in lines] == ["joined", "found", "ad", "hold"]
    assert lines[3]["pushed"] is False  # nobody replicates a stranger's feed
    assert errors.count("\n") == 1 and "not_a_member" in errors, errors


def test_the_js_implementation_agrees_with_every_test_vector(node_js):
    """interop/js/vectors.mjs decodes, verifies and re-signs every valid vector and
    refuses every invalid one with its reason code, from PROTOCOL.md's JSON schemas."""
    vectors = JS.parent.parent / "vectors"
    done = subprocess.run([node_js, str(JS / "vectors.mjs"), str(vectors)], capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT)
    reports = {line["file"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("envelopes.json", "frames.json", "invalid.json", "entries.json"):
        assert reports[name]["failed"] == [], reports[name]
        assert reports[name]["checked"] == len(json.loads((vectors / name).read_text())) > 0, name
