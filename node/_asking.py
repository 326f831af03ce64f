"""The driver's side of a booking as its node runs it: the request, its credit hold, its answer kept.

Theory of operation (DESIGN.md, "Booking"; the host's side is `_bookings`): `book` signs
the request dated as it leaves, keeps it PENDING in the node's store and, with a
ledger, puts its HOLD on the driver's own feed first (a host confirms only once it sees
the cap held). `ask_again` sends a request (again: a host answers a repeat with its
first answer) and keeps the answer: CONFIRMED with the sealed access, or REJECTED with
the host's signed rejection, whose RELEASE ends the hold. A link that goes during the
request (a relayed one replaced by a direct one) is asked once more; any other failure
leaves the booking pending, as the host may have confirmed it, and `ask_again_pending`
asks the hosts of those again while their windows are open. `cancel` sends a signed
cancel and keeps the fee the host claims.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from libp2p.network.stream.exceptions import StreamError

from wattshare.ledger import EntryKind, Hold, Release
from wattshare.protocol import Booking, BookingRequest, BookingState, Cancel, ChargerAd, Signed, sign

from ._bookings import BookingRejected, request_booking, request_cancel
from ._framing import StreamEnded

if TYPE_CHECKING:
    from ._node import Node

log = logging.getLogger(__name__)


async def book(node: Node, ad: ChargerAd, start: int, end: int, spend_cap: int) -> Booking:
    """Book `ad`'s charger for [start, end); raises BookingRejected with the host's reason."""
    await node.reachability.connect(await node.reach(ad.host))  # the request is dated as it leaves
    request = sign(node.identity, BookingRequest(
        driver=node.identity.public_key, host=ad.host, charger_id=ad.charger_id, ad_seq=ad.seq,
        tariff=ad.tariff, terms=ad.terms, tz=ad.tz, max_power_w=ad.max_power_w, geohash=ad.geohash,
        country=ad.country, start=start, end=end,
        spend_cap=spend_cap,
        nonce=os.urandom(16), created=int(node.clock()),
    ))
    node.store.record(request, BookingState.PENDING)
    if node.ledger is not None:  # the host confirms only once it sees the cap held on our feed
        node.ledger.append(node.identity, [(EntryKind.HOLD, Hold(request=request))])
    return await ask_again(node, request)


async def ask_again(node: Node, request: Signed[BookingRequest]) -> Booking:
    """Send a booking request and keep the answer (see the module doc)."""
    try:
        try:
            booking, sealed = await request_booking(node.host, await node.reach(request.message.host), request)
        except (StreamEnded, StreamError) as lost:  # the link changed under it (relayed -> direct): once more
            log.info("asking again: the link to the host went during the request (%r)", lost)
            booking, sealed = await request_booking(node.host, await node.reach(request.message.host), request)
    except BookingRejected as rejected:
        node.store.mark(request.digest, BookingState.REJECTED, answer=rejected.rejection)
        if node.ledger is not None and rejected.rejection is not None:
            release = Release(request=request, rejection=rejected.rejection)
            node.ledger.append(node.identity, [(EntryKind.RELEASE, release)])
        raise
    node.store.mark(booking.id, BookingState.CONFIRMED, answer=booking.confirmation, access=sealed)
    return booking


async def ask_again_pending(node: Node) -> list[bytes]:
    """Ask the hosts of this driver's pending bookings (answers lost on the way) again,
    while their windows are open; the ids of those still without an answer."""
    unknown = []
    for row in node.store.bookings(BookingState.PENDING):
        if row["driver"] != node.identity.public_key or row["end"] <= node.clock():
            continue
        try:
            await ask_again(node, node.store.request(row["booking_id"]))  # type: ignore[arg-type]
        except BookingRejected:
            continue
        except Exception as error:  # noqa: BLE001 - still unknown: the next command asks again
            log.info("booking %s still has no answer: %s", row["booking_id"].hex()[:12], error)
            unknown.append(row["booking_id"])
    return unknown


async def cancel(node: Node, booking: Booking, detail: str = "") -> int:
    """Cancel a confirmed booking at its host; returns the fee the host claims."""
    signed = sign(node.identity, Cancel(booking_id=booking.id, t=int(node.clock()), detail=detail))
    fee = await request_cancel(node.host, await node.reach(booking.request.message.host), signed)
    node.store.mark(booking.id, BookingState.CANCELLED, closed_by=signed)
    return fee
