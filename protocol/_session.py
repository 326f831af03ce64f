"""The session state machine: metering receipts, stop, settlement, ack or dispute.

Theory of operation (DESIGN.md, "Session and metering"):

    STARTED --receipt--> METERING --receipt--> METERING
       |                    |
       \\------stop (either)-+--> STOPPING --receipt (final reading)--> STOPPING
                                   \\--settlement (host)--> SETTLED --ack (driver)--> FINAL
                                                              \\--dispute (driver)--> DISPUTED

- Receipts are signed by the host and chained: seq counts from 0, `prev` is the
  digest of the previous signed receipt (GENESIS first), time strictly increases and
  cumulative energy never decreases. Receipt 0 is the start reading at 0 Wh. A break
  of the chain is refused at once (BROKEN_CHAIN).
- Receipts must also be physically plausible (`implausible`): dated inside the booking
  window, from the terms' early-start grace to `SETTLE_MARGIN` after its end
  (OUTSIDE_WINDOW); no interval delivering more than the charger's max power (frozen in
  the request) times the elapsed time, with `POWER_TOLERANCE` percent plus
  `METER_ROUNDING_WH` for meter rounding (OVER_POWER); and once a stop is taken, one
  reading at most dated after it (the final one), no more than `FINAL_READING_MARGIN`
  after it (AFTER_STOP); readings dated before the stop may still arrive (a wallbox
  delivering its queue after a reconnect). An implausible receipt is still taken into
  the chain (it is the host's signed claim) but recorded in `faults`, and a settlement
  of a session with a fault is refused with the first fault's reason: the driver
  disputes instead of acking, and a ledger refuses the claim (`check_session`).
  Plausibility bounds the pricing work too: every receipt lies within a window of at
  most a day.
- A settlement must name the last receipt, claim its energy, stay within the driver's
  spend cap, and equal the protocol's price of the receipts under the booked tariff,
  line for line (`expected_price`): host, driver and auditor compute the same.
- A dispute is accepted within the terms' dispute window after the settlement.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from enum import StrEnum

from ._envelope import Signed
from ._errors import IllegalTransition, Reason, RemoteProtocolError
from ._machine import Machine, Role
from ._messages import (
    GENESIS,
    Booking,
    Dispute,
    MeterReceipt,
    Settlement,
    SettlementAck,
    SettlementEvent,
    StartRequest,
    StopRequest,
)
from ._pricing import Price, price
from ._record import Message, require

SETTLE_MARGIN = 30 * 60  # a reading may follow the window's end by this much (the stop's final one)
FINAL_READING_MARGIN = 15 * 60  # after a stop: one final reading, at most this long after it
POWER_TOLERANCE = 5  # percent above the charger's max power a meter interval may show
METER_ROUNDING_WH = 2  # whole-Wh meter registers round each reading


class SessionState(StrEnum):
    STARTED = "started"
    METERING = "metering"
    STOPPING = "stopping"
    SETTLED = "settled"
    FINAL = "final"
    DISPUTED = "disputed"


_S = SessionState


class SessionMachine(Machine):
    """One charging session of a confirmed booking, from the driver's accepted start."""

    TRANSITIONS = {
        (_S.STARTED, MeterReceipt, Role.HOST): _S.METERING,
        (_S.METERING, MeterReceipt, Role.HOST): _S.METERING,
        (_S.STARTED, StopRequest, Role.DRIVER): _S.STOPPING,
        (_S.STARTED, StopRequest, Role.HOST): _S.STOPPING,
        (_S.METERING, StopRequest, Role.DRIVER): _S.STOPPING,
        (_S.METERING, StopRequest, Role.HOST): _S.STOPPING,
        (_S.STOPPING, MeterReceipt, Role.HOST): _S.STOPPING,
        (_S.STOPPING, Settlement, Role.HOST): _S.SETTLED,
        (_S.SETTLED, SettlementAck, Role.DRIVER): _S.FINAL,
        (_S.SETTLED, Dispute, Role.DRIVER): _S.DISPUTED,
    }

    def __init__(self, booking: Booking, start: Signed[StartRequest]) -> None:
        request = booking.request.message
        super().__init__(booking.id, request.driver, request.host)
        require(
            start.signer == request.driver and start.message.booking_id == booking.id,
            "a session starts with its booking driver's start request",
        )
        self.booking = booking
        self.start = start
        self.state = SessionState.STARTED
        self.receipts: list[Signed[MeterReceipt]] = []
        self.stop: Signed[StopRequest] | None = None
        self._after_stop = 0  # receipts taken since the stop and dated after it
        self.faults: list[RemoteProtocolError] = []  # implausible receipts taken (see the module doc)
        self.settlement: Signed[Settlement] | None = None

    def fork(self) -> SessionMachine:
        """A copy to try steps on: steps taken on it leave this machine as it is."""
        twin = copy.copy(self)
        twin.history, twin.receipts, twin.faults = list(self.history), list(self.receipts), list(self.faults)
        return twin

    def running_price(self) -> Price | None:
        """The uncapped price of the receipts so far (live cost); None before receipt 0."""
        if not self.receipts:
            return None
        request = self.booking.request.message
        return price(request.tariff, [r.message for r in self.receipts], request.tz)

    def expected_price(self) -> Price:
        """What the settlement must claim: the receipts' price, capped at the spend cap."""
        if not self.receipts:
            raise IllegalTransition("no receipt yet: nothing to settle")
        return settlement_price(self.booking, self.receipts)

    def implausible(self, receipt: MeterReceipt) -> RemoteProtocolError | None:
        """Why `receipt` would be an implausible next reading here, or None (see the
        module doc); the host asks before it signs one, the driver as it takes one."""
        last = self.receipts[-1].message if self.receipts else None
        fault = implausible(self.booking, last, receipt)
        if fault is None and self.stop is not None and receipt.t > self.stop.message.t:
            if self._after_stop:
                fault = RemoteProtocolError(Reason.AFTER_STOP, "a second reading after the stop")
            elif receipt.t > self.stop.message.t + FINAL_READING_MARGIN:
                fault = RemoteProtocolError(Reason.AFTER_STOP, "the final reading comes too long after the stop")
        return fault

    def _check(self, signed: Signed[Message], role: Role) -> None:
        msg = signed.message
        if isinstance(msg, MeterReceipt):
            check_receipt(self.receipts[-1] if self.receipts else None, msg)
        elif isinstance(msg, Settlement):
            if self.faults:
                raise self.faults[0]
            check_settlement(self.booking, self.receipts, msg)
        elif isinstance(msg, SettlementEvent):
            assert self.settlement is not None
            if msg.settlement != self.settlement.digest:
                raise RemoteProtocolError(Reason.WRONG_BOOKING, f"{signed.type} names another settlement")
            window = self.booking.request.message.terms.dispute_window_minutes * 60
            if isinstance(msg, Dispute) and msg.t > self.settlement.message.t + window:
                raise RemoteProtocolError(Reason.TOO_LATE, "the dispute window has closed")

    def _after(self, signed: Signed[Message]) -> None:
        if isinstance(signed.message, MeterReceipt):
            fault = self.implausible(signed.message)
            if fault is not None:
                self.faults.append(fault)
            self.receipts.append(signed)  # type: ignore[arg-type]
            self._after_stop += self.stop is not None and signed.message.t > self.stop.message.t
        elif isinstance(signed.message, StopRequest):
            self.stop = signed  # type: ignore[assignment]
        elif isinstance(signed.message, Settlement):
            self.settlement = signed  # type: ignore[assignment]


