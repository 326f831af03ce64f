"""`wattshare host ...`: set up a shared charger, run its node daemon, manage bookings."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
import trio

from wattshare.node import (
    AdminError,
    Approval,
    Curve,
    Node,
    OcppEndpoint,
    Wallbox,
    cell_of,
    client_context,
    make_certificate,
    node_commands,
    server_context,
)
from wattshare.protocol import AccessInfo

from ._args import announce_addresses, bootstrap_addresses, full_option, listen_address
from ._charger import CONNECTORS, TERMS, amount, charger_ad, days, hours
from ._daemon import ask, configure_logging, daemon, log, refuse_a_second_daemon, run_trio, show_status
from ._errors import fail
from ._home import Home, clock_from_env
from ._view import Context, booking_table, emit, money, pass_context
from .web import AppOptions, app_options, start_app
from .web import _host as host_view

DEFAULT_OCPP = "127.0.0.1:8887"


@click.group("host")
def host_group() -> None:
    """Share your charger: set it up, run its node, see bookings and earnings.

    \b
    Example:
      wattshare host init --lat 52.5365 --lon 13.4175 --address "Kollwitzstr. 1" \\
          --off-peak 23:00-07:00@0.12 --peak 0.30 --coop 12D3Koo... --bootstrap /ip4/...
      wattshare host run
    """


def _ocpp(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        fail(f"--ocpp must be HOST:PORT like {DEFAULT_OCPP}, not {text!r}")
    return host, int(port)


def _password(charger: dict) -> str:
    """The wallbox's OCPP password, as `host init` generated it."""
    if not charger.get("ocpp_password"):
        fail("config.toml has no [charger] ocpp_password (made before wallboxes had to log in); "
             "run `wattshare host init --force` and give the wallbox the password it prints")
    return charger["ocpp_password"]


@host_group.command("init")
@click.option("--lat", type=click.FloatRange(-90, 90), required=True, help="Charger latitude (kept exact, locally).")
@click.option("--lon", type=click.FloatRange(-180, 180), required=True, help="Charger longitude.")
@click.option("--country", default="DEU", show_default=True,
              help="The charger's country, ISO 3166-1 alpha-3 (as OCPI gives it: DEU, FRA, NLD...).")
@click.option("--address", required=True, help="Exact address; only a booked driver ever sees it.")
@click.option("--access-code", default="", help="Gate or garage code, sealed to booked drivers.")
@click.option("--instructions", default="", help="How to find the wallbox, sealed to booked drivers.")
@click.option("--charger-id", default="driveway", show_default=True, help="Name of the charger (also its OCPP id).")
@click.option("--connector", type=click.Choice(sorted(CONNECTORS)), default="type2", show_default=True)
@click.option("--max-kw", type=click.FloatRange(1, 350), default=11.0, show_default=True, help="Wallbox power.")
@click.option("--currency", default="EUR", show_default=True)
@click.option("--off-peak", default="", help="Cheaper hours and price per kWh, e.g. 23:00-07:00@0.12.")
@click.option("--peak", default="0.30", show_default=True, help="Price per kWh at all other times.")
@click.option("--flat", default="0", show_default=True, help="Fixed fee per session.")
@click.option("--hours", "open_hours", default="00:00-00:00", show_default=True,
              help="Daily bookable hours (00:00-00:00: all day; 18:00-08:00 wraps past midnight).")
@click.option("--days", "open_days", default="mon-sun", show_default=True,
              help="Days the hours apply to: mon-fri, sat,sun, fri-mon ...")
@click.option("--tz", default=lambda: os.environ.get("TZ") or "Europe/Berlin", show_default="$TZ or Europe/Berlin",
              help="IANA time zone of the charger.")
@click.option("--cancel-until", type=click.IntRange(0), default=60, show_default=True,
              help="Free cancellation until this many minutes before the start.")
@click.option("--cancel-fee", default="0", show_default=True, help="Fee for a later cancellation.")
@click.option("--noshow-timeout", type=click.IntRange(1), default=30, show_default=True,
              help="Minutes after the start without a session that make a no-show.")
