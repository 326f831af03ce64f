"""Bookings over `/wattshare/booking/1.0.0`: the host's desk and the driver's calls.

Theory of operation (DESIGN.md, "Booking"; OCPI 2.3 booking terms):

- The driver sends a `BookingOffer` with its signed request; the host answers one
  `BookingAnswer`: a signed confirmation, with the access info sealed to the driver
  beside it (signed by digest, so the booking that reaches the ledger carries no
  ciphertext of the address), or a signed rejection with a reason code. Both sides keep
  both signed messages; the driver keeps the sealed access too.
- The host checks, in order: the request is the stream peer's own (`WRONG_SIGNER`); the
  charger is here, the ad is unexpired and the request froze its current tariff, terms,
  zone, max power, public cell and country (`AD_UNKNOWN`, `AD_EXPIRED`; an older seq with the same terms
  stands, so a host's routine re-signing does not void a request made just before it);
  the request is fresh and new (`REPLAY`, `TOO_LATE`); the window is inside availability
  (`OUTSIDE_AVAILABILITY`); the cap covers a session's fixed fee (`CAP_TOO_LOW`). A host
  with a ledger then checks the driver's credit (credit holds: `ledger/_state.py`): the driver
  is a member (`NOT_A_MEMBER`); its own feed holds a HOLD of this very request, pulled
  from the driver's node first if this ledger lacks it (`NO_HOLD`); and its balance
  plus credit limit, minus what its holds made before this one and still open hold,
  covers the most this booking can cost (`ledger.exposure`; `INSUFFICIENT_CREDIT`). A
  light host (`light`) follows the driver's feed, fetches the newest proof of its
  account from its co-op first, and counts from that (`ledger._light`). Then it reserves
  the slot atomically in its SQLite (`SLOT_TAKEN`, see `_store`).
- Approval is automatic or manual. A manual request holds its slot as PENDING until the
  host approves or declines it (`DECLINED`), or `approval_timeout` passes
  (`APPROVAL_TIMEOUT`); a refused or timed-out request frees the slot.
- A peer sending more than a burst of requests (`RateLimiter`: 10 at once, then one
  every two seconds) gets `RATE_LIMITED` without any of the checks above being run.
- The driver (`Node.book`) puts the HOLD on its feed before it sends the request, and a
  RELEASE with the host's signed rejection after a refusal: a hold ends only when the
  host can no longer claim the booking. A request whose answer never reached the driver
  (a timeout, Ctrl-C) stays pending on its side, hold and all; the driver asks again
  with the very same signed request (`Node.ask_again`) and the host answers it with what
  it answered before (the confirmation and sealed access, or the signed rejection), or
  ILLEGAL_STATE while it is still deciding.
- A driver's `CancelOffer` runs through the protocol's booking machine; a late cancel
  owes the terms' fee, which the host claims at once as a FEE entry on its ledger feed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from wattshare.ledger import EntryKind, FeeClaim, LedgerStore, exposure, follow_feed, light_credit
from wattshare.protocol import (
    AccessInfo,
    Booking,
    BookingAnswer,
    BookingConfirmation,
    BookingMachine,
    BookingOffer,
    BookingRejection,
    BookingRequest,
    BookingState,
    Cancel,
    CancelAnswer,
    CancelOffer,
    ErrorReply,
    Identity,
    MeterReading,
    Reason,
    RemoteProtocolError,
    Signed,
    access_digest,
    check_time,
    price,
    seal_access,
    sign,
    wall_time,
)

from ._ads import AdBoard
from ._conduct import remote_key
from ._framing import FrameStream, ask, serve
from ._limits import RateLimiter
from ._store import HOLDING, NodeStore

BOOKING_PROTOCOL = TProtocol("/wattshare/booking/1.0.0")
HANDLER_TIMEOUT = 10.0
FRESHNESS = 600  # a request older (or further in the future) than this is stale
log = logging.getLogger(__name__)


class Approval(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class Refused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class BookingDesk:
    """The host's side (see the module doc)."""

    identity: Identity
    board: AdBoard
    store: NodeStore
    access: AccessInfo
    approval: Approval = Approval.AUTO
    ledger: LedgerStore | None = None
    approval_timeout: float = 300.0
    clock: Callable[[], float] = wall_time
    limiter: RateLimiter = field(default_factory=RateLimiter)
    fetch_feed: Callable[[bytes], Awaitable[None]] | None = None  # pull a driver's feed from its node
    light: bool = False  # the ledger is a light member's: credit from an account proof
    fetch_proof: Callable[[bytes], Awaitable[bool]] | None = None  # a light host's: fetch a driver's account proof
    on_confirmed: Callable[[Booking], None] = lambda booking: None  # the sessions' arrivals desk hears of each
    on_closed: Callable[[bytes], None] = lambda booking_id: None  # ... and of each booking cancelled
    _decisions: dict[bytes, tuple[trio.Event, list[bool]]] = field(default_factory=dict)

    async def handle(self, stream: INetStream) -> RemoteProtocolError | None:
        peer = remote_key(stream)
        rejected: list[RemoteProtocolError] = []  # what a signed rejection said

        async def answer(frames: FrameStream) -> None:
            offer = await frames.receive(BookingOffer, CancelOffer)
            if not isinstance(offer, ErrorReply) and not self.limiter.allow(peer):
                raise RemoteProtocolError(Reason.RATE_LIMITED, "too many requests from you; wait a minute")
            if isinstance(offer, BookingOffer):
                reply = await self.decide(offer.request, peer)
                await frames.send(reply)
                if reply.rejection is not None:
                    rejected.append(RemoteProtocolError(reply.rejection.message.reason, reply.rejection.message.detail))
            elif isinstance(offer, CancelOffer):
                await frames.send(CancelAnswer(fee=self.cancel(offer.cancel, peer)))

        refused = await serve(stream, answer, HANDLER_TIMEOUT + self.approval_timeout)
        return refused or next(iter(rejected), None)

    # --- requests ------------------------------------------------------------------

    async def decide(self, request: Signed[BookingRequest], peer: bytes) -> BookingAnswer:
        if (stored := self._answered(request, peer)) is not None:
            return stored
        ledger, driver, arrived = self.ledger, request.message.driver, int(self.clock())
        if ledger is not None and ledger.state.is_member(driver):  # a stranger's costs no pull: `_check_credit` refuses
            if self.light:
                follow_feed(ledger, driver)
                if self.fetch_proof is not None:
                    await self.fetch_proof(driver)
            if self.fetch_feed is not None and ledger.state.hold(driver, request.digest) is None:
                await self.fetch_feed(peer)
        try:
            self._check(request, peer, arrived)
            if not self.store.reserve(request, BookingState.PENDING):  # held, but confirmed only once signed
                raise Refused(Reason.SLOT_TAKEN, "another booking holds an overlapping window")
            if self.approval is Approval.MANUAL:
                await self._await_decision(request.digest)
        except Refused as refused:
            return self._reject(request, refused)
        sealed = seal_access(request.message.driver, self.access)
        confirmation = sign(self.identity, BookingConfirmation(
            booking_id=request.digest, access_digest=access_digest(sealed), confirmed=int(self.clock())))
        self.store.mark(request.digest, BookingState.CONFIRMED, answer=confirmation, access=sealed)
        self.on_confirmed(Booking(request=request, confirmation=confirmation))
        return BookingAnswer(confirmation=confirmation, access=sealed)

    def _answered(self, request: Signed[BookingRequest], peer: bytes) -> BookingAnswer | None:
        """The answer this host gave the very same request before (its driver asking again
        after the answer was lost), or None for a request not seen here."""
        row = self.store.get(request.digest)
        if row is None or request.signer != peer:
            return None
        if row["state"] == BookingState.PENDING:
            raise RemoteProtocolError(Reason.ILLEGAL_STATE, "the host is still deciding; ask again later")
        if row["state"] == BookingState.REJECTED and (rejection := self.store.rejection(request.digest)) is not None:
            return BookingAnswer(rejection=rejection)
        booking = self.store.booking(request.digest)
        if booking is not None and row["access"] is not None and row["state"] in HOLDING + (BookingState.SETTLED,):
            return BookingAnswer(confirmation=booking.confirmation, access=row["access"])
        raise RemoteProtocolError(Reason.REPLAY, f"this request was answered and is now {row['state']}")

    def _check(self, request: Signed[BookingRequest], peer: bytes, arrived: int) -> None:
        """Refuse a request that breaks a rule; its freshness is judged as it `arrived`
        (before the pull of the driver's feed, which may take seconds through a relay)."""
        r, now = request.message, int(self.clock())
        if request.signer != peer:
            raise Refused(Reason.WRONG_SIGNER, "the request must be signed by the peer that sends it")
        ad = self.board.ads.get(r.charger_id)
        if r.host != self.identity.public_key or ad is None:
            raise Refused(Reason.AD_UNKNOWN, f"no charger {r.charger_id!r} here")
        current = ad.message
        frozen = (r.tariff, r.terms, r.tz, r.max_power_w, r.geohash, r.country)
        if r.ad_seq > current.seq or frozen != (current.tariff, current.terms, current.tz, current.max_power_w,
                                                current.geohash, current.country) \
                or current.expires <= now:
            raise Refused(Reason.AD_EXPIRED, f"the ad is now at seq {current.seq}: search again")
        if abs(arrived - r.created) > FRESHNESS:
            raise Refused(Reason.REPLAY, "the request is stale")
        if self.store.get(request.digest) is not None:
            raise Refused(Reason.REPLAY, "this request was already answered")  # a stranger replaying a driver's
        if r.end <= now:
            raise Refused(Reason.TOO_LATE, "the window has passed")
        if not current.is_available(r.start, r.end):
            raise Refused(Reason.OUTSIDE_AVAILABILITY, "the window is outside the charger's hours")
        fixed = price(r.tariff, [MeterReading(r.start)], r.tz).total
        if r.spend_cap < fixed:
            raise Refused(Reason.CAP_TOO_LOW, f"a session costs at least {fixed}")
        if self.ledger is not None:
            self._check_credit(request, now)

    def _check_credit(self, request: Signed[BookingRequest], now: int) -> None:
        r, state = request.message, self.ledger.state  # type: ignore[union-attr]
        if not state.is_member(r.driver):
            raise Refused(Reason.NOT_A_MEMBER, "the co-op has not admitted your key: ask it to run "
                                               "`wattshare coop admit` with your peer id")
        hold = state.hold(r.driver, request.digest)
        if hold is None:
            raise Refused(Reason.NO_HOLD, "your ledger feed holds no credit hold for this request: "
                                          "book from a wallet node that keeps its ledger")
        available = light_credit(self.ledger, r.driver, r.tariff.currency, before=hold[0]) if self.light \
            else state.available(r.driver, r.tariff.currency, now, before=hold[0])
        if available < exposure(r):
            raise Refused(Reason.INSUFFICIENT_CREDIT, f"balance and credit minus your open holds leave {available}, "
                                                      f"less than the {exposure(r)} this booking can cost")

    async def _await_decision(self, booking_id: bytes) -> None:
        event, verdict = trio.Event(), []
        self._decisions[booking_id] = (event, verdict)
        try:
            with trio.move_on_after(self.approval_timeout):
                await event.wait()
        finally:
            del self._decisions[booking_id]
        if not verdict:
            raise Refused(Reason.APPROVAL_TIMEOUT, "the host did not decide in time")
        if not verdict[0]:
            raise Refused(Reason.DECLINED, "the host declined")

    def pending(self) -> list[bytes]:
        return list(self._decisions)

    def decide_pending(self, booking_id: bytes, approve: bool) -> None:
        """The host's manual decision (from the CLI or admin socket)."""
        if booking_id not in self._decisions:
            raise KeyError("no such pending request")
        event, verdict = self._decisions[booking_id]
        verdict.append(approve)
        event.set()

    def _reject(self, request: Signed[BookingRequest], refused: Refused) -> BookingAnswer:
        rejection = sign(self.identity, BookingRejection(
            booking_id=request.digest, reason=refused.reason, detail=refused.detail[:500]))
        if self.store.get(request.digest) is not None and refused.reason is not Reason.REPLAY:
            self.store.mark(request.digest, BookingState.REJECTED, answer=rejection)
        return BookingAnswer(rejection=rejection)

    # --- cancellations ---------------------------------------------------------------

    def cancel(self, cancel: Signed[Cancel], peer: bytes) -> int:
        """Apply a driver's cancel; returns the fee owed (and claims it on the ledger)."""
        row = self.store.get(cancel.message.booking_id)
        if row is None or row["state"] not in (BookingState.CONFIRMED, BookingState.PENDING):
            raise RemoteProtocolError(Reason.WRONG_BOOKING, "no open booking with that id here")
        if cancel.signer != peer:
            raise RemoteProtocolError(Reason.WRONG_SIGNER, "the cancel must be the sending peer's")
        check_time(cancel.message.t, self.clock(), "the cancel")
        request = self.store.request(cancel.message.booking_id)
        assert request is not None
        machine = BookingMachine(request)
        if (booking := self.store.booking(request.digest)) is not None:
            machine.receive(booking.confirmation)
        machine.receive(cancel)
        self.store.mark(request.digest, BookingState.CANCELLED, closed_by=cancel)
        self.on_closed(request.digest)
        if machine.fee and self.ledger is not None and machine.booking is not None:
            claim = FeeClaim(booking=machine.booking, cancel=cancel, amount=machine.fee)
            self.ledger.append(self.identity, [(EntryKind.FEE, claim)], t=int(self.clock()))
        return machine.fee


