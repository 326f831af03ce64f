"""One benchmark peer in its own process: a node that joins, may advertise, echoes frames.

    python -m bench.peer LABEL [--bootstrap ADDRESS] [--ad LAT,LON]

`bench.network` starts one of these per node, so every node has a Python interpreter
(and its share of the cores) to itself, as on a real street. The peer prints
`ready <address>` once it has joined and published its ad, then serves until its
standard input closes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import trio
from libp2p.custom_types import TProtocol

from wattshare.node import Node
from wattshare.node._framing import FrameStream, serve, varint
from wattshare.protocol import AccessInfo, BookingTerms, ChargerAd, Connector, DayOfWeek, Identity, WeeklyWindow, geo
from wattshare.testing import off_peak_tariff

ECHO = TProtocol("/wattshare-bench/echo/1.0.0")
NIGHT = 1_796_511_600  # 2026-12-06 00:00 Berlin: a night in the future of the sample


def identity(label: str) -> Identity:
    return Identity(hashlib.sha256(f"bench-network/{label}".encode()).digest())


def ad_at(host: Identity, lat: float, lon: float) -> ChargerAd:
    return ChargerAd(
        host=host.public_key, charger_id="driveway", seq=1, expires=NIGHT + 30 * 86_400,
        geohash=geo.encode(lat, lon, 7), country="DEU", tz="Europe/Berlin", connector=Connector.TYPE_2,
        max_power_w=11_000,
        tariff=off_peak_tariff(), terms=BookingTerms(),
        availability=(WeeklyWindow(days=tuple(DayOfWeek), start="00:00", end="00:00"),),
    )


async def echo(stream) -> None:
    """Answer one frame with the same frame: the raw libp2p round trip of the baseline."""

    async def respond(frames: FrameStream) -> None:
        data = await frames.read()
        await frames.stream.write(varint(len(data)) + data)

    await serve(stream, respond, 10)


def bench_node(label: str) -> Node:
    node = Node(identity(label), access=AccessInfo(address="withheld in benchmarks"))
    node.host.set_stream_handler(ECHO, echo)
    return node


async def run(label: str, bootstrap: str | None, position: tuple[float, float] | None) -> None:
    node = bench_node(label)
    async with node.running():
        if bootstrap:
            await node.join([bootstrap])
        if position:
            await node.publish(ad_at(node.identity, *position))
        print("ready", node.address, flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        while await stdin.receive_some(4096):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("label", help="names the peer's deterministic key")
    parser.add_argument("--bootstrap", help="full /p2p/ address to join through")
    parser.add_argument("--ad", help="LAT,LON of a charger to advertise")
    args = parser.parse_args()
    position = tuple(float(x) for x in args.ad.split(",")) if args.ad else None
    trio.run(run, args.label, args.bootstrap, position)


if __name__ == "__main__":
    main()
