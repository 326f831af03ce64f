"""Command-line values checked where they are typed: network addresses and points; shared options.

A bad value is refused at once with one line naming the flag and an example (exit 2),
not accepted into a config file to fail later in the program's own words.
"""

from __future__ import annotations

import click
import multiaddr

from wattshare.node import peer_of_address

from ._errors import fail


def bootstrap_addresses(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A click callback: each --bootstrap must be a full /p2p/ address."""
    for value in values:
        try:
            peer_of_address(value)
        except Exception:  # noqa: BLE001 - the multiaddr parser raises several types
            fail(f"--bootstrap must be a co-op node's full address, like /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW... "
                 f"(`wattshare coop status` prints it), not {value!r}")
    return values


def listen_address(_: click.Context, __: click.Parameter, value: str) -> str:
    """A click callback: --listen must be a libp2p TCP address."""
    try:
        ok = "tcp" in [protocol.name for protocol in multiaddr.Multiaddr(value).protocols()]
    except Exception:  # noqa: BLE001 - the multiaddr parser raises several types
        ok = False
    if not ok:
        fail(f"--listen must be a libp2p address like /ip4/0.0.0.0/tcp/4001, not {value!r}")
    return value


def announce_addresses(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A click callback: each --announce must be an /ip4/ or /ip6/ TCP address with a port."""
    for value in values:
        try:
            protocols = [protocol.name for protocol in multiaddr.Multiaddr(value).protocols()]
        except Exception:  # noqa: BLE001 - the multiaddr parser raises several types
            protocols = []
        if protocols[:2] not in (["ip4", "tcp"], ["ip6", "tcp"]) or "p2p" in protocols:
            fail(f"--announce must be this node's public address like /ip4/203.0.113.7/tcp/4001, not {value!r}")
    return values


def point(text: str, flag: str) -> tuple[float, float]:
    """LAT,LON in degrees, each in range."""
    try:
        lat, lon = (float(x) for x in text.split(","))
    except ValueError:
        fail(f"{flag} must be LAT,LON like 52.5365,13.4175, not {text!r}")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        fail(f"{flag}: a latitude is between -90 and 90 and a longitude between -180 and 180, not {text!r}")
    return lat, lon


full_option = click.option(
    "--full", is_flag=True,
    help="Keep and check the co-op's whole ledger (every member's feed), as a co-op node does. By default this "
         "home keeps only the feeds it needs: the co-op's, its own, and its hosts' or drivers'.")