def implausible(booking: Booking, last: MeterReceipt | None, receipt: MeterReceipt) -> RemoteProtocolError | None:
    """Why `receipt`, following `last`, is not a reading the booked charger could have
    made (outside the window's margins, or faster than its power), or None."""
    r = booking.request.message
    opens, closes = r.terms.opening(r.start), r.end + SETTLE_MARGIN
    if not opens <= receipt.t <= closes:
        return RemoteProtocolError(Reason.OUTSIDE_WINDOW, f"reading {receipt.seq} at {receipt.t} is outside "
                                                          f"[{opens}, {closes}]")
    if last is not None:
        most = r.max_power_w * (receipt.t - last.t) * (100 + POWER_TOLERANCE) // (100 * 3600) + METER_ROUNDING_WH
        if receipt.energy_wh - last.energy_wh > most:
            return RemoteProtocolError(Reason.OVER_POWER, f"reading {receipt.seq} adds "
                                                          f"{receipt.energy_wh - last.energy_wh} Wh, at most {most} "
                                                          f"at {r.max_power_w} W")
    return None


def check_receipt(last: Signed[MeterReceipt] | None, receipt: MeterReceipt) -> None:
    """The receipt chain rule: `receipt` must follow `last` (None: it must be receipt 0)."""
    expected_seq = 0 if last is None else last.message.seq + 1
    if receipt.seq != expected_seq:
        raise RemoteProtocolError(Reason.BROKEN_CHAIN, f"receipt seq {receipt.seq}, expected {expected_seq}")
    if receipt.prev != (GENESIS if last is None else last.digest):
        raise RemoteProtocolError(Reason.BROKEN_CHAIN, f"receipt {receipt.seq} does not name the previous one")
    if last is not None and receipt.t <= last.message.t:
        raise RemoteProtocolError(Reason.BROKEN_CHAIN, f"receipt {receipt.seq} is not later than the previous one")
    if last is not None and receipt.energy_wh < last.message.energy_wh:
        raise RemoteProtocolError(Reason.BROKEN_CHAIN, f"receipt {receipt.seq} lowers the cumulative energy")


