"""`wattshare host wallbox`: a simulated wallbox that connects to a host's node over the LAN.

Theory of operation: the same OCPP 1.6J charge point the demo and `host run
--simulate-wallbox` use (`node.Wallbox`: boot, heartbeats, a charging curve, meter values),
run on its own, from another machine: an installer checks that the node's OCPP endpoint
is reachable on the LAN and takes the password before pointing the real wallbox at it,
and the NAT tests put it on the home LAN of the lab. It runs until Ctrl-C or SIGTERM, on
the node's clock ($WATTSHARE_CLOCK) like everything else.
"""

from __future__ import annotations

import signal
from pathlib import Path
from urllib.parse import urlsplit

import click
import trio

from wattshare.node import Curve, Wallbox, client_context

from ._daemon import configure_logging, log, run_trio
from ._errors import fail
from ._home import clock_from_env
from ._view import Context, pass_context


@click.command("wallbox")
@click.option("--url", required=True, help="The OCPP address `host init` printed: ws://HOST:PORT/ocpp/CHARGER_ID.")
@click.option("--password", required=True, help="The charge point's password `host init` printed.")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="For wss://: the host's ocpp-cert.pem.")
@click.option("--kw", type=click.FloatRange(1, 22), default=7.4, show_default=True, help="Power of the car.")
@pass_context
def wallbox(ctx: Context, url: str, password: str, ca: str | None, kw: float) -> None:
    """Run a simulated wallbox against a host's node, from any machine on its LAN.

    \b
    Example:
      wattshare host wallbox --url ws://192.168.1.10:8887/ocpp/driveway --password PASSWORD
    """
    parts = urlsplit(url)
    charger = parts.path.removeprefix("/ocpp/")
    if parts.scheme not in ("ws", "wss") or not parts.hostname or not parts.port or "/" in charger or not charger:
        fail(f"--url must be ws://HOST:PORT/ocpp/CHARGER_ID (or wss://) as `host init` printed it, not {url!r}")
    if parts.scheme == "wss" and ca is None:
        fail("a wss:// address needs --ca with the host's ocpp-cert.pem (from its home folder)")
    configure_logging(ctx.debug)
    box = Wallbox(charger, parts.port, clock_from_env(), password, host=parts.hostname,
                  curve=Curve(power_w=round(kw * 1000)), tls=client_context(Path(ca)) if ca else None)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(box.run)
                log.info("wallbox %s connecting to %s", charger, url)
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()

    run_trio(main)
