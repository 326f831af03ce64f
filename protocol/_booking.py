"""The booking state machine: from the driver's request to a start, or to its end.

Theory of operation (DESIGN.md, "Booking"; OCPI 2.3 booking terms):

    PENDING --confirmation (host)--> CONFIRMED --start (driver)----> STARTED --settlement (host)--> SETTLED
       |  \\--rejection (host)--> REJECTED      |--cancel (either)--> CANCELLED
       \\--cancel (driver)--> CANCELLED          \\--no-show (host)--> NO_SHOW

- A start is accepted from `early_start_minutes` before the window until its end.
- A cancel is accepted until the window starts. A driver's cancel later than
  `cancel_until_minutes` before the start owes the terms' `cancel_fee`; a host's cancel
  never costs the driver. Its time is the sender's, so the receiver checks it against
  its own clock first (`check_time`: at most `MAX_CLOCK_SKEW` apart), or a cancel
  dated early would dodge the fee.
- A no-show may be declared once `noshow_timeout_minutes` have passed since the window
  opened with no start; it owes `noshow_fee`.
- After STARTED the session machine (`_session`) takes over, and checks the settlement
  that ends it; here it only closes the booking (SETTLED). These states are the one
  vocabulary of a booking's life: the node's store and the CLI show them too.
"""

from __future__ import annotations

from enum import StrEnum

from ._envelope import Signed
from ._errors import Reason, RemoteProtocolError
from ._machine import Machine, Role
from ._messages import (
    Booking,
    BookingConfirmation,
    BookingRejection,
    BookingRequest,
    Cancel,
    NoShow,
    Settlement,
    StartRequest,
)
from ._record import Message

MAX_CLOCK_SKEW = 300  # seconds a signed time may differ from the receiver's clock


def check_time(t: int, now: float, what: str) -> None:
    """Refuse a peer's signed time that is more than MAX_CLOCK_SKEW from our clock (BAD_TIME)."""
    if abs(t - now) > MAX_CLOCK_SKEW:
        raise RemoteProtocolError(Reason.BAD_TIME, f"{what} is dated {int(t - now)} s from now; "
                                                   f"at most {MAX_CLOCK_SKEW} s of clock skew is allowed")


class BookingState(StrEnum):
    PENDING = "pending"  # requested, not answered yet (a host deciding by hand holds it)
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    STARTED = "started"
    SETTLED = "settled"
    NO_SHOW = "no_show"


_S = BookingState


class BookingMachine(Machine):
    """One booking's life up to its start; build it from the driver's signed request."""

    TRANSITIONS = {
        (_S.PENDING, BookingConfirmation, Role.HOST): _S.CONFIRMED,
        (_S.PENDING, BookingRejection, Role.HOST): _S.REJECTED,
        (_S.PENDING, Cancel, Role.DRIVER): _S.CANCELLED,
        (_S.CONFIRMED, Cancel, Role.DRIVER): _S.CANCELLED,
        (_S.CONFIRMED, Cancel, Role.HOST): _S.CANCELLED,
        (_S.CONFIRMED, StartRequest, Role.DRIVER): _S.STARTED,
        (_S.CONFIRMED, NoShow, Role.HOST): _S.NO_SHOW,
        (_S.STARTED, Settlement, Role.HOST): _S.SETTLED,
    }

    def __init__(self, request: Signed[BookingRequest]) -> None:
        self.request = request.message
        super().__init__(request.digest, self.request.driver, self.request.host)
        self._signed_request = request
        self.state = BookingState.PENDING
        self.booking: Booking | None = None
        self.fee = 0  # minor units the driver owes for a late cancel or a no-show

    def _check(self, signed: Signed[Message], role: Role) -> None:
        req, msg = self.request, signed.message
        if isinstance(msg, StartRequest):
            if msg.t < req.terms.opening(req.start):
                raise RemoteProtocolError(Reason.TOO_EARLY, "start before the booking window")
            if msg.t >= req.end:
                raise RemoteProtocolError(Reason.TOO_LATE, "start after the booking window ended")
        elif isinstance(msg, Cancel) and msg.t >= req.start:
            raise RemoteProtocolError(Reason.TOO_LATE, "the window has started: a missed booking is a no-show")
        elif isinstance(msg, NoShow) and msg.t < req.start + req.terms.noshow_timeout_minutes * 60:
            raise RemoteProtocolError(Reason.TOO_EARLY, "the no-show timeout has not passed")

    def _after(self, signed: Signed[Message]) -> None:
        msg, terms = signed.message, self.request.terms
        if isinstance(msg, BookingConfirmation):
            self.booking = Booking(request=self._signed_request, confirmation=signed)  # type: ignore[arg-type]
        elif isinstance(msg, Cancel) and self._roles[signed.signer] is Role.DRIVER:
            self.fee = terms.cancel_fee_at(self.request.start, msg.t) if self.booking is not None else 0
        elif isinstance(msg, NoShow):
            self.fee = terms.noshow_fee
