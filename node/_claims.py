"""A driver's side of what its hosts claim on the ledger: disputes, and catching up.

Theory of operation (DESIGN.md, "Session and metering", "Ledger"): a host claims a
booking on its own feed, with its settlement (the driver may ack or dispute it) or with
a cancel or no-show fee (the driver may dispute it). `dispute` writes the driver's
DISPUTE entry, within the booking terms' dispute window after the claim: of the
settlement when the session settled, else of the fee. `catch_up` brings the driver's
own copy of its bookings up to date with claims made while it was away (a session the
host stopped at the cap or the window's end with no wallet attached, a no-show), so
the wallet never shows a settled booking as started.
"""

from __future__ import annotations

from wattshare.ledger import EntryKind, FeeClaim, LedgerStore, SettlementClaim
from wattshare.protocol import Booking, BookingState, Dispute, Identity, Reason, sign

from ._errors import DisputeRefused
from ._store import NodeStore


def dispute(identity: Identity, store: NodeStore, ledger: LedgerStore, now: int, booking: Booking, reason: Reason,
            detail: str = "") -> Dispute:
    """Dispute what the host claimed for one of this driver's bookings (see the module
    doc); DisputeRefused if there is nothing of the host's to dispute, the settlement has
    an answer already, or the window closed."""
    if booking.request.message.driver != identity.public_key:
        raise DisputeRefused("only the booking's driver can dispute it")
    session = store.session(booking.id)
    if session is not None and session.settlement is not None:
        if session.answer is not None:
            raise DisputeRefused("you already answered this settlement (your wallet acks one that prices "
                                 "right); the first answer stands: talk to your co-op")
        claim, claimed_at = session.settlement.digest, session.settlement.message.t
    elif (fee := ledger.fee_claim(booking.id)) is not None:
        claim, claimed_at = fee
    else:
        raise DisputeRefused("this booking has no settlement or fee to dispute yet; see `wattshare wallet receipts`")
    if now > claimed_at + booking.request.message.terms.dispute_window_minutes * 60:
        raise DisputeRefused("the dispute window of this booking has closed")
    signed = sign(identity, Dispute(booking_id=booking.id, t=now, settlement=claim, reason=reason, detail=detail[:200]))
    ledger.append(identity, [(EntryKind.DISPUTE, signed.message)], t=now)
    if session is not None and session.settlement is not None:
        store.keep_session(booking.id, [signed])
    return signed.message


def catch_up(driver: bytes, store: NodeStore, ledger: LedgerStore) -> list[bytes]:
    """Mark the driver's open bookings its hosts have claimed (see the module doc);
    returns the ids of those now settled, whose settlements await the driver's answer."""
    settled = []
    for row in store.bookings():
        if row["driver"] != driver or row["state"] not in (BookingState.CONFIRMED, BookingState.STARTED):
            continue
        claim = ledger.host_claim(row["booking_id"])
        if isinstance(claim, SettlementClaim):
            store.mark(row["booking_id"], BookingState.SETTLED)
            settled.append(row["booking_id"])
        elif isinstance(claim, FeeClaim) and claim.no_show is not None:
            store.mark(row["booking_id"], BookingState.NO_SHOW, closed_by=claim.no_show)
    return settled
