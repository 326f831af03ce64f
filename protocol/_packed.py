"""Packed forms of a booking's host-signed messages: how a ledger entry carries a claim.

Theory of operation (DESIGN.md, "Ledger": a settlement embeds the booking and its
receipts): a claimed session is the driver's request plus the host's confirmation,
receipt chain and settlement, and the host's messages repeat what the booking already
fixes (the booking id, each receipt's seq and previous digest, the signer, envelope
keys). Packed, each keeps only what is its own, plus the host's signature:

- `confirmation`: access_digest (32 bytes), confirmed (int64), signature (64): 104 bytes;
  its booking_id is the request's digest.
- `readings`: per receipt, t minus the request's start (int32), energy_wh (uint32) and
  the signature: 72 bytes; booking_id, seq and prev follow from the chain.
- `settlement`: the map {t, sig, amount, breakdown}; its booking_id, last_receipt,
  energy_wh (the last receipt's) and currency (the tariff's) follow from the rest.

`unpack_claim` rebuilds the exact signed messages (the same bytes, so the same digests:
the driver's copies and answers name them as before) and verifies each signature as a
decoded envelope's is (`Signed.assemble`; not again inside an object the host signed as
a whole, `vouched_by`, as a ledger entry by the host does). A claim the packed form
cannot say (receipts that are not the booking host's chain from receipt 0, a settlement
that does not close on the last receipt, or is of another booking, signer or currency)
cannot be built: `claim_problem` names why. Those are broken sessions by the protocol's
own rules, so nothing a ledger could accept is lost.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from . import _codec
from ._envelope import Signed
from ._errors import DecodeError, InvalidValue, Reason
from ._messages import GENESIS, Booking, BookingConfirmation, BookingRequest, MeterReceipt, Settlement
from ._pricing import PriceLine
from ._record import require_keys

RECEIPT = struct.Struct(">iI64s")  # t - start, energy_wh, signature
CONFIRMATION = struct.Struct(">32sq64s")  # access_digest, confirmed, signature
MAX_RECEIPTS = 2000
CLAIM_KEYS = ["request", "readings", "settlement", "confirmation"]  # in key order
_SETTLEMENT_KEYS = ["t", "sig", "amount", "breakdown"]


def claim_problem(booking: Booking, receipts: Sequence[Signed[MeterReceipt]], settlement: Signed[Settlement]) -> str | None:
    """Why this claim cannot be packed (see the module doc), or None."""
    request = booking.request.message
    prev = GENESIS
    for seq, signed in enumerate(receipts):
        receipt = signed.message
        if signed.signer != request.host or receipt.booking_id != booking.id or receipt.seq != seq \
                or receipt.prev != prev:
            return f"receipt {seq} is not the next of the booking host's chain"
        if not -(1 << 31) <= receipt.t - request.start < 1 << 31 or receipt.energy_wh >= 1 << 32:
            return f"receipt {seq} is too far from the booking's start or too large to pack"
        prev = signed.digest
    closes = settlement.message
    if settlement.signer != request.host or closes.booking_id != booking.id or not receipts \
            or closes.last_receipt != prev or closes.energy_wh != receipts[-1].message.energy_wh \
            or closes.currency != request.tariff.currency:
        return "the settlement does not close this booking's last receipt, in its tariff's currency, by its host"
    return None


def pack_claim(booking: Booking, receipts: Sequence[Signed[MeterReceipt]], settlement: Signed[Settlement]) -> dict[str, Any]:
    """The packed wire map of a claim `claim_problem` finds nothing wrong with."""
    start, closes, confirmation = booking.request.message.start, settlement.message, booking.confirmation
    return {
        "request": booking.request.to_wire(),
        "readings": b"".join(RECEIPT.pack(r.message.t - start, r.message.energy_wh, r.signature) for r in receipts),
        "settlement": {"t": closes.t, "sig": settlement.signature, "amount": closes.amount,
                       "breakdown": [line.to_wire() for line in closes.breakdown]},
        "confirmation": CONFIRMATION.pack(confirmation.message.access_digest, confirmation.message.confirmed,
                                          confirmation.signature),
    }


def unpack_claim(value: Any) -> tuple[Booking, tuple[Signed[MeterReceipt], ...], Signed[Settlement]]:
    """The booking, receipts and settlement a packed map holds; DecodeError (or
    SignatureError) if it holds none."""
    if type(value) is not dict:
        raise DecodeError(Reason.MALFORMED, "a packed claim is a map")
    require_keys("packed claim", value, CLAIM_KEYS)
    request = Signed.from_wire(value["request"], BookingRequest)
    host = request.message.host
    try:
        booking = Booking(request=request, confirmation=_confirmation(value["confirmation"], request.digest, host))
        receipts = _receipts(value["readings"], request.digest, host, request.message.start)
        return booking, receipts, _settlement(value["settlement"], booking, receipts[-1])
    except InvalidValue as exc:
        raise DecodeError(Reason.MALFORMED, f"packed claim: {exc}") from None


def _bytes(value: Any, what: str) -> bytes:
    if type(value) is not bytes:
        raise DecodeError(Reason.MALFORMED, f"packed {what}: expected bytes")
    return value


def _confirmation(value: Any, booking_id: bytes, host: bytes) -> Signed[BookingConfirmation]:
    data = _bytes(value, "confirmation")
    if len(data) != CONFIRMATION.size:
        raise DecodeError(Reason.MALFORMED, f"a packed confirmation is {CONFIRMATION.size} bytes")
    access_digest, confirmed, signature = CONFIRMATION.unpack(data)
    message = BookingConfirmation(booking_id=booking_id, access_digest=access_digest, confirmed=confirmed)
    return Signed.assemble(message, host, signature)


def _receipts(value: Any, booking_id: bytes, host: bytes, start: int) -> tuple[Signed[MeterReceipt], ...]:
    data = _bytes(value, "readings")
    count, rest = divmod(len(data), RECEIPT.size)
    if rest or not 1 <= count <= MAX_RECEIPTS:
        raise DecodeError(Reason.MALFORMED, f"packed receipts are 1 to {MAX_RECEIPTS} of {RECEIPT.size} bytes each")
    out: list[Signed[MeterReceipt]] = []
    prev = GENESIS
    for seq, (offset, energy_wh, signature) in enumerate(RECEIPT.iter_unpack(data)):
        wire = {"t": start + offset, "seq": seq, "prev": prev, "energy_wh": energy_wh, "booking_id": booking_id}
        signed = Signed.assemble(MeterReceipt.from_wire(wire), host, signature, _codec.encode(wire, checked=True))
        out.append(signed)
        prev = signed.digest
    return tuple(out)


def _settlement(value: Any, booking: Booking, last: Signed[MeterReceipt]) -> Signed[Settlement]:
    if type(value) is not dict:
        raise DecodeError(Reason.MALFORMED, "a packed settlement is a map")
    require_keys("packed settlement", value, _SETTLEMENT_KEYS)
    if type(value["breakdown"]) is not list or len(value["breakdown"]) > 64:
        raise DecodeError(Reason.MALFORMED, "a packed settlement's breakdown is a list of at most 64 lines")
    breakdown = tuple(PriceLine.from_wire(line) for line in value["breakdown"])
    signature = _bytes(value["sig"], "settlement signature")
    if type(value["t"]) is not int or type(value["amount"]) is not int or len(signature) != 64:
        raise DecodeError(Reason.MALFORMED, "a packed settlement's t and amount are integers, sig 64 bytes")
    request = booking.request.message
    message = Settlement(booking_id=booking.id, last_receipt=last.digest, energy_wh=last.message.energy_wh,
                         amount=value["amount"], currency=request.tariff.currency, breakdown=breakdown, t=value["t"])
    return Signed.assemble(message, request.host, signature)
