"""A neighbour's jobs: one function each, called by the `wattshare wallet` commands and by the web app.

Theory of operation: a job takes a running wallet `Node` (a command's short-lived one,
or the `wallet run` daemon's) and returns plain data: what the command prints with
`--json` and what the app's API answers, so both front ends show one truth and no rule
lives in either. `wallet_job` is the one way in for both: it asks the hosts of pending
bookings again, brings bookings settled while the wallet was away up to date, runs the
job and, if the job signed ledger entries (a hold, an ack, a dispute), pushes them to
the co-op's node. Every refusal is a `Refusal` with a line that says what to do next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from wattshare.ledger import movements
from wattshare.node import BookingRejected, Charging, Node, NodeError
from wattshare.protocol import (
    Booking,
    ChargerAd,
    Connector,
    Dispute,
    InvalidValue,
    Query,
    Reason,
    RemoteProtocolError,
    Settlement,
    Tariff,
    geo,
    peer_id,
)

from ._charger import amount
from ._daemon import log
from ._errors import fail

EXIT_REFUSED = 1  # the host or the ledger said no
T = TypeVar("T")


async def wallet_job(node: Node, coop: bytes, job: Callable[[Node], Awaitable[T]]) -> T:
    """Run `job` on a joined wallet node (see the module doc)."""
    me = node.identity.public_key
    before = node.ledger.sizes().get(me, 0) if node.ledger else 0
    for booking_id in await node.ask_again_pending():
        log.warning("booking %s: its host's answer has not reached this wallet yet; the next wallet "
                    "command asks again", booking_id.hex()[:12])
    for booking_id in node.catch_up_bookings():
        log.warning("booking %s was settled at the host while this wallet was away: "
                    "`wattshare wallet watch %s` checks and answers it", booking_id.hex()[:12], booking_id.hex()[:12])
    result = await job(node)
    if node.ledger and node.ledger.sizes().get(me, 0) > before and not await node.push_feed(coop):
        log.warning("the co-op's node did not take your new ledger entries yet; "
                    "your next wallet command will offer them again")
    return result


def make_query(lat: float, lon: float, radius_m: int, start: int, end: int, wanted_kwh: float,
               connector: Connector | None, min_kw: float, max_price: str | None, currency: str) -> Query:
    """A search, in the units people type (degrees, metres, kWh, kW, a price in the currency)."""
    try:
        return Query(lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), radius_m=radius_m, start=start, end=end,
                     energy_wh=round(wanted_kwh * 1000), connector=connector, min_power_w=round(min_kw * 1000),
                     max_price=amount(max_price, currency, "the price limit") if max_price else None)
    except InvalidValue as error:
        fail(f"that search is not possible ({error}): a radius up to 50 km, a window that ends after it starts")


def _lines(tariff: Tariff, lines: Any) -> list[dict[str, Any]]:
    return [{"kind": line.kind.value, "element": line.element, "period": tariff.period(line.element),
             "quantity": line.quantity, "amount": line.amount} for line in lines]


async def find(node: Node, query: Query) -> list[dict[str, Any]]:
    """Chargers free for the query's window, best first, each with its price broken down
    by tariff period, its public cell (geohash-7 and its centre) and its host's record."""
    results = await node.search(query)
    node.store.remember_found([r.ad for r in results])
    rows = []
    for rank, result in enumerate(results, 1):
        ad = result.ad.message
        sessions, disputed = node.ledger.track_record(ad.host) if node.ledger else (0, 0)
        lat, lon = geo.decode(ad.geohash)
        rows.append({"rank": rank, "host": ad.host.hex(), "charger": ad.charger_id,
                     "distance_m": result.shown_distance_m, "max_kw": ad.max_power_w / 1000,
                     "connector": ad.connector.label, "estimate": result.estimate, "currency": ad.tariff.currency,
                     "energy_wh": result.energy_wh, "wanted_wh": result.wanted_wh, "full": result.full,
                     "per_kwh": round(result.per_kwh), "plug_in_from": ad.terms.opening(query.start),
                     "sessions": sessions, "disputed": disputed, "geohash": ad.geohash, "lat": lat, "lon": lon,
                     "breakdown": _lines(ad.tariff, result.price.lines),
                     "cancel_until_minutes": ad.terms.cancel_until_minutes, "cancel_fee": ad.terms.cancel_fee})
    return rows


def found_ad(node: Node, ref: str) -> ChargerAd:
    """An ad of the last search: by its rank ("1") or as HOSTHEX/CHARGER."""
    found = [signed.message for signed in node.store.found()]
    if ref.isdigit() and 1 <= int(ref) <= len(found):
        return found[int(ref) - 1]
    named = [ad for ad in found if f"{ad.host.hex()}/{ad.charger_id}" == ref]
    if named:
        return named[0]
    fail(f"no ad {ref!r} in the last search ({len(found)} found); search again first")


