"""One driver of `bench.nat`, run inside its namespace of the lab: join, search, book, charge.

    python -m bench.nat_driver HOME BOOTSTRAP HOST_PEER_ID START END

It opens the wallet in HOME (made by `wattshare wallet init`, admitted and funded by the
co-op), joins through BOOTSTRAP, searches near the host until its charger shows, books
[START, END) (UTC seconds on the shared $WATTSHARE_CLOCK), charges the whole window and
prints one JSON line: when the booking was confirmed (real time), its round trip, the
path of the link to the host when the session settled, whether it settled and acked,
and how many receipts are missing from the chain the driver holds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import trio

from wattshare.cli._home import Home, clock_from_env
from wattshare.node import Node
from wattshare.protocol import Query

NEAR = (52.5360, 13.4180)


async def drive(home: Home, bootstrap: str, host_peer: str, start: int, end: int) -> dict:
    node = Node(home.identity(), listen="/ip4/0.0.0.0/tcp/0", state=home.state, ledger=home.ledger(),
                clock=clock_from_env(), gossip=False)
    async with node.running():
        await node.join([bootstrap])
        query = Query(lat_e6=round(NEAR[0] * 1e6), lon_e6=round(NEAR[1] * 1e6), radius_m=1_000, start=start, end=end)
        with trio.fail_after(60):
            while not (found := await node.search(query)):
                await trio.sleep(0.5)
        began = time.monotonic()
        booking = await node.book(found[0].ad.message, start, end, spend_cap=2_000)
        round_trip, booked_at = time.monotonic() - began, time.time()
        await node.clock.sleep_until(booking.request.message.terms.opening(start))
        charging = await node.charge(booking, timeout=120)
        seqs = [r.message.seq for r in charging.machine.receipts]
        return {"booked_at": booked_at, "round_trip_s": round_trip,
                "path": node.reachability.links().get(host_peer, "gone"),
                "settled": charging.settlement is not None and charging.answer is not None
                and type(charging.answer.message).__name__ == "SettlementAck",
                "receipts": len(seqs), "lost": (max(seqs) + 1 - len(set(seqs))) if seqs else 0}


def main() -> None:
    home, bootstrap, host_peer, start, end = sys.argv[1:6]
    print(json.dumps(trio.run(drive, Home(Path(home)), bootstrap, host_peer, int(start), int(end))), flush=True)


if __name__ == "__main__":
    main()
