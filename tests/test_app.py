"""The web app in a real browser: Debian's headless Chromium, driven by Playwright, on
real daemons (a co-op, a host with a simulated wallbox and manual approval, a wallet's
`wallet run`) on one accelerated clock, all on 127.0.0.1; and the app opened to a home
network (HTTPS, pairing) in the simulated internet's home A (`netlab`)."""

import datetime as dt
import http.server
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright
from test_cli_walkthrough import BERLIN, Street, move_in
from test_nat import settle_in

from wattshare.cli._demo import app_url  # waits for the app's address, as the demo does

SPEED = 120  # an hour in 30 real seconds: time for a person's clicks before the window opens
expect.set_options(timeout=20_000)  # a booking request waits for the host's pull of the driver's feed
CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}


def chromium_here():
    """Debian's Chromium must be there in CI (.ci/run installs it); elsewhere its absence skips."""
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture(scope="module")
def playwright():
    chromium_here()
    with sync_playwright() as driver:  # one per process: Playwright's sync API runs its own event loop
        yield driver


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    yield browser
    browser.close()


class Tiles(http.server.BaseHTTPRequestHandler):
    """A map tile server on loopback: any tile is one grey pixel; it counts what it served."""

    served = []
    PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010800000000"
                        "3a7e9b550000000a49444154789c636800000082008177cd72b60000000049454e44ae426082")

    def do_GET(self):
        self.served.append(self.path)
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.end_headers()
        self.wfile.write(self.PNG)

    def log_message(self, *args):
        pass


@pytest.fixture
def town(tmp_path):
    tiles = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    threading.Thread(target=tiles.serve_forever, daemon=True).start()
    street = Street(tmp_path, speed=SPEED)
    move_in(street, "manual", "--cancel-fee", "1.50")
    street.daemon("driver", "wallet", "run", "--ui", "127.0.0.1:0",
                  "--tiles", f"http://127.0.0.1:{tiles.server_port}/{{z}}/{{x}}/{{y}}.png")
    yield street, {home: app_url(street.tmp / home) for home in ("coop", "host", "driver")}
    for process in street.daemons:
        if process.poll() is None:
            process.kill()
    tiles.shutdown()


def page_of(browser, url, viewport=PHONE, **options):
    context = browser.new_context(viewport=viewport, timezone_id="Europe/Berlin", locale="en-GB", **options)
    context.set_default_timeout(20_000)
    page = context.new_page()
    failures = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(url)
    return page, failures


def fits(page):
    """Nothing on the page is wider than the screen (no sideways scrolling)."""
    wide = page.evaluate("""() => [...document.querySelectorAll("body *")]
        .filter(e => e.getBoundingClientRect().right > innerWidth + 1 && !e.closest("svg"))
        .map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`)""")
    assert not wide and page.evaluate("document.documentElement.scrollWidth <= innerWidth"), (page.url, wide[:5])


def local(t):
    return dt.datetime.fromtimestamp(t, BERLIN).strftime("%Y-%m-%dT%H:%M")


def shows(page, selector, text, seconds=30):
    """Reload `page` until `selector` shows `text` (what the node knows changes; the page does not poll)."""
    deadline = time.monotonic() + seconds
    while (now := page.locator(selector).inner_text()) != text:
        assert time.monotonic() < deadline, now
        time.sleep(0.5)
        page.reload()


def money_of(text):
    return round(float(text.replace("€", "").replace(",", "").strip()) * 100)


def approve_in(host, url):
    host.goto(f"{url}/#requests")
    request = host.get_by_role("button", name="Approve")
    expect(request).to_have_count(1)
    request.click()
    expect(host.get_by_text("waiting for you")).to_have_count(0)


def find(neighbour, start, end):
    neighbour.get_by_role("link", name="Find").click()
    if not neighbour.locator("details").evaluate("fold => fold.open"):  # folded after a search
        neighbour.get_by_text("· change").click()
    neighbour.get_by_role("button", name="Use my location").click()  # the browser's geolocation
    expect(neighbour.get_by_label("Latitude")).to_have_value("52.53600")
    neighbour.get_by_label("From").fill(local(start))
    neighbour.get_by_label("Until").fill(local(end))
    neighbour.get_by_role("button", name="Find chargers").click()