async def book(node: Node, ad: ChargerAd, start: int, end: int, cap: str) -> dict[str, Any]:
    """Book `ad` for [start, end) up to `cap` (currency units); the booking and its access info."""
    try:
        booking = await node.book(ad, start, end, amount(cap, ad.tariff.currency, "the spend cap"))
    except BookingRejected as rejected:
        fail(f"the host declined ({rejected.reason}): {rejected.detail}", EXIT_REFUSED)
    access = node.access(booking)
    r = booking.request.message
    return {"booking": booking.id.hex(), "start": start, "end": end, "plug_in_from": r.terms.opening(start),
            "early_start_minutes": r.terms.early_start_minutes, "spend_cap": r.spend_cap,
            "currency": r.tariff.currency, "address": access.address, "code": access.code,
            "instructions": access.instructions}


def booking_named(node: Node, ref: str) -> Booking:
    """A confirmed booking of this wallet, by its id or the first characters of it."""
    rows = [r for r in node.store.bookings() if r["booking_id"].hex().startswith(ref.lower())] if ref else []
    if len(rows) != 1:
        fail(f"{len(rows) or 'no'} booking(s) start with {ref!r}; see `wattshare wallet bookings`")
    booking = node.store.booking(rows[0]["booking_id"])
    if booking is None:
        fail(f"booking {ref!r} was not confirmed ({rows[0]['state']})")
    return booking


def receipts(node: Node, booking: Booking) -> dict[str, Any]:
    """A session's signed receipts, its settlement line by line, and the driver's answer."""
    session = node.store.session(booking.id)
    rows = [r.message for r in session.receipts] if session else []
    settlement = session.settlement.message if session and session.settlement else None
    answer = session.answer.message if session and session.answer else None
    return {"receipts": [{"seq": r.seq, "t": r.t, "energy_wh": r.energy_wh} for r in rows],
            "settlement": None if settlement is None else settled(settlement, booking.request.message.tariff),
            "answer": None if answer is None else "disputed" if isinstance(answer, Dispute) else "acked"}


def settled(settlement: Settlement, tariff: Tariff) -> dict[str, Any]:
    return {"booking": settlement.booking_id.hex(), "energy_wh": settlement.energy_wh, "amount": settlement.amount,
            "currency": settlement.currency, "breakdown": _lines(tariff, settlement.breakdown)}


def charged(charging: Charging, booking: Booking) -> dict[str, Any]:
    """A followed session's end: its settlement and how this wallet answered it."""
    assert charging.settlement is not None and charging.answer is not None, "a followed session ends settled"
    answer = charging.answer.message
    verdict = "acked" if not isinstance(answer, Dispute) else f"disputed ({answer.reason}: {answer.detail})"
    return settled(charging.settlement.message, booking.request.message.tariff) | {"answer": verdict}


def cancel_quote(node: Node, booking: Booking) -> dict[str, Any]:
    """What cancelling now would cost, and until when it is free (by the booking's terms)."""
    r = booking.request.message
    return {"fee": r.terms.cancel_fee_at(r.start, int(node.clock())), "currency": r.tariff.currency,
            "free_until": r.start - r.terms.cancel_until_minutes * 60}


async def cancel(node: Node, booking: Booking) -> dict[str, Any]:
    """Cancel at the host; the fee it claims (as `cancel_quote` said, by the same terms)."""
    try:
        fee = await node.cancel(booking)
    except RemoteProtocolError as refused:
        fail(f"the host refused ({refused.reason}): {refused.message}", EXIT_REFUSED)
    return {"fee": fee, "currency": booking.request.message.tariff.currency}


def dispute(node: Node, booking: Booking, reason: str, detail: str) -> dict[str, Any]:
    try:
        disputed = node.dispute(booking, Reason(reason), detail)
    except ValueError:
        fail(f"{reason!r} is no reason to dispute; one of mispriced, over_cap, broken_chain, wrong_booking, bad_time")
    except NodeError as error:
        fail(str(error))
    return {"booking": disputed.booking_id.hex(), "reason": str(disputed.reason)}


def history(node: Node) -> list[dict[str, Any]]:
    """Every movement of this member's money on its ledger, newest first."""
    if node.ledger is None:
        return []
    return [{"t": m.t, "kind": m.kind.value, "booking": m.booking_id.hex() if m.booking_id else None,
             "by": peer_id(m.author), "currency": m.currency, "amount": m.delta}
            for m in reversed(movements(node.ledger, node.identity.public_key))]
