"""`wattshare wallet ...`: a neighbour finds, books, charges, pays and checks receipts.

Each command runs a short-lived node (`_daemon.short_lived`): it joins the bootstrap
peers, pulls the ledger, does its job and, if it signed a ledger entry (an ack or a
dispute), waits until a bootstrap peer holds it before leaving. Bookings, sessions and
the last search's ads stay in the wallet's `node.db`, so every command can name a
booking by the first characters of its id and an ad by its rank in the last search.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

import click
import trio
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from wattshare.node import BookingRejected, Charging, Node, NodeError, Slot
from wattshare.protocol import (
    AccessInfo,
    Booking,
    ChargerAd,
    Dispute,
    Query,
    Reason,
    RemoteProtocolError,
)

from ._charger import CONNECTORS, amount
from ._daemon import log, run_trio, short_lived
from ._errors import fail
from ._home import clock_from_env, member_key
from ._view import Context, booking_table, console, emit, kwh, local_time, money, pass_context

EXIT_REFUSED = 1


@click.group("wallet")
def wallet_group() -> None:
    """Charge at a neighbour's: find, book, start, watch, stop, pay, check receipts.

    \b
    Example:
      wattshare wallet init --coop 12D3KooW... --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
      wattshare wallet find --near 52.5365,13.4175 --radius 2km --from 23:00 --to 06:00
      wattshare wallet book 1 --from 23:00 --to 06:00 --cap 20
    """


@wallet_group.command("init")
@click.option("--coop", required=True, help="Your co-op's peer id.")
@click.option("--bootstrap", multiple=True, required=True, help="A co-op node's full /p2p/ address (repeatable).")
@click.option("--listen", default="/ip4/127.0.0.1/tcp/0", show_default=True, help="libp2p listen address.")
@click.option("--currency", default="EUR", show_default=True, help="The currency you pay in.")
@click.option("--force", is_flag=True, help="Replace an existing key and config in this home.")
@pass_context
def init(ctx: Context, coop: str, bootstrap: tuple[str, ...], listen: str, currency: str, force: bool) -> None:
    """Create this wallet's key and config.

    \b
    Example:
      wattshare wallet init --coop 12D3KooW... --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
    """
    identity = ctx.home.create(force)
    ctx.home.write_config({"node": {"listen": listen, "bootstrap": list(bootstrap), "coop": coop},
                           "wallet": {"currency": currency}})
    emit(ctx, {"peer_id": identity.peer_id, "home": str(ctx.home.path)},
         f"wallet [bold]{identity.peer_id}[/] ready in {ctx.home.path}\n"
         "ask your co-op's treasurer to record your deposit, then: wattshare wallet find --help")


def _node(ctx: Context) -> Node:
    config = ctx.home.config()["node"]
    return Node(ctx.home.identity(), listen=config["listen"], state=ctx.home.state, ledger=ctx.home.ledger(),
                clock=clock_from_env(), gossip=False)


def _with_node(ctx: Context, job: Callable[[Node], Awaitable[Any]]) -> Any:
    """Run `job` on a short-lived wallet node; push any ledger entry it signed."""
    node = _node(ctx)
    bootstrap = ctx.home.config()["node"]["bootstrap"]
    me, coop = node.identity.public_key, member_key(ctx.home.config()["node"]["coop"])

    async def main() -> Any:
        async with short_lived(node, bootstrap) as live:
            before = live.ledger.sizes().get(me, 0)
            for booking_id in await live.ask_again_pending():
                log.warning("booking %s: its host's answer has not reached this wallet yet; the next wallet "
                            "command asks again", booking_id.hex()[:12])
            result = await job(live)
            if live.ledger.sizes().get(me, 0) > before and not await live.push_feed(coop):
                log.warning("the co-op's node did not take your new ledger entries yet; "
                            "your next wallet command will offer them again")
            return result

    return run_trio(main)


# --- finding and booking ---------------------------------------------------------------

def _when(text: str, after: dt.datetime, what: str) -> dt.datetime:
    """'23:00' (the next one after `after`, local time) or an ISO date and time."""
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        hour, minute = map(int, text.split(":"))
        if hour > 23 or minute > 59:
            fail(f"{what} {text!r} is not a time of day")
        moment = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return moment if moment > after else moment + dt.timedelta(days=1)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{what} must be a time like 23:00 or 2026-11-28T23:00, not {text!r}")
    return moment if moment.tzinfo else moment.astimezone()


def _window(ctx: Context, start: str, end: str) -> tuple[int, int]:
    now = dt.datetime.fromtimestamp(clock_from_env()()).astimezone()
    begin = _when(start, now, "--from")
    finish = _when(end, begin, "--to")
    if finish <= begin:
        fail("--to must come after --from")
    return int(begin.timestamp()), int(finish.timestamp())


def _distance(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(km|m)", text.strip().lower())
    if match is None:
        fail(f"--radius must be a distance like 2km or 500m, not {text!r}")
    return round(float(match[1]) * (1000 if match[2] == "km" else 1))


@wallet_group.command("find")
@click.option("--near", required=True, help="LAT,LON to search around.")
@click.option("--radius", default="2km", show_default=True, help="How far: 2km, 800m.")
@click.option("--from", "start", required=True, help="Start: 23:00 (next one) or 2026-11-28T23:00.")
@click.option("--to", "end", required=True, help="End: 06:00 (next one after the start) or a date and time.")
@click.option("--kwh", type=click.FloatRange(1, 200), default=20, show_default=True,
              help="Energy you want: the price column estimates it.")
@click.option("--connector", type=click.Choice(sorted(CONNECTORS)))
@click.option("--min-kw", type=click.FloatRange(0), default=0, help="Only chargers at least this powerful.")
@click.option("--max-price", help="Only chargers whose estimate for --kwh is at most this (e.g. 5.00).")
@pass_context
def find(ctx: Context, near: str, radius: str, start: str, end: str, kwh: float, connector: str | None,
         min_kw: float, max_price: str | None) -> None:
    """Find chargers near a point that are free for a window, nearest first.

    The rating is each host's record on the ledger: sessions settled, and how many of
    them its drivers did not dispute.

    \b
    Example:
      wattshare wallet find --near 52.5365,13.4175 --radius 2km --from 23:00 --to 06:00 --connector type2
    """
    try:
        lat, lon = (float(x) for x in near.split(","))
    except ValueError:
        fail(f"--near must be LAT,LON like 52.5365,13.4175, not {near!r}")
    begin, finish = _window(ctx, start, end)
    query = Query(lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), radius_m=_distance(radius), start=begin,
                  end=finish, energy_wh=round(kwh * 1000), connector=CONNECTORS[connector] if connector else None,
                  min_power_w=round(min_kw * 1000),
                  max_price=amount(max_price, ctx.home.config()["wallet"]["currency"], "--max-price")
                  if max_price else None)

    async def job(node: Node) -> tuple[list, dict]:
        results = await node.search(query)
        node.store.remember_found([r.ad for r in results])
        return results, {r.ad.message.host: node.ledger.track_record(r.ad.message.host) for r in results}

    results, records = _with_node(ctx, job)
    rows = []
    for rank, result in enumerate(results, 1):
        ad = result.ad.message
        sessions, disputed = records[ad.host]
        rows.append({"rank": rank, "host": ad.host.hex(), "charger": ad.charger_id,
                     "distance_m": round(result.distance_m), "max_kw": ad.max_power_w / 1000,
                     "connector": ad.connector.label, "estimate": result.estimate, "currency": ad.tariff.currency,
                     "energy_wh": result.energy_wh, "sessions": sessions, "disputed": disputed})
    table = Table(title=f"{len(rows)} charger(s) within {radius} free {local_time(begin)} - {local_time(finish)}",
                  title_justify="left")
    for column in ("#", "distance", "power", "connector", f"price for {kwh:g} kWh", "rating", "host"):
        table.add_column(column, justify="right" if column in ("#", "distance", "power") else "left")
    for row in rows:
        rating = (f"{row['sessions'] - row['disputed']}/{row['sessions']} undisputed" if row["sessions"]
                  else "new host")
        table.add_row(str(row["rank"]), f"{row['distance_m']} m", f"{row['max_kw']:g} kW", row["connector"],
                      money(row["estimate"], row["currency"]), rating, f"{row['host'][:8]}…/{row['charger']}")
    emit(ctx, rows, table if rows else "nothing free there then; widen --radius or change the window")


def _ad(node: Node, ref: str) -> ChargerAd:
    found = node.store.found()
    if ref.isdigit() and 1 <= int(ref) <= len(found):
        return found[int(ref) - 1].message
    fail(f"no ad {ref!r} in the last search ({len(found)} found); run `wattshare wallet find` first")


@wallet_group.command("book")
@click.argument("ad")
@click.option("--from", "start", required=True, help="Start: 23:00 (next one) or 2026-11-28T23:00.")
@click.option("--to", "end", required=True, help="End: 06:00 (next one after the start) or a date and time.")
@click.option("--cap", required=True, help="The most you will pay for this booking, e.g. 20 (currency units).")
@pass_context
def book(ctx: Context, ad: str, start: str, end: str, cap: str) -> None:
    """Book the charger ranked AD in your last search for a window, up to a spend cap.

    \b
    Example:
      wattshare wallet book 1 --from 23:00 --to 06:00 --cap 20
    """
    begin, finish = _window(ctx, start, end)

    async def job(node: Node) -> tuple[Booking, AccessInfo]:
        chosen = _ad(node, ad)
        try:
            booking = await node.book(chosen, begin, finish, amount(cap, chosen.tariff.currency, "--cap"))
        except BookingRejected as rejected:
            fail(f"the host declined ({rejected.reason}): {rejected.detail}", EXIT_REFUSED)
        return booking, node.access(booking)

    booking, access = _with_node(ctx, job)
    emit(ctx, {"booking": booking.id.hex(), "address": access.address, "code": access.code,
               "instructions": access.instructions},
         f"booked [bold]{booking.id.hex()[:12]}[/] for {local_time(begin)} - {local_time(finish)}\n"
         f"address: {access.address}" + (f"\ncode: {access.code}" if access.code else "")
         + (f"\n{access.instructions}" if access.instructions else "")
         + f"\nwhen you are plugged in: wattshare wallet start {booking.id.hex()[:12]}")


async def _nothing(node: Node) -> None:
    return None


@wallet_group.command("bookings")
@pass_context
def bookings(ctx: Context) -> None:
    """List your bookings (asking the host again about any whose answer was lost).

    \b
    Example:
      wattshare wallet bookings --json
    """
    if _node(ctx).store.bookings(Slot.PENDING):  # an answer lost on the way: `_with_node` asks its host again
        _with_node(ctx, _nothing)
    node = _node(ctx)
    rows = [{"booking": r["booking_id"].hex(), "charger": r["charger_id"], "start": r["start"], "end": r["end"],
             "spend_cap": r["spend_cap"], "state": r["state"]} for r in node.store.bookings()]
    emit(ctx, rows, booking_table(rows, "Your bookings"))


def _booking(node: Node, ref: str) -> Booking:
    rows = [r for r in node.store.bookings() if r["booking_id"].hex().startswith(ref.lower())]
    if len(rows) != 1:
        fail(f"{len(rows) or 'no'} booking(s) start with {ref!r}; see `wattshare wallet bookings`")
    booking = node.store.booking(rows[0]["booking_id"])
    if booking is None:
        fail(f"booking {ref!r} was not confirmed ({rows[0]['state']})")
    return booking


@wallet_group.command("cancel")
@click.argument("booking")
@pass_context
def cancel(ctx: Context, booking: str) -> None:
    """Cancel a booking (free until the terms' deadline, then the cancel fee applies).

    \b
    Example:
      wattshare wallet cancel 3fa9c2
    """

    async def job(node: Node) -> int:
        chosen = _booking(node, booking)
        return await node.cancel(chosen), chosen.request.message.tariff.currency

    fee, currency = _with_node(ctx, job)
    emit(ctx, {"fee": fee}, f"cancelled; fee: {money(fee, currency)}")


# --- charging --------------------------------------------------------------------------

def _charge(ctx: Context, ref: str, stop_now: bool, attach: bool = False) -> None:
    """Follow a session with a live bar (Ctrl-C leaves it running at the host); `attach`:
    only one that runs already."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[cost]}"),
                  console=console, disable=ctx.json) as bar:
        task = bar.add_task("starting", total=1, cost="")

        async def job(node: Node) -> Charging:
            chosen = _booking(node, ref)
            r = chosen.request.message
            stop = trio.Event()
            if stop_now:
                stop.set()

            def show(charging: Charging) -> None:
                bar.update(task, total=r.spend_cap, completed=charging.cost,
                           description=f"{kwh(charging.energy_wh)} charged",
                           cost=f"{money(charging.cost, r.tariff.currency)} of {money(r.spend_cap, r.tariff.currency)}")

            try:
                return await node.charge(chosen, stop=stop, on_update=show, attach=attach)
            except RemoteProtocolError as refused:
                fail(f"the host refused ({refused.reason}): {refused.message}", EXIT_REFUSED)

        charging = _with_node(ctx, job)
    settlement = charging.settlement.message
    answer = charging.answer.message
    verdict = "acked" if not isinstance(answer, Dispute) else f"disputed ({answer.reason}: {answer.detail})"
    emit(ctx, {"booking": settlement.booking_id.hex(), "energy_wh": settlement.energy_wh,
               "amount": settlement.amount, "currency": settlement.currency, "answer": verdict},
         f"settled: {kwh(settlement.energy_wh)} for {money(settlement.amount, settlement.currency)}; you {verdict}")


