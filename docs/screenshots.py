"""Phone-size screenshots of the web app for the README, taken from a live demo neighbourhood.

Runs `wattshare demo --keep` (a co-op, six hosts with simulated wallboxes, a driver's
`wallet run`, one accelerated clock), then, in Debian's Chromium at 390x844 driven by
Playwright: the driver finds chargers for the next free hours (`app-find.png`), books
the first, starts charging and watches it live (`app-live.png`), stops; then the
earnings of the host that earned most (`app-earnings.png`). Every process of the demo is
stopped at the end. Needs what the tests need (`pip install -e '.[test]'`, Debian's
`chromium`):

    python docs/screenshots.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect, sync_playwright

DOCS = Path(__file__).resolve().parent
CENTRE = ("52.5365", "13.4175")  # the demo's Kollwitzplatz
BERLIN = ZoneInfo("Europe/Berlin")


def url_of(home: Path) -> str:
    return json.loads((home / "app.json").read_text())["url"]


class DemoClock:
    """The demo's accelerated clock, read from the WATTSHARE_CLOCK it prints."""

    def __init__(self, said: str) -> None:
        speed, origin, anchor = (float(x) for x in re.search(r"WATTSHARE_CLOCK=([\d.:]+)", said)[1].split(":"))
        self.speed, self.origin, self.anchor = speed, origin, anchor

    def now(self) -> float:
        return self.origin + (time.time() - self.anchor) * self.speed

    def wait_until(self, t: float) -> None:
        time.sleep(max(0.0, (t - self.now()) / self.speed))


def local(t: float) -> str:
    return datetime.fromtimestamp(t, BERLIN).strftime("%Y-%m-%dT%H:%M")


def charge(page: Page, clock: DemoClock) -> None:
    start = (int(clock.now()) // 3600 + 2) * 3600
    page.get_by_label("Latitude").fill(CENTRE[0])
    page.get_by_label("Longitude").fill(CENTRE[1])
    page.get_by_label("From").fill(local(start))
    page.get_by_label("Until").fill(local(start + 2 * 3600))
    page.get_by_role("button", name="Find chargers").click()
    expect(page.get_by_role("article", name="Charger 1")).to_be_visible()
    page.screenshot(path=DOCS / "app-find.png")
    page.get_by_role("button", name="Book #1").click()
    page.get_by_label("Spend cap (EUR)").fill("20")
    page.get_by_role("button", name="Book", exact=True).click()
    expect(page.locator("#booking-state")).to_have_text("confirmed")
    clock.wait_until(start - 240)
    page.get_by_role("button", name="Start charging").click()
    expect(page.locator("#live-kwh")).not_to_have_text("0.00 kWh", timeout=30_000)
    clock.wait_until(clock.now() + 1800)
    page.locator("#live").scroll_into_view_if_needed()
    page.screenshot(path=DOCS / "app-live.png")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#settled")).to_be_visible(timeout=30_000)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="wattshare-screenshots-"))
    demo = subprocess.run([sys.executable, "-m", "wattshare.cli", "demo", "--keep", "--dir", str(root)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"})
    try:
        if demo.returncode != 0:
            raise SystemExit(f"the demo failed:\n{demo.stdout[-3000:]}{demo.stderr[-3000:]}")
        clock = DemoClock(demo.stdout)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                          timezone_id="Europe/Berlin", locale="en-GB")
            context.set_default_timeout(20_000)
            page = context.new_page()
            page.goto(f"{url_of(root / 'driver')}/#find")
            charge(page, clock)
            hosts = [url_of(home) for home in sorted(root.glob("host*"))]
            totals = {url: json.loads(urllib.request.urlopen(f"{url}/api/host/earnings", timeout=10).read())["total"]
                      for url in hosts}
            page.goto(f"{max(totals, key=totals.__getitem__)}/#earnings")
            expect(page.locator("#earned")).to_be_visible()
            page.screenshot(path=DOCS / "app-earnings.png")
            browser.close()
    finally:
        subprocess.run(["pkill", "-f", f"wattshare.cli --home {root}"], check=False)
    print(f"wrote {', '.join(str(DOCS / name) for name in ('app-find.png', 'app-live.png', 'app-earnings.png'))}")


if __name__ == "__main__":
    main()