@click.option("--noshow-fee", default="0", show_default=True)
@click.option("--approval", type=click.Choice([a.value for a in Approval]), default="auto", show_default=True,
              help="manual: each request waits for `wattshare host approve`.")
@click.option("--ocpp", "ocpp_address", default=DEFAULT_OCPP, show_default=True,
              help="Where your wallbox connects (OCPP 1.6J: ws://HOST:PORT/ocpp/<charger id>).")
@click.option("--ocpp-tls", is_flag=True,
              help="OCPP security profile 2: wss:// with a certificate this host makes (trust it on the wallbox).")
@click.option("--listen", default="/ip4/0.0.0.0/tcp/0", show_default=True, callback=listen_address,
              help="libp2p listen address.")
@click.option("--announce", multiple=True, callback=announce_addresses,
              help="A public address peers reach this node at (repeatable), e.g. /ip4/203.0.113.7/tcp/4001: "
                   "for a node on a public IP or behind a port forward; without it the node tells its own addresses.")
@click.option("--relay", is_flag=True,
              help="Also relay for your co-op's members behind NAT (for a host with a public address).")
@click.option("--bootstrap", multiple=True, callback=bootstrap_addresses,
              help="A co-op node's full /p2p/ address (repeatable).")
@click.option("--coop", required=True, help="Your co-op's peer id (it keeps the ledger you settle on).")
@full_option
@click.option("--force", is_flag=True, help="Replace an existing key and config in this home.")
@pass_context
def init(ctx: Context, lat: float, lon: float, country: str, address: str, access_code: str, instructions: str, charger_id: str,
         connector: str, max_kw: float, currency: str, off_peak: str, peak: str, flat: str, open_hours: str,
         open_days: str, tz: str, cancel_until: int, cancel_fee: str, noshow_timeout: int, noshow_fee: str, approval: str,
         ocpp_address: str, ocpp_tls: bool, listen: str, announce: tuple[str, ...],
         relay: bool, bootstrap: tuple[str, ...], coop: str, full: bool, force: bool) -> None:
    """Create this host's key and config: where the charger is, what it costs, the terms.

    \b
    Example:
      wattshare host init --lat 52.5365 --lon 13.4175 --address "Kollwitzstr. 1, 10405 Berlin" \\
          --off-peak 23:00-07:00@0.12 --peak 0.30 --max-kw 11 --coop 12D3KooW... \\
          --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
    """
    _ocpp(ocpp_address)
    hours(open_hours, "--hours")
    charger = {
        "id": charger_id, "lat": lat, "lon": lon, "country": country.upper(), "tz": tz, "connector": connector, "max_kw": max_kw,
        "currency": currency, "off_peak": off_peak, "peak": peak, "flat": flat, "hours": open_hours,
        "days": days(open_days),
        "approval": approval, "ocpp": ocpp_address, "ocpp_password": secrets.token_urlsafe(18), "ocpp_tls": ocpp_tls,
        "terms": dict(zip(TERMS, (cancel_until, amount(cancel_fee, currency, "--cancel-fee"), noshow_timeout,
                                  amount(noshow_fee, currency, "--noshow-fee"), 5, 7 * 24 * 60))),
    }
    ad = charger_ad(charger, bytes(32), 1, clock_from_env()())  # checks every field before anything is written
    identity = ctx.home.create(force)
    ctx.home.write_config({
        "node": {"listen": listen, "announce": list(announce), "relay": relay, "bootstrap": list(bootstrap), "coop": coop,
                 "full": full},
        "charger": charger,
        "access": {"address": address, "code": access_code, "instructions": instructions},
    })
    url = f"{'wss' if ocpp_tls else 'ws'}://{ocpp_address}/ocpp/{charger_id}"
    data = {"peer_id": identity.peer_id, "home": str(ctx.home.path), "geohash": ad.geohash, "cell": cell_of(ad.geohash),
            "charger": charger_id, "ocpp": url, "ocpp_password": charger["ocpp_password"]}
    trust = ""
    if ocpp_tls:
        key, cert = _tls_files(ctx.home)
        data["ocpp_certificate"] = str(cert)
        data["ocpp_fingerprint"] = make_certificate(_ocpp(ocpp_address)[0], key, cert, clock_from_env()())
        trust = (f"  trust this host's certificate on the wallbox: install {cert} as its central system root\n"
                 f"  certificate, or pin its SHA-256 fingerprint {data['ocpp_fingerprint']}\n")
    emit(ctx, data,
         f"host [bold]{identity.peer_id}[/] ready in {ctx.home.path}\n"
         f"advertised location: geohash {ad.geohash} (about 150 m; the exact address stays here)\n"
         f"point your wallbox at {url} with OCPP security profile {2 if ocpp_tls else 1}:\n"
         f"  charge point id {charger_id}, password (AuthorizationKey) {charger['ocpp_password']}\n"
         f"{trust}then run: wattshare host run")