@wallet_group.command("start")
@click.argument("booking")
@pass_context
def start(ctx: Context, booking: str) -> None:
    """Start charging on a booking and watch it live until it settles.

    \b
    Example:
      wattshare wallet start 3fa9c2e1b0d4
    """
    _charge(ctx, booking, stop_now=False)


@wallet_group.command("watch")
@click.argument("booking")
@pass_context
def watch(ctx: Context, booking: str) -> None:
    """Watch a running session live (energy, cost against your cap) until it settles.

    \b
    Example:
      wattshare wallet watch 3fa9c2
    """
    _charge(ctx, booking, stop_now=False, attach=True)


@wallet_group.command("stop")
@click.argument("booking")
@pass_context
def stop(ctx: Context, booking: str) -> None:
    """Stop charging now; shows the settlement and acks it if it checks out.

    \b
    Example:
      wattshare wallet stop 3fa9c2
    """
    _charge(ctx, booking, stop_now=True)


@wallet_group.command("receipts")
@click.argument("booking")
@pass_context
def receipts(ctx: Context, booking: str) -> None:
    """List a session's signed metering receipts and its settlement.

    \b
    Example:
      wattshare wallet receipts 3fa9c2 --json
    """
    node = _node(ctx)
    chosen = _booking(node, booking)
    session = node.store.session(chosen.id)
    rows = [r.message for r in session.receipts] if session else []
    settlement = session.settlement.message if session and session.settlement else None
    data = {"receipts": [{"seq": r.seq, "t": r.t, "energy_wh": r.energy_wh} for r in rows],
            "settlement": None if settlement is None else {"energy_wh": settlement.energy_wh,
                                                           "amount": settlement.amount,
                                                           "currency": settlement.currency}}
    table = Table(title=f"Receipts of {chosen.id.hex()[:12]}", title_justify="left")
    for column in ("seq", "time", "energy"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r.seq), local_time(r.t), kwh(r.energy_wh))
    if settlement is not None:
        table.caption = f"settled: {kwh(settlement.energy_wh)}, {money(settlement.amount, settlement.currency)}"
    emit(ctx, data, table)


