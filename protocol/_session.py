"""The session state machine: metering receipts, stop, settlement, ack or dispute.

Theory of operation (DESIGN.md, "Session and metering"):

    STARTED --receipt--> METERING --receipt--> METERING
       |                    |
       \\------stop (either)-+--> STOPPING --receipt (final reading)--> STOPPING
                                   \\--settlement (host)--> SETTLED --ack (driver)--> FINAL
                                                              \\--dispute (driver)--> DISPUTED

- Receipts are signed by the host and chained: seq counts from 0, `prev` is the
  digest of the previous signed receipt (GENESIS first), time strictly increases and
  cumulative energy never decreases. Receipt 0 is the start reading at 0 Wh.
- A settlement must name the last receipt, claim its energy, stay within the driver's
  spend cap, and equal the protocol's price of the receipts under the booked tariff,
  line for line (`expected_price`): host, driver and auditor compute the same.
- A dispute is accepted within the terms' dispute window after the settlement.
"""

from __future__ import annotations

from enum import StrEnum

from ._envelope import Signed
from ._errors import IllegalTransition, Reason
from ._machine import Machine, Refusal, Role
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
        self.settlement: Signed[Settlement] | None = None

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
        request = self.booking.request.message
        return price(request.tariff, [r.message for r in self.receipts], request.tz, cap=request.spend_cap)

    def _check(self, signed: Signed[Message], role: Role) -> None:
        msg = signed.message
        if isinstance(msg, MeterReceipt):
            self._check_receipt(msg)
        elif isinstance(msg, Settlement):
            self._check_settlement(msg)
        elif isinstance(msg, SettlementEvent):
            assert self.settlement is not None
            if msg.settlement != self.settlement.digest:
                raise Refusal(Reason.WRONG_BOOKING, f"{signed.type} names another settlement")
            window = self.booking.request.message.terms.dispute_window_minutes * 60
            if isinstance(msg, Dispute) and msg.t > self.settlement.message.t + window:
                raise Refusal(Reason.TOO_LATE, "the dispute window has closed")

    def _check_receipt(self, receipt: MeterReceipt) -> None:
        last = self.receipts[-1] if self.receipts else None
        expected_seq = 0 if last is None else last.message.seq + 1
        if receipt.seq != expected_seq:
            raise Refusal(Reason.BROKEN_CHAIN, f"receipt seq {receipt.seq}, expected {expected_seq}")
        if receipt.prev != (GENESIS if last is None else last.digest):
            raise Refusal(Reason.BROKEN_CHAIN, f"receipt {receipt.seq} does not name the previous one")
        if last is not None and receipt.t <= last.message.t:
            raise Refusal(Reason.BROKEN_CHAIN, f"receipt {receipt.seq} is not later than the previous one")
        if last is not None and receipt.energy_wh < last.message.energy_wh:
            raise Refusal(Reason.BROKEN_CHAIN, f"receipt {receipt.seq} lowers the cumulative energy")

    def _check_settlement(self, settlement: Settlement) -> None:
        if not self.receipts:
            raise Refusal(Reason.BROKEN_CHAIN, "a settlement needs at least the start receipt")
        request = self.booking.request.message
        expected = self.expected_price()
        last = self.receipts[-1]
        if settlement.last_receipt != last.digest or settlement.energy_wh != last.message.energy_wh:
            raise Refusal(Reason.BROKEN_CHAIN, "the settlement must close on the last receipt and its energy")
        if settlement.t < last.message.t:
            raise Refusal(Reason.BROKEN_CHAIN, "the settlement predates the last receipt")
        if settlement.amount > request.spend_cap:
            raise Refusal(Reason.OVER_CAP, f"claims {settlement.amount}, cap is {request.spend_cap}")
        if (settlement.currency, settlement.amount, settlement.breakdown) != (
            expected.currency,
            expected.total,
            expected.lines,
        ):
            raise Refusal(Reason.MISPRICED, f"claims {settlement.amount}, the receipts price to {expected.total}")

    def _after(self, signed: Signed[Message]) -> None:
        if isinstance(signed.message, MeterReceipt):
            self.receipts.append(signed)  # type: ignore[arg-type]
        elif isinstance(signed.message, Settlement):
            self.settlement = signed  # type: ignore[assignment]
