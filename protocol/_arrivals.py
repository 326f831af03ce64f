"""The host's confirmed bookings waiting for their drivers, sans I/O: reservations and no-shows.

Theory of operation (DESIGN.md, "Booking", point 4; OCPP ReserveNow):

- The node tells `Arrivals` of each booking it confirms (`expect`) and of each that
  stops waiting: its session started, it was cancelled or closed (`forget`).
- `due(now)` says what is due, changing nothing: a `Reserve` once a booking's window
  opens (the terms' early-start grace included), holding the connector for the driver
  until the no-show deadline; a `NoShowDue` once the booking is not started
  `noshow_timeout_minutes` after the window opened, carrying the host's signed NoShow
  and the terms' fee, as the protocol's booking machine computes it.
- The node takes a `Reserve` by calling `reserved` before it asks the wallbox (a failed
  call is not retried: the reservation is a courtesy, the booking is what holds the
  slot), and a `NoShowDue` by storing the NoShow and claiming the fee, then `forget`.
  A refused write leaves the booking waiting, so the next `due` offers it again.
- `next_due()` is the earliest time anything will be due: the node sleeps until then or
  until it is told of a new booking.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._booking import BookingMachine
from ._envelope import Signed, sign
from ._identity import Identity
from ._messages import Booking, NoShow


@dataclass(frozen=True, slots=True)
class Reserve:
    """Reserve the booking's connector for its driver until `until` (clock time)."""

    booking: Booking
    until: int


@dataclass(frozen=True, slots=True)
class NoShowDue:
    """The driver did not come: store `no_show`, claim `fee` (if any), cancel the reservation."""

    booking: Booking
    no_show: Signed[NoShow]
    fee: int


Due = Reserve | NoShowDue


def _opens(booking: Booking) -> int:
    r = booking.request.message
    return r.terms.opening(r.start)


def _deadline(booking: Booking) -> int:
    r = booking.request.message
    return r.start + r.terms.noshow_timeout_minutes * 60


class Arrivals:
    """The host's confirmed, not yet started bookings (see the module doc)."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.waiting: dict[bytes, Booking] = {}
        self._reserved: set[bytes] = set()

    def expect(self, booking: Booking) -> None:
        self.waiting[booking.id] = booking

    def forget(self, booking_id: bytes) -> None:
        self.waiting.pop(booking_id, None)
        self._reserved.discard(booking_id)

    def reserved(self, booking_id: bytes) -> None:
        self._reserved.add(booking_id)

    def due(self, now: int) -> list[Due]:
        due: list[Due] = []
        for booking in self.waiting.values():
            if now >= _deadline(booking):
                due.append(self._no_show(booking, now))
            elif now >= _opens(booking) and booking.id not in self._reserved:
                due.append(Reserve(booking, _deadline(booking)))
        return due

    def next_due(self) -> int | None:
        times = [_deadline(b) if b.id in self._reserved else _opens(b) for b in self.waiting.values()]
        return min(times, default=None)

    def _no_show(self, booking: Booking, now: int) -> NoShowDue:
        machine = BookingMachine(booking.request)
        machine.receive(booking.confirmation)
        no_show = sign(self.identity, NoShow(booking_id=booking.id, t=now))
        machine.send(no_show)
        return NoShowDue(booking, no_show, machine.fee)