class BookingRejected(Exception):
    """The host said no; `reason` says why (a protocol reason code), `rejection` is its
    signed answer (None if the refusal came before one)."""

    def __init__(self, reason: Reason, detail: str, rejection: Signed[BookingRejection] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.rejection = rejection


async def request_booking(host: IHost, peer: ID, request: Signed[BookingRequest],
                          timeout: float = 30.0) -> tuple[Booking, bytes]:
    """Ask the host for a booking: the confirmed, double-signed Booking and the access
    info sealed to the driver (which the confirmation signs by digest), or BookingRejected."""
    answer = await ask(host, peer, BOOKING_PROTOCOL, BookingOffer(request=request), BookingAnswer, timeout)
    machine = BookingMachine(request)
    if answer.rejection is not None:
        machine.receive(answer.rejection)
        raise BookingRejected(answer.rejection.message.reason, answer.rejection.message.detail, answer.rejection)
    machine.receive(answer.confirmation)  # type: ignore[arg-type]
    assert machine.booking is not None and answer.access is not None
    return machine.booking, answer.access


async def request_cancel(host: IHost, peer: ID, cancel: Signed[Cancel], timeout: float = 10.0) -> int:
    """Cancel a booking at its host; returns the fee the host will claim."""
    answer = await ask(host, peer, BOOKING_PROTOCOL, CancelOffer(cancel=cancel), CancelAnswer, timeout)
    return answer.fee