def settlement_price(booking: Booking, receipts: Sequence[Signed[MeterReceipt]]) -> Price:
    """The price a settlement of these receipts must claim: tariff price, capped at spend_cap."""
    request = booking.request.message
    return price(request.tariff, [r.message for r in receipts], request.tz, cap=request.spend_cap)


def check_settlement(booking: Booking, receipts: Sequence[Signed[MeterReceipt]], settlement: Settlement) -> None:
    """A settlement must close on the last receipt, stay within the cap and be priced right."""
    if not receipts:
        raise RemoteProtocolError(Reason.BROKEN_CHAIN, "a settlement needs at least the start receipt")
    if settlement.booking_id != booking.id:
        raise RemoteProtocolError(Reason.WRONG_BOOKING, "the settlement names another booking")
    request = booking.request.message
    last = receipts[-1]
    if settlement.last_receipt != last.digest or settlement.energy_wh != last.message.energy_wh:
        raise RemoteProtocolError(Reason.BROKEN_CHAIN, "the settlement must close on the last receipt and its energy")
    if settlement.t < last.message.t:
        raise RemoteProtocolError(Reason.BROKEN_CHAIN, "the settlement predates the last receipt")
    if settlement.amount > request.spend_cap:
        raise RemoteProtocolError(Reason.OVER_CAP, f"claims {settlement.amount}, cap is {request.spend_cap}")
    expected = settlement_price(booking, receipts)
    if (settlement.currency, settlement.amount, settlement.breakdown) != (expected.currency, expected.total, expected.lines):
        raise RemoteProtocolError(
            Reason.MISPRICED, f"claims {settlement.amount}, the receipts price to {expected.total}"
        )


def check_session(booking: Booking, receipts: Sequence[Signed[MeterReceipt]], settlement: Signed[Settlement]) -> None:
    """Verify a finished session as a whole (what a ledger or an auditor holds): every
    receipt and the settlement belong to the booking, are the host's, chain, are
    plausible (the stop is not on the ledger: that rule is the driver's), and price."""
    host = booking.request.message.host
    last = None
    for receipt in receipts:
        if receipt.signer != host or receipt.message.booking_id != booking.id:
            raise RemoteProtocolError(Reason.WRONG_BOOKING, "a receipt of another booking or signer")
        check_receipt(last, receipt.message)
        fault = implausible(booking, last.message if last is not None else None, receipt.message)
        if fault is not None:
            raise fault
        last = receipt
    if settlement.signer != host:
        raise RemoteProtocolError(Reason.WRONG_SIGNER, "a settlement is signed by the booking's host")
    check_settlement(booking, receipts, settlement.message)