@wallet_group.command("dispute")
@click.argument("booking")
@click.option("--reason", type=click.Choice(["mispriced", "over_cap", "broken_chain", "wrong_booking", "bad_time"]),
              default="mispriced", show_default=True, help="bad_time: a fee for a cancel or no-show that was not late.")
@click.option("--detail", default="", help="What is wrong, in a line.")
@pass_context
def dispute(ctx: Context, booking: str, reason: str, detail: str) -> None:
    """Dispute a settlement, or a cancel or no-show fee, on the ledger (within the booking
    terms' dispute window); your co-op resolves it.

    \b
    Examples:
      wattshare wallet dispute 3fa9c2 --reason mispriced --detail "charged peak after 23:00"
      wattshare wallet dispute 3fa9c2 --reason bad_time --detail "I was at the charger at 23:05"
    """

    async def job(node: Node) -> Dispute:
        try:
            return node.dispute(_booking(node, booking), Reason(reason), detail)
        except NodeError as error:
            fail(str(error))

    disputed = _with_node(ctx, job)
    emit(ctx, {"booking": disputed.booking_id.hex(), "reason": str(disputed.reason)},
         f"disputed {disputed.booking_id.hex()[:12]} ({disputed.reason}); your co-op will see it on the ledger")


@wallet_group.command("balance")
@pass_context
def balance(ctx: Context) -> None:
    """Show your balance and credit limit, from the ledger (pulled from the network first).

    \b
    Example:
      wattshare wallet balance
    """

    async def job(node: Node) -> dict:
        return node.balance()

    data = _with_node(ctx, job)
    lines = [money(v, c) for c, v in sorted(data["balances"].items())] or ["0"]
    emit(ctx, data, f"balance of {data['member']}: {', '.join(lines)}; credit limit {data['credit_limit']} "
                    "(minor units)")

