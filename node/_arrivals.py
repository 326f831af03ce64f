"""Confirmed bookings waiting for their drivers at the host: reservations and no-shows.

Theory of operation (DESIGN.md, "Booking", point 4; the protocol's `Arrivals`): the
booking desk tells this one of each booking it confirms (`expect`) and cancels
(`forget`), the session desk of each session that starts; at start it takes the
confirmed bookings from the store. It sleeps until the protocol says something is due
or a booking comes, then acts: ReserveNow on the wallbox when a window opens; at the
no-show deadline a stored NoShow, the terms' fee claimed on the ledger, and
CancelReservation. A write the disk refuses is tried again `STORAGE_RETRY` later.
"""

from __future__ import annotations

import logging
import sqlite3

import trio

from wattshare.ledger import EntryKind, FeeClaim, LedgerStore
from wattshare.protocol import Arrivals, Booking, BookingState, Identity, NoShowDue, Reserve

from . import _ocpp as ocpp
from ._central import CentralSystem, ChargerOffline
from ._clock import Clock
from ._store import NodeStore
from ._transactions import id_tag

STORAGE_RETRY = 1.0  # real seconds before a no-show the disk refused is stored again
log = logging.getLogger(__name__)


def reservation_id(booking_id: bytes) -> int:
    """The OCPP reservationId (a positive int32) of a booking's connector reservation."""
    return int.from_bytes(booking_id[:4], "big") & 0x7FFF_FFFF


class ArrivalDesk:
    """The host's confirmed, not yet started bookings (see the module doc)."""

    def __init__(self, identity: Identity, store: NodeStore, clock: Clock, ledger: LedgerStore | None,
                 central: CentralSystem) -> None:
        self.arrivals = Arrivals(identity)
        self.store = store
        self.clock = clock
        self.ledger = ledger
        self.central = central
        self._news = trio.Event()

    def expect(self, booking: Booking) -> None:
        self.arrivals.expect(booking)
        self._news.set()

    def forget(self, booking_id: bytes) -> None:
        self.arrivals.forget(booking_id)

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        for row in self.store.bookings(BookingState.CONFIRMED):
            booking = self.store.booking(row["booking_id"])
            if booking is not None and booking.request.message.host == self.arrivals.identity.public_key:
                self.arrivals.expect(booking)
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                news = self._news = trio.Event()
                try:
                    for due in self.arrivals.due(int(self.clock())):
                        self._take(due, nursery)
                except sqlite3.OperationalError as error:
                    log.warning("storage refused a write (%s); retrying in %g s", error, STORAGE_RETRY)
                    await trio.sleep(STORAGE_RETRY)
                    continue
                await self._nap(news)

    async def _nap(self, news: trio.Event) -> None:
        """Sleep until the next thing is due or a booking comes, whichever is first."""
        at = self.arrivals.next_due()
        async with trio.open_nursery() as nursery:
            async def alarm() -> None:
                if at is None:
                    await trio.sleep_forever()
                await self.clock.sleep_until(at)
                nursery.cancel_scope.cancel()

            nursery.start_soon(alarm)
            await news.wait()
            nursery.cancel_scope.cancel()

    def _take(self, due: Reserve | NoShowDue, nursery: trio.Nursery) -> None:
        if isinstance(due, Reserve):
            self.arrivals.reserved(due.booking.id)
            nursery.start_soon(self._reserve, due)
            return
        self.store.mark(due.booking.id, BookingState.NO_SHOW, closed_by=due.no_show)
        if due.fee and self.ledger is not None:
            claim = FeeClaim(booking=due.booking, no_show=due.no_show, amount=due.fee)
            self.ledger.append(self.arrivals.identity, [(EntryKind.FEE, claim)], t=due.no_show.message.t)
        self.arrivals.forget(due.booking.id)
        nursery.start_soon(self._call, due.booking, "CancelReservation", {"reservationId": reservation_id(due.booking.id)})

    async def _reserve(self, due: Reserve) -> None:
        await self._call(due.booking, "ReserveNow", {
            "connectorId": 1, "idTag": id_tag(due.booking.id), "reservationId": reservation_id(due.booking.id),
            "expiryDate": ocpp.iso(due.until)})

    async def _call(self, booking: Booking, action: str, payload: dict) -> None:
        try:
            await self.central.call(booking.request.message.charger_id, action, payload)
        except ChargerOffline as error:
            log.info("%s at %s not done: %s", action, booking.request.message.charger_id, error)
