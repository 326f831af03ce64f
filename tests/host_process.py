"""A host node in a process of its own, for the crash test (kill -9, then restart).

    python tests/host_process.py HOME LISTEN OCPP_PORT COOP_HEX SPEED ORIGIN ANCHOR

HOME holds the host's key (`host.key`), node state (`host.db`) and ledger
(`ledger.db`, of the co-op COOP_HEX). The node listens on LISTEN, serves OCPP on
OCPP_PORT, runs on the clock (SPEED, ORIGIN, ANCHOR) the test shares, advertises the
fixtures' ad once, prints `ready <address>` and runs until killed.
"""

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))

from fixtures import make_ad, ocpp_endpoint

from wattshare.ledger import LedgerStore
from wattshare.node import Node
from wattshare.node._clock import Clock
from wattshare.protocol import AccessInfo, Identity


async def main(home: Path, listen: str, ocpp_port: int, coop: bytes, clock: Clock) -> None:
    identity = Identity.load(home / "host.key")
    ledger = LedgerStore(home / "ledger.db", coop)
    node = Node(identity, listen=listen, state=home / "host.db", access=AccessInfo(address="12 Acacia Avenue"),
                ledger=ledger, ocpp=ocpp_endpoint(port=ocpp_port), clock=clock)
    async with node.running():
        if not node.board.ads:
            await node.publish(make_ad(host=identity.public_key, max_power_w=7_000))
        print("ready", node.address, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    home, listen, port, coop, speed, origin, anchor = sys.argv[1:]
    trio.run(main, Path(home), listen, int(port), bytes.fromhex(coop),
             Clock(float(speed), float(origin), float(anchor)))