def book(neighbour, cap):
    neighbour.get_by_role("button", name="Book #1").click()
    neighbour.get_by_label("Spend cap (EUR)").fill(cap)
    neighbour.get_by_role("button", name="Book", exact=True).click()  # a manual host: waits for its decision


@pytest.mark.timeout(300)
def test_a_neighbour_finds_books_charges_live_pays_cancels_and_disputes_and_the_host_approves(town, browser):
    street, urls = town
    start = street.next_half_hour()
    neighbour, errors = page_of(browser, f"{urls['driver']}/#find", geolocation={"latitude": 52.536, "longitude": 13.418},
                                permissions=["geolocation"])
    find(neighbour, start, start + 3600)
    card = neighbour.get_by_role("article", name="Charger 1")
    expect(card).to_contain_text("7.4 kW Type 2")
    expect(card).to_contain_text("energy 23:00-07:00")  # the price, period by period
    expect(neighbour.locator("#search-summary")).to_contain_text("Within 2.0 km of 52.5360, 13.4180")
    expect(neighbour.locator("svg.map .pin")).to_have_count(1)  # the map: the charger's public cell and me
    expect(neighbour.locator("svg.map image").first).to_be_attached()  # on the configured tiles
    assert Tiles.served and all(path.endswith(".png") for path in Tiles.served)
    fits(neighbour)
    book(neighbour, "500")  # more than 40 EUR paid in and 50 EUR of credit
    expect(neighbour.get_by_role("alert")).to_contain_text("the host declined (insufficient_credit)")
    book(neighbour, "20")

    host, host_errors = page_of(browser, urls["host"])
    approve_in(host, urls["host"])
    expect(neighbour.locator("#booking-state")).to_have_text("confirmed")
    expect(neighbour.get_by_text("12 Acacia Avenue")).to_be_visible()  # sealed to this driver, opened here
    expect(neighbour.get_by_text("4711")).to_be_visible()
    fits(neighbour)
    street.wait_until(start - 120)
    neighbour.get_by_role("button", name="Start charging").click()
    expect(neighbour.locator("#live-kwh")).not_to_have_text("0.00 kWh", timeout=30_000)  # pushed by the node
    expect(neighbour.get_by_role("button", name="Start charging")).to_be_hidden()  # what can be done now: stop
    assert money_of(neighbour.locator("#live-cost").inner_text()) > 0
    host.goto(f"{urls['host']}/#charger")
    expect(host.locator("#host-live")).to_contain_text("kWh")
    expect(host.locator("#wallbox")).to_contain_text("driveway connected")
    fits(host)
    neighbour.get_by_role("button", name="Stop").click()
    expect(neighbour.locator("#settled")).to_contain_text("you acked", timeout=30_000)
    expect(neighbour.locator("#receipts")).to_contain_text("Settlement, by tariff period", timeout=10_000)
    paid = money_of(neighbour.locator("#settled-amount").inner_text())
    assert paid > 0
    expect(neighbour.locator("#dispute")).to_have_count(0)  # acked: nothing left to dispute

    later = street.next_half_hour()  # less than the terms' hour ahead: a cancel now costs the fee
    find(neighbour, later, later + 3600)
    book(neighbour, "20")
    approve_in(host, urls["host"])
    neighbour.get_by_role("button", name="Cancel booking").click()
    expect(neighbour.locator("#cancel-fee")).to_contain_text("Cancelling now costs €1.50")  # before confirming
    neighbour.get_by_role("button", name="Cancel booking").last.click()
    expect(neighbour.locator("#booking-state")).to_have_text("cancelled")
    neighbour.get_by_label("Reason").select_option("bad_time")
    neighbour.get_by_label("What is wrong, in a line").fill("I cancelled in time")
    disputed = neighbour.get_by_text("Disputed: your co-op will see it")
    deadline = time.monotonic() + 40  # the host's fee entry reaches this wallet's ledger by gossip and sync
    while not disputed.is_visible():
        assert time.monotonic() < deadline
        neighbour.get_by_role("button", name="Dispute").click()
        expect(disputed.or_(neighbour.get_by_role("alert"))).to_be_visible()  # until then, a refusal in words
        time.sleep(0.5)

    neighbour.get_by_role("link", name="Wallet").click()
    shows(neighbour, "#balance", f"€{(4_000 - paid - 150) / 100:.2f}")  # once the host's claims reached this wallet
    expect(neighbour.get_by_role("cell", name="settlement")).to_be_visible()
    expect(neighbour.get_by_role("cell", name="What fee", exact=True)).to_be_visible()
    fits(neighbour)
    host.goto(f"{urls['host']}/#earnings")
    expect(host.locator("#earned")).to_have_text(f"€{(paid + 150) / 100:.2f} in all")
    fits(host)
    assert not errors and not host_errors