def _tls_files(home: Home) -> tuple[Path, Path]:
    """Where `host init --ocpp-tls` keeps the OCPP key (0600) and certificate."""
    return home.path / "ocpp-key.pem", home.path / "ocpp-cert.pem"


def _endpoint(home: Home, charger: dict) -> OcppEndpoint:
    """The wallbox endpoint of the config: its password, address and (profile 2) TLS."""
    tls = server_context(*_tls_files(home)) if charger.get("ocpp_tls") else None
    return OcppEndpoint({charger["id"]: _password(charger)}, *_ocpp(charger["ocpp"]), tls=tls)


@host_group.command("run")
@click.option("--simulate-wallbox", is_flag=True, help="Also run a simulated wallbox on the OCPP port (demo, tests).")
@click.option("--wallbox-kw", type=click.FloatRange(1, 22), default=7.4, show_default=True,
              help="Power of the simulated wallbox's car.")
@click.option("--sync-interval", type=click.FloatRange(0.5), default=30.0, show_default=True,
              help="Seconds between pulls of the ledger from connected peers (anti-entropy).")
@click.option("--fault-hooks", is_flag=True, hidden=True,
              help="Let the admin socket inject faults (wattshare.testing; the chaos run).")
@app_options
@pass_context
def run(ctx: Context, simulate_wallbox: bool, wallbox_kw: float, sync_interval: float, fault_hooks: bool,
        app: AppOptions) -> None:
    """Run this host's node in the foreground until Ctrl-C (SIGINT) or SIGTERM, with its
    web app (bookings to approve, the live session, earnings, prices and hours).

    \b
    Examples:
      wattshare host run
      wattshare host run --ui 0.0.0.0:8470     # the app on your home network too
    """
    refuse_a_second_daemon(ctx.home)
    configure_logging(ctx.debug)
    config = ctx.home.config()
    charger, access = config["charger"], config["access"]
    identity = ctx.home.identity()
    clock = clock_from_env()
    boxes: list[Wallbox] = []  # the simulated wallbox, if any
    node = Node(identity, listen=config["node"]["listen"], announce=config["node"].get("announce", []),
                relay=config["node"].get("relay", False), state=ctx.home.state,
                access=AccessInfo(address=access["address"], code=access["code"], instructions=access["instructions"]),
                approval=Approval(charger["approval"]), ledger=ctx.home.ledger(), admin=ctx.home.admin,
                ocpp=_endpoint(ctx.home, charger), clock=clock, full=config["node"].get("full", False),
                sync_interval=sync_interval,
                admin_commands={"publish": lambda _: _publish(node, ctx)})
    hooks = None
    if fault_hooks:
        from wattshare.testing import FaultHooks  # only here: the production daemon is never patched

        hooks = FaultHooks(node)
        node.admin_commands |= hooks.commands | {"wallbox-drop": lambda r: _drop(boxes, r)}

    async def started(node: Node, nursery: trio.Nursery) -> None:
        signed = _publish(node, ctx)
        assert node.sessions is not None
        port = node.sessions.central.port
        where = _ocpp(charger["ocpp"])[0].replace("0.0.0.0", "127.0.0.1")  # listening on all: reach it on loopback
        tls = client_context(_tls_files(ctx.home)[1]) if charger.get("ocpp_tls") else None
        log.info("advertising charger=%s seq=%d geohash=%s ocpp=%s://%s:%d/ocpp/%s", signed["charger"],
                 signed["seq"], signed["geohash"], "wss" if tls else "ws", where, port, charger["id"])
        if hooks is not None:
            nursery.start_soon(hooks.run)
        table = node_commands(node) | node.admin_commands
        await start_app(nursery, node, ctx.home, app, lambda _, watchers: {
            "host": host_view.routes(node, ctx.home, table, watchers)})
        if simulate_wallbox:
            boxes.append(Wallbox(charger["id"], port, clock, _password(charger), host=where,
                                 curve=Curve(power_w=round(wallbox_kw * 1000)), tls=tls))
            nursery.start_soon(boxes[0].run)

    run_trio(daemon, node, config["node"]["bootstrap"], started)


