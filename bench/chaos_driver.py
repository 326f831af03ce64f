"""One chaos-run driver in a process of its own: books and charges, over and over.

    python -m bench.chaos_driver HOME SEED LAT,LON

The driver's wallet home is HOME (made by `wattshare wallet init`); it shares the run's
clock through $WATTSHARE_CLOCK. It first finishes what a killed earlier run left (every
started or confirmed booking whose window is still open is charged, re-attaching to the
host's session), then loops: search 3 km around LAT,LON for a window starting 10-40
minutes ahead, book a random result with a 10 EUR cap, wait for the window, charge to
the settlement. Each outcome is one JSON line on stdout. When stdin closes it stops
booking (a session under way is left to its host) and only keeps its ledger in sync.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import trio

from wattshare.cli._home import Home, clock_from_env
from wattshare.node import BookingRejected, Node
from wattshare.protocol import Booking, BookingState, Query

CAP = 1_000
RETRIES = 5
SESSION = 30 * 60


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


def open_bookings(node: Node) -> list[Booking]:
    now = node.clock()
    return [booking for state in (BookingState.STARTED, BookingState.CONFIRMED) for row in node.store.bookings(state)
            if row["end"] > now and (booking := node.store.booking(row["booking_id"])) is not None]


async def charge(node: Node, booking: Booking) -> None:
    """Charge to the settlement, re-attaching (as a person would retry) if the host
    vanishes, while the window is open."""
    await node.clock.sleep_until(booking.request.message.start)
    for attempt in range(RETRIES):
        try:
            charging = await node.charge(booking, timeout=60)
            say(event="settled", booking=booking.id.hex(), amount=charging.settlement.message.amount,
                energy_wh=charging.settlement.message.energy_wh, attempts=attempt + 1)
            return
        except Exception as error:  # noqa: BLE001 - every failure is an outcome here
            reason = str(getattr(error, "reason", type(error).__name__))
            if attempt + 1 == RETRIES or node.clock() >= booking.request.message.end:
                say(event="failed", booking=booking.id.hex(), reason=reason)
                return
            await trio.sleep(2.0)


async def book_one(node: Node, rng: random.Random, lat: float, lon: float) -> Booking | None:
    start = int(node.clock()) + rng.randrange(600, 2400)
    query = Query(lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), radius_m=3000, start=start,
                  end=start + SESSION, energy_wh=5_000)
    results = await node.search(query)
    say(event="attempt", found=len(results))
    if not results:
        say(event="rejected", reason="nothing_found")
        return None
    try:
        booking = await node.book(rng.choice(results).ad.message, start, start + SESSION, CAP)
    except BookingRejected as rejected:
        say(event="rejected", reason=str(rejected.reason))
        return None
    except Exception as error:  # noqa: BLE001 - a host killed mid-booking is an outcome here
        say(event="rejected", reason=type(error).__name__)
        return None
    say(event="confirmed", booking=booking.id.hex())
    return booking


async def main(home: Home, seed: int, lat: float, lon: float) -> None:
    rng = random.Random(seed)
    node = Node(home.identity(), listen=home.config()["node"]["listen"], state=home.state, ledger=home.ledger(),
                clock=clock_from_env(), gossip=False, sync_interval=5.0)
    async with node.running():
        while not await node.join(home.config()["node"]["bootstrap"]):
            await trio.sleep(1.0)  # the co-op node may be down just now: keep trying, as a phone would
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_stdin_closes, nursery.cancel_scope)
            for booking in open_bookings(node):
                await charge(node, booking)
            while True:
                booking = await book_one(node, rng, lat, lon)
                if booking is not None:
                    await charge(node, booking)
                else:
                    await trio.sleep(1.0)
        await trio.sleep_forever()  # quiet: no more bookings, but the ledger keeps syncing until SIGTERM


async def _until_stdin_closes(scope: trio.CancelScope) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    while await stdin.receive_some(4096):
        pass
    scope.cancel()


if __name__ == "__main__":
    where = sys.argv[3].split(",")
    trio.run(main, Home(Path(sys.argv[1])), int(sys.argv[2]), float(where[0]), float(where[1]))