@pytest.mark.timeout(180)
def test_the_coop_audits_its_ledger_and_records_a_deposit_on_a_desktop_by_keyboard(town, browser):
    street, urls = town
    with urllib.request.urlopen(f"{urls['driver']}/api/session", timeout=10) as response:
        driver = json.loads(response.read())["peer_id"]
    coop, errors = page_of(browser, f"{urls['coop']}/#money", viewport={"width": 1280, "height": 800})
    coop.get_by_label("Member").select_option(driver)
    coop.get_by_label("Amount (EUR)").focus()
    coop.keyboard.type("12.50")
    coop.keyboard.press("Tab")  # to the member
    coop.keyboard.press("Tab")  # to the reference
    coop.keyboard.type("SEPA 2")
    coop.keyboard.press("Enter")
    expect(coop.locator("#money-done")).to_contain_text("deposit of €12.50")
    fits(coop)
    coop.get_by_role("link", name="Members").click()
    expect(coop.get_by_role("cell", name="€52.50")).to_be_visible()  # the wallet: 40 EUR and now 12.50
    coop.get_by_role("link", name="Audit").click()
    coop.get_by_role("button", name="Run the whole audit").click()
    expect(coop.locator("#audit-verdict")).to_contain_text("Pass")
    fits(coop)
    coop.get_by_role("link", name="Money").click()
    coop.get_by_label("Member").select_option(driver)
    coop.get_by_label("Amount (EUR)").fill("1.00")
    coop.get_by_role("button", name="Record it").click()
    expect(coop.locator("#money-done")).to_contain_text("deposit of €1.00")
    coop.get_by_role("link", name="Audit").click()
    coop.get_by_role("button", name="Check the new entries").click()
    expect(coop.locator("#audit-verdict")).to_contain_text("Pass: ")
    expect(coop.locator("#audit-verdict")).to_contain_text(" verified before)")
    coop.get_by_role("link", name="Checkpoints").click()
    expect(coop.get_by_role("heading", name="Witness checkpoints")).to_be_visible()
    assert not errors
    beside = street.run("driver", "wallet", "balance", ok=False)  # a second node of the wallet's key: refused
    assert beside.returncode == 2 and "use its web app (`wattshare app url`)" in beside.stderr
    assert street.stop() == [0, 0, 0]  # the co-op's, the host's and the wallet's daemons, apps and all, stop cleanly


@pytest.mark.timeout(180)
def test_a_host_edits_prices_and_a_bad_value_is_refused_in_words(town, browser):
    street, urls = town
    host, errors = page_of(browser, f"{urls['host']}/#prices")
    host.get_by_label("Price per kWh (EUR)", exact=True).fill("lots")
    host.get_by_role("button", name="Save and re-sign the ad").click()
    expect(host.get_by_role("alert")).to_contain_text("must be an amount like 0.12")
    host.get_by_label("Price per kWh (EUR)", exact=True).fill("0.33")
    host.get_by_role("button", name="Save and re-sign the ad").click()
    expect(host.locator("#prices-saved")).to_contain_text("seq 2")
    ads = street.json("host", "host", "status")
    assert ads["ads"] == 1
    assert 'peak = "0.33"' in (street.tmp / "host" / "config.toml").read_text()
    assert not errors