def _drop(boxes: list[Wallbox], request: dict) -> dict:
    """Cut the simulated wallbox's link for a while (a fault the chaos run injects)."""
    if not boxes:
        raise AdminError("this host runs no simulated wallbox")
    boxes[0].drop(float(request.get("seconds", 2.0)))
    return {"dropped": boxes[0].charge_point_id}


def _publish(node: Node, ctx: Context) -> dict:
    """Sign the configured ad afresh (next seq, new expiry) and announce it."""
    charger = ctx.home.config()["charger"]
    current = node.board.ads.get(charger["id"])
    ad = charger_ad(charger, node.identity.public_key, current.message.seq + 1 if current else 1, node.clock())
    node.announce(ad)
    return {"charger": ad.charger_id, "seq": ad.seq, "geohash": ad.geohash, "cell": cell_of(ad.geohash)}


@host_group.command("status")
@pass_context
def status(ctx: Context) -> None:
    """Show the running node: peer id, addresses, peers, ads, pending requests.

    \b
    Example:
      wattshare host status --json
    """
    show_status(ctx)


@host_group.command("bookings")
@pass_context
def bookings(ctx: Context) -> None:
    """List the bookings of this charger (times in your local time).

    \b
    Example:
      wattshare host bookings
    """
    rows = ask(ctx.home, {"cmd": "bookings"})
    emit(ctx, rows, booking_table(rows, "Bookings"))


def _decide(ctx: Context, booking: str, cmd: str) -> None:
    pending = ask(ctx.home, {"cmd": "status"})["pending"]
    matches = [b for b in pending if b.startswith(booking.lower())]
    if len(matches) != 1:
        fail(f"{len(matches) or 'no'} pending request(s) start with {booking!r}; see `wattshare host status`")
    data = ask(ctx.home, {"cmd": cmd, "booking": matches[0]})
    emit(ctx, data, f"{cmd}d booking {matches[0][:12]}")


@host_group.command("approve")
@click.argument("booking")
@pass_context
def approve(ctx: Context, booking: str) -> None:
    """Confirm a pending booking request (BOOKING: its id, or the start of it).

    \b
    Example:
      wattshare host approve 3fa9c2
    """
    _decide(ctx, booking, "approve")


@host_group.command("decline")
@click.argument("booking")
@pass_context
def decline(ctx: Context, booking: str) -> None:
    """Refuse a pending booking request (BOOKING: its id, or the start of it).

    \b
    Example:
      wattshare host decline 3fa9c2
    """
    _decide(ctx, booking, "decline")


@host_group.command("earnings")
@pass_context
def earnings(ctx: Context) -> None:
    """Show what your charger has earned, from the ledger (settlements and fees).

    \b
    Example:
      wattshare host earnings
    """
    data = ask(ctx.home, {"cmd": "balance"})
    lines = [money(v, c) for c, v in sorted(data["balances"].items())] or ["nothing yet"]
    emit(ctx, data, f"earnings of {data['member']}: " + ", ".join(lines))


@host_group.group("ad")
def ad_group() -> None:
    """Your charger's advertisement.

    \b
    Example:
      wattshare host ad update
    """


@ad_group.command("update")
@pass_context
def ad_update(ctx: Context) -> None:
    """Re-sign the ad from config.toml (next seq) and re-announce it on the DHT.

    \b
    Example:
      $EDITOR ~/.local/share/wattshare/config.toml && wattshare host ad update
    """
    data = ask(ctx.home, {"cmd": "publish"})
    emit(ctx, data, f"announced {data['charger']} at seq {data['seq']} (geohash {data['geohash']}, DHT cell {data['cell']})")

