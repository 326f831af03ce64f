"""`wattshare wallet find | book | bookings | cancel`: a neighbour finds a charger and books it."""

from __future__ import annotations

import datetime as dt
import re

import click
from rich.table import Table

from wattshare.node import Node
from wattshare.protocol import BookingState

from . import _wallet_jobs as jobs
from ._args import point
from ._charger import CONNECTORS
from ._errors import fail
from ._home import clock_from_env
from ._view import (
    DELIVERED_NOTE,
    Context,
    booking_table,
    delivered,
    distance,
    emit,
    iso_local,
    local_time,
    money,
    pass_context,
)
from ._wallet_jobs import make_query
from ._wallet_node import nothing, wallet_node, with_node


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


def _window(ctx: Context, start: str, end: str) -> tuple[int, int, bool]:
    """The window typed, and whether a bare --from time fell on tomorrow because that time
    has passed today (decided when it was typed, whatever the clock says later)."""
    now = dt.datetime.fromtimestamp(clock_from_env()()).astimezone()
    begin = _when(start, now, "--from")
    finish = _when(end, begin, "--to")
    if finish <= begin:
        fail("--to must come after --from")
    rolled = bool(re.fullmatch(r"\d{1,2}:\d{2}", start)) and begin.date() > now.date()
    return int(begin.timestamp()), int(finish.timestamp()), rolled



def _distance(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(km|m)", text.strip().lower())
    if match is None:
        fail(f"--radius must be a distance like 2km or 500m, not {text!r}")
    return round(float(match[1]) * (1000 if match[2] == "km" else 1))


@click.command("find")
@click.option("--near", required=True, help="LAT,LON to search around.")
@click.option("--radius", default="2km", show_default=True, help="How far: 2km, 800m.")
@click.option("--from", "start", required=True, help="Start: 23:00 (next one) or 2026-11-28T23:00.")
@click.option("--to", "end", required=True, help="End: 06:00 (next one after the start) or a date and time.")
@click.option("--kwh", "wanted_kwh", type=click.FloatRange(1, 200), default=20, show_default=True,
              help="Energy you want: the price column estimates it.")
@click.option("--connector", type=click.Choice(sorted(CONNECTORS)))
@click.option("--min-kw", type=click.FloatRange(0), default=0, help="Only chargers at least this powerful.")
@click.option("--max-price", help="Only chargers whose price for --kwh, at their price per kWh, is at most this (e.g. 5.00).")
@pass_context
def find(ctx: Context, near: str, radius: str, start: str, end: str, wanted_kwh: float, connector: str | None,
         min_kw: float, max_price: str | None) -> None:
    """Find chargers near a point that are free for a window, nearest first.

    The rating is each host's record on the ledger: sessions settled, and how many of
    them its drivers did not dispute.

    \b
    Example:
      wattshare wallet find --near 52.5365,13.4175 --radius 2km --from 23:00 --to 06:00 --connector type2
    """
    lat, lon = point(near, "--near")
    begin, finish, _ = _window(ctx, start, end)
    query = make_query(lat, lon, _distance(radius), begin, finish, wanted_kwh,
                       CONNECTORS[connector] if connector else None, min_kw, max_price,
                       ctx.home.config()["wallet"]["currency"])
    rows = with_node(ctx, lambda node: jobs.find(node, query))
    table = Table(title=f"{len(rows)} charger(s) within {radius} free {local_time(begin)} - {local_time(finish)}, "
                        "nearest first (the public location is good to ~100 m), then cheapest per kWh",
                  title_justify="left")
    for column in ("#", "distance", "power", "connector", "price", "for", "per kWh", "plug in", "rating", "host"):
        table.add_column(column, justify="right" if column in ("#", "distance", "power", "per kWh") else "left")
    for row in rows:
        rating = (f"{row['sessions'] - row['disputed']}/{row['sessions']} undisputed" if row["sessions"]
                  else "new host")
        table.add_row(str(row["rank"]), distance(row["distance_m"]), f"{row['max_kw']:g} kW", row["connector"],
                      money(row["estimate"], row["currency"]), delivered(row["energy_wh"], row["full"]),
                      money(row["per_kwh"], row["currency"]), f"from {local_time(row['plug_in_from'])[-5:]}",
                      rating, f"{row['host'][:8]}…/{row['charger']}")
    if any(not row["full"] for row in rows):
        table.caption = DELIVERED_NOTE
    emit(ctx, rows, table if rows else "nothing free there then; widen --radius or change the window")


@click.command("book")
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
    begin, finish, rolled_over = _window(ctx, start, end)

    async def job(node: Node) -> dict:
        return await jobs.book(node, jobs.found_ad(node, ad), begin, finish, cap)

    data = with_node(ctx, job)
    early, currency = data["plug_in_from"], data["currency"]
    rolled = " (tomorrow: that time today has passed)" if rolled_over else ""
    emit(ctx, data | {"start_local": iso_local(begin), "end_local": iso_local(finish)},
         f"booked [bold]{data['booking'][:12]}[/] for {local_time(begin)} - {local_time(finish)}{rolled}, "
         f"up to {money(data['spend_cap'], currency)}\n"
         + (f"you may plug in from {local_time(early)[-5:]}, {data['early_start_minutes']} min early, at the "
            "price of that time\n" if early < begin else "")
         + f"address: {data['address']}" + (f"\ncode: {data['code']}" if data["code"] else "")
         + (f"\n{data['instructions']}" if data["instructions"] else "")
         + f"\nwhen you are plugged in: wattshare wallet start {data['booking'][:12]}")


@click.command("bookings")
@pass_context
def bookings(ctx: Context) -> None:
    """List your bookings (asking the host again about any whose answer was lost).

    \b
    Example:
      wattshare wallet bookings --json
    """
    node = wallet_node(ctx)
    if node.store.bookings(BookingState.PENDING):  # an answer lost on the way: `with_node` asks its host again
        with_node(ctx, nothing)
    rows = node.store.listing()  # the store's file, with what that asking wrote
    emit(ctx, rows, booking_table(rows, "Your bookings"))


@click.command("cancel")
@click.argument("booking")
@pass_context
def cancel(ctx: Context, booking: str) -> None:
    """Cancel a booking (free until the terms' deadline, then the cancel fee applies).

    \b
    Example:
      wattshare wallet cancel 3fa9c2
    """

    data = with_node(ctx, lambda node: jobs.cancel(node, jobs.booking_named(node, booking)))
    emit(ctx, data, f"cancelled; fee: {money(data['fee'], data['currency'])}")