def post(url, path, body, headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method="POST",
                                     headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.timeout(180)
def test_requests_from_another_site_or_without_the_pages_token_are_refused(town, browser):
    street, urls = town
    wallet = urls["driver"]
    with urllib.request.urlopen(f"{wallet}/api/session", timeout=10) as response:
        csrf = json.loads(response.read())["csrf"]
    own = {"origin": wallet, "x-csrf-token": csrf}
    body = {"lat": 52.536, "lon": 13.418, "start": 1, "end": 2}
    assert post(wallet, "/api/wallet/find", body, {"x-csrf-token": csrf})[0] == 403  # no Origin
    assert post(wallet, "/api/wallet/find", body, {**own, "origin": urls["host"]})[0] == 403
    assert post(wallet, "/api/wallet/find", body, {"origin": wallet})[0] == 403  # no CSRF token
    status, said = post(wallet, "/api/wallet/find", body, {**own, "host": f"rebound.example:{wallet.rsplit(':', 1)[1]}"})
    assert status == 421 and "its own address" in said["error"]
    status, said = post(wallet, "/api/wallet/book", {"ad": "9", "start": 1, "end": 2, "cap": "5"}, own)
    assert status == 400 and "no ad '9' in the last search" in said["error"]  # the gate passed: a refusal in words
    for bad, words in [({**body, "lat": "north"}, "lat must be a number from -90 to 90"),
                       ({**body, "start": 2**60}, "start must be a whole number"),
                       ({**body, "radius_m": 10**9}, "radius_m must be a number from 100 to 50000"),
                       (b"{not json", "the request is not JSON"), (b"[1, 2]", "must be a JSON object"),
                       (b"{" + b" " * 20_000 + b"}", "at most 16384 bytes")]:
        status, said = post(wallet, "/api/wallet/find", bad, own)
        assert status == 400 and words in said["error"], (bad, said)
    assert post(wallet, "/api/wallet/bookings/00ff/cancel", {}, own)[1]["error"].startswith("no booking(s) start with")
    assert post(wallet, "/api/wallet/nothing-here", {}, own)[0] == 404

    evil, _ = page_of(browser, urls["host"])  # a page of another origin posts a form to the wallet's app
    with evil.expect_response(f"{wallet}/api/wallet/book") as refused:
        evil.evaluate("""url => {
            const form = Object.assign(document.createElement("form"), {method: "POST", action: url, enctype: "text/plain"});
            form.append(Object.assign(document.createElement("input"), {name: '{"ad": "1", "x": "', value: '"}'}));
            document.body.append(form);
            form.submit();
        }""", f"{wallet}/api/wallet/book")
    assert refused.value.status == 403
    assert street.json("host", "host", "bookings") == []


def pairing_link(text):
    [link] = re.findall(r"open (https://\S+/#pair=\S+)", text)
    return link


@pytest.mark.timeout(240)
def test_on_the_home_network_only_a_paired_device_gets_in_over_https(internet, playwright, tmp_path):
    town = internet
    settle_in(town, run_options=("--ui", f"{town.lab.ip('hostA')}:8470"))
    app = f"https://{town.lab.ip('hostA')}:8470"
    log = (tmp_path / "host.log").read_text()
    link = pairing_link(log)  # printed once, with its QR code
    assert "█" in log and "app certificate sha256=" in log
    stored = (tmp_path / "host" / "app-pairing")
    assert stored.stat().st_mode & 0o077 == 0 and link.rsplit("=", 1)[1] not in stored.read_text()
    chromium = tmp_path / "chromium-on-the-lan"  # the browser of a laptop on home A's network
    chromium.write_text(f"#!/bin/sh\nexec ip netns exec {town.lab.ns('wallboxA')} {CHROMIUM} \"$@\"\n")
    chromium.chmod(0o755)
    browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
    try:
        context = browser.new_context(viewport=PHONE, ignore_https_errors=True)  # the node's own certificate
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto(f"{app}/")
        expect(page.get_by_role("heading", name="This device is not paired")).to_be_visible()
        assert page.evaluate("fetch('/api/host/status').then(r => r.status)") == 401
        page.goto(f"{app}/#pair=not-the-token")
        expect(page.get_by_role("alert")).to_contain_text("not this node's current one")
        page.goto(link)
        expect(page.locator("#wallbox")).to_contain_text("driveway connected")
        [cookie] = context.cookies()
        assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
        assert page.evaluate("document.cookie") == ""  # the page's scripts never see it
        fresh = pairing_link(town.run("host", "app", "pair").stdout)  # a new link unpairs every device
        page.reload()
        expect(page.get_by_role("heading", name="This device is not paired")).to_be_visible()
        page.goto(fresh)
        expect(page.locator("#wallbox")).to_contain_text("driveway connected")
    finally:
        browser.close()
