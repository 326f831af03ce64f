"""The host's view of the app (`wattshare host run`): node and wallbox, the live session,
bookings to approve, earnings, and the charger's prices, hours and terms.

Each route calls the node's admin commands (`node.commands` plus the daemon's own, as
`wattshare host ...` does through the admin socket). Editing the charger writes the
same `[charger]` config `host init` wrote, checked by the same `charger_ad`, then
re-signs the ad (`publish`, as `wattshare host ad update`). Earnings are the ledger's
movements of the host's money (`ledger.movements`) summed per week and per month of
local time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from wattshare.ledger import EntryKind, movements
from wattshare.node import Node
from wattshare.protocol import DayOfWeek, format_amount

from .._charger import TERMS, amount, charger_ad, hours
from .._errors import fail
from .._home import Home
from ._api import body, endpoint, text, whole
from ._live import Watchers, changes

EARNING = (EntryKind.SETTLEMENT, EntryKind.FEE, EntryKind.ADJUSTMENT)  # not deposits and withdrawals
BUCKETS = 12
Commands = dict[str, Callable[[dict], Any]]


def editable(charger: dict[str, Any]) -> dict[str, Any]:
    """The charger's prices, hours and terms as the form shows them (currency units)."""
    window, _, price = charger.get("off_peak", "").partition("@")
    currency = charger["currency"]
    return {"id": charger["id"], "currency": currency, "peak": charger["peak"], "off_peak_hours": window,
            "off_peak_price": price, "flat": charger.get("flat", "0"), "hours": charger.get("hours", "00:00-00:00"),
            "days": charger.get("days", [d.value for d in DayOfWeek]),
            "cancel_until_minutes": charger["terms"]["cancel_until_minutes"],
            "cancel_fee": format_amount(charger["terms"]["cancel_fee"], currency),
            "noshow_timeout_minutes": charger["terms"]["noshow_timeout_minutes"],
            "noshow_fee": format_amount(charger["terms"]["noshow_fee"], currency)}


def edited(charger: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """`charger` with the form's values, each checked as `host init` checks it."""
    currency = charger["currency"]
    prices = {name: text(data, name, limit=20) for name in ("peak", "flat", "off_peak_price")}
    for name, value in prices.items():
        if value:
            amount(value, currency, name.replace("_", " "))
    window = text(data, "off_peak_hours", "", 20)
    if window:
        hours(window, "the off-peak hours")
    if bool(window) != bool(prices["off_peak_price"]):
        fail("give both the off-peak hours and their price, or neither")
    open_hours = text(data, "hours", limit=20)
    hours(open_hours, "the bookable hours")
    days = data.get("days")
    if not isinstance(days, list) or not days or any(day not in DayOfWeek.__members__ for day in days):
        fail("choose at least one day the charger can be booked")
    changed = charger | {
        "peak": prices["peak"], "flat": prices["flat"] or "0",
        "off_peak": f"{window}@{prices['off_peak_price']}" if window else "",
        "hours": open_hours,
        "days": [day.value for day in DayOfWeek if day.value in days]}
    terms = dict(charger["terms"])
    terms["cancel_until_minutes"] = whole(data, "cancel_until_minutes", 0, 7 * 24 * 60)
    terms["noshow_timeout_minutes"] = whole(data, "noshow_timeout_minutes", 1, 24 * 60)
    for fee in ("cancel_fee", "noshow_fee"):
        terms[fee] = amount(text(data, fee, limit=20), currency, fee.replace("_", " "))
    changed["terms"] = {name: terms[name] for name in TERMS}
    return changed


def earnings(node: Node, currency: str) -> dict[str, Any]:
    """The host's income per week (Monday to Sunday) and per month of local time, the
    last BUCKETS of each up to the node's now, oldest first."""
    assert node.ledger is not None, "a host keeps a ledger"
    now = dt.datetime.fromtimestamp(node.clock()).astimezone()
    monday = (now - dt.timedelta(days=now.weekday())).date()
    weeks = {monday - dt.timedelta(weeks=n): 0 for n in reversed(range(BUCKETS))}
    month = (now.year * 12 + now.month - 1)
    months = {divmod(month - n, 12): 0 for n in reversed(range(BUCKETS))}
    total = 0
    for move in movements(node.ledger, node.identity.public_key):
        if move.kind not in EARNING or move.currency != currency:
            continue
        day = dt.datetime.fromtimestamp(move.t).astimezone()
        week = (day - dt.timedelta(days=day.weekday())).date()
        if week in weeks:
            weeks[week] += move.delta
        if (day.year, day.month - 1) in months:
            months[(day.year, day.month - 1)] += move.delta
        total += move.delta
    return {"currency": currency, "total": total,
            "weeks": [{"label": f"{week:%d %b}", "amount": value} for week, value in weeks.items()],
            "months": [{"label": f"{dt.date(year, index + 1, 1):%b}", "month": f"{year}-{index + 1:02d}", "amount": value}
                       for (year, index), value in months.items()]}


def routes(node: Node, home: Home, table: Commands, watchers: Watchers) -> list[Route]:
    """The host's API (see the module doc)."""

    @endpoint
    async def status(_: Request) -> dict[str, Any]:
        now = table["status"]({})
        charger = home.config()["charger"]
        paths = list(now["links"].values())
        return {"peer_id": now["peer_id"], "reachable": now["reach"], "peers": now["peers"],
                "links": {"direct": paths.count("direct"), "relayed": paths.count("relayed")},
                "wallbox": charger["id"], "wallbox_connected": charger["id"] in now["wallboxes"],
                "sessions": now["sessions"], "pending": now["pending"], "ads": table["ads"]({}),
                "charger": editable(charger)}

    @endpoint
    async def bookings(_: Request) -> list[dict[str, Any]]:
        pending = set(table["status"]({})["pending"])
        return [row | {"pending": row["booking"] in pending} for row in reversed(table["bookings"]({}))]

    def decide(command: str) -> Callable[[Request], Any]:
        @endpoint
        async def act(request: Request) -> dict[str, Any]:
            return table[command]({"booking": request.path_params["booking"]})

        return act

    @endpoint
    async def earned(_: Request) -> dict[str, Any]:
        return earnings(node, home.config()["charger"]["currency"])

    @endpoint
    async def edit(request: Request) -> dict[str, Any]:
        config = home.config()
        changed = edited(config["charger"], await body(request))
        charger_ad(changed, node.identity.public_key, 1, node.clock())  # every field, before anything is written
        home.write_config(config | {"charger": changed})
        return table["publish"]({}) | {"charger": editable(changed)}

    @endpoint
    async def live(_: Request) -> Any:
        return watchers.stream(lambda: changes(lambda: table["live"]({})))

    one = "/api/host/bookings/{booking:str}"
    return [
        Route("/api/host/status", status),
        Route("/api/host/bookings", bookings),
        Route(f"{one}/approve", decide("approve"), methods=["POST"]),
        Route(f"{one}/decline", decide("decline"), methods=["POST"]),
        Route("/api/host/earnings", earned),
        Route("/api/host/charger", edit, methods=["POST"]),
        Route("/api/host/live", live),
    ]
