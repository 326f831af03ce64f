"""Charging sessions at the host: `/wattshare/session/1.0.0` driven by the wallbox's OCPP.

Theory of operation (DESIGN.md, "Session and metering"; the protocol's SessionMachine):

- Start: the driver's `SessionOffer` carries its signed StartRequest. The desk checks it
  is the stream peer's confirmed booking here, inside the window (from the terms' early
  start grace to the window's end), with the wallbox connected; stores the session,
  sends RemoteStartTransaction with the booking's id tag and waits for the wallbox's
  StartTransaction, which mints receipt 0 (0 Wh). If the wallbox does not start, the
  session is undone and the booking is confirmed again (`CHARGER_OFFLINE`).
- Metering: every Energy.Active.Import.Register reading of the transaction becomes the
  next hash-chained MeterReceipt, signed and stored before the wallbox gets its
  CALLRESULT; a reading not later and not higher than the last receipt is a resent one
  (a reconnect replaying its queue) and is skipped, so energy is neither lost (the
  register is cumulative) nor counted twice.
- Stop: at the window's end, on the driver's StopOffer, when the wallbox stops by
  itself, or when the spend cap is near: after each receipt the desk prices one more
  meter interval at the charger's full power, and stops if that could pass the cap, so
  the cap is never exceeded even by one interval. The final reading closes the chain;
  a wallbox that never reports it is settled on the receipts it did report.
- Settlement: priced by the protocol (`SessionMachine.expected_price`), signed, stored,
  pushed to the driver and claimed on the host's ledger feed. The driver's ack or
  dispute, if it answers on the stream, is stored with the session.
- Every message the session machine took is replayed, in order, to a driver that
  (re)attaches with a StartRequest for the running or settled session. A session the
  driver has answered leaves memory (it is replayed from the store), and so do the
  desk's notes of bookings no longer confirmed: a host running for a year holds only
  its open sessions and bookings.
- Reservation: when a confirmed booking's window opens (early start grace included),
  the wallbox gets ReserveNow for the booking's id tag until the no-show deadline.
- No-show: a confirmed booking not started `noshow_timeout_minutes` after its window
  opened is closed with a signed NoShow, the terms' fee claimed on the ledger and the
  reservation cancelled (CancelReservation).
- A full disk: a refused write raises before anything changes in memory (every message
  is stored before the session machine takes it), so the wallbox's OCPP call gets
  InternalError and resends, and background steps retry.
- Crash safety: a restarted desk rebuilds every session the driver has not answered
  from its stored messages (a finished one only when its driver re-attaches), re-arms its window, finishes a stop in progress, and makes a stored but
  unclaimed settlement's ledger claim (once: the ledger refuses a second claim).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError

from wattshare.ledger import EntryKind, FeeClaim, LedgerStore, SettlementClaim
from wattshare.protocol import (
    MAX_CLOCK_SKEW,
    GENESIS,
    Booking,
    BookingConfirmation,
    BookingMachine,
    BookingRequest,
    Dispute,
    ErrorReply,
    Identity,
    MeterReading,
    MeterReceipt,
    Message,
    NoShow,
    Reason,
    RemoteProtocolError,
    SessionAnswer,
    SessionMachine,
    SessionOffer,
    SessionState,
    SessionUpdate,
    Settlement,
    SettlementAck,
    SettlementEvent,
    Signed,
    StartRequest,
    StopOffer,
    StopRequest,
    price,
    sign,
)

from ._conduct import remote_key
from . import _ocpp as ocpp
from ._central import CentralSystem, ChargerOffline, OcppEndpoint
from ._clock import Clock
from ._framing import FrameStream, StreamEnded, serve
from ._store import NodeStore, Slot

SESSION_PROTOCOL = TProtocol("/wattshare/session/1.0.0")
START_TIMEOUT = 15.0  # real seconds for the wallbox to start after RemoteStartTransaction
STOP_WAIT = 30.0  # real seconds for its StopTransaction before settling without it
ANSWER_TIMEOUT = 10.0  # real seconds for the driver's ack or dispute on the stream
STREAM_LIMIT = 48 * 3600.0  # no session stream outlives this, whatever the clock
METER_INTERVAL = 60  # the shortest meter interval the cap check assumes (clock seconds)
STORAGE_RETRY = 1.0  # real seconds before a background step the disk refused runs again
WATCH_POLL = 0.2  # real seconds between looks at the confirmed bookings
_RUNNING = (SessionState.STARTED, SessionState.METERING)
log = logging.getLogger(__name__)


def id_tag(booking_id: bytes) -> str:
    """The OCPP idTag (CiString20) of a booking's session."""
    return booking_id.hex()[:20]


def reservation_id(booking_id: bytes) -> int:
    """The OCPP reservationId (a positive int32) of a booking's connector reservation."""
    return int.from_bytes(booking_id[:4], "big") & 0x7FFF_FFFF


@dataclass
class Live:
    """A session the desk is running or has settled since it started."""

    machine: SessionMachine
    charger: str
    transaction: int | None = None
    meter_start: int = 0
    started: trio.Event = field(default_factory=trio.Event)
    changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


def _update(signed: Signed[Message]) -> SessionUpdate | None:
    """The frame that shows a driver one message of the host's session history."""
    message = signed.message
    if isinstance(message, MeterReceipt):
        return SessionUpdate(receipt=signed)  # type: ignore[arg-type]
    if isinstance(message, StopRequest):
        return SessionUpdate(stop=signed)  # type: ignore[arg-type]
    if isinstance(message, Settlement):
        return SessionUpdate(settlement=signed)  # type: ignore[arg-type]
    return None  # the driver's own answer


class SessionDesk:
    """The host's sessions (see the module doc); also the central system's `Transactions`."""

    def __init__(self, identity: Identity, store: NodeStore, clock: Clock, ledger: LedgerStore | None,
                 ocpp: OcppEndpoint) -> None:
        self.identity = identity
        self.store = store
        self.clock = clock
        self.ledger = ledger
        self.central = CentralSystem(self, clock, ocpp)
        self.live: dict[bytes, Live] = {}
        self._nursery: trio.Nursery | None = None
        self._reserved: set[bytes] = set()
        self._confirmed: dict[bytes, Booking] = {}
        for row in store.sessions(open_only=True):
            self.live[row["booking_id"]] = self._restore(row)

    def _booking(self, row: dict) -> Booking:
        return Booking(request=Signed.decode(row["request"], BookingRequest),
                       confirmation=Signed.decode(row["answer"], BookingConfirmation))

    def _restore(self, row: dict) -> Live:
        booking = self._booking(self.store.get(row["booking_id"]))  # type: ignore[arg-type]
        live = Live(SessionMachine(booking, Signed.decode(row["start"], StartRequest)), row["charger_id"],
                    row["transaction_id"], row["meter_start"] or 0)
        history: list[Signed] = [Signed.decode(e, MeterReceipt) for e in self.store.receipts(booking.id)]
        if row["stop"] is not None:
            stop = Signed.decode(row["stop"], StopRequest)
            history.insert(sum(1 for r in history if r.message.t <= stop.message.t), stop)
        if row["settlement"] is not None:
            history.append(Signed.decode(row["settlement"], Settlement))
        if row["answer"] is not None:
            history.append(Signed.decode(row["answer"], SettlementEvent))
        for signed in history:
            live.machine.receive(signed)
        if live.transaction is not None:
            live.started.set()
        return live

    # --- lifetime -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Serve OCPP, resume stored sessions and watch the confirmed bookings, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.central.serve)
            for live in list(self.live.values()):
                self._resume(live)
            task_status.started()
            while True:
                try:
                    self._watch_bookings()
                except sqlite3.OperationalError as error:
                    log.warning("storage refused a write (%s); the next look retries", error)
                await trio.sleep(WATCH_POLL)

    def _resume(self, live: Live) -> None:
        state = live.machine.state
        if state in _RUNNING and live.transaction is None:
            del self.live[live.machine.booking_id]  # the wallbox never started: start again
            self.store.drop_session(live.machine.booking_id)
        elif state in _RUNNING:
            self._spawn(self._watch_window, live)
        elif state is SessionState.STOPPING:
            self._spawn(self._remote_stop, live)
        elif live.machine.settlement is not None:
            self._finish(live)

    def _spawn(self, task, *args: object) -> None:  # noqa: ANN001 - an async function
        """Run `task` in the background; a storage failure (a full disk) is retried, never
        fatal: every task here can run again from the top."""
        assert self._nursery is not None, "the desk is not running"

        async def retried() -> None:
            while True:
                try:
                    return await task(*args)
                except sqlite3.OperationalError as error:
                    log.warning("storage refused a write (%s); retrying in %g s", error, STORAGE_RETRY)
                    await trio.sleep(STORAGE_RETRY)

        self._nursery.start_soon(retried)

    # --- the driver's stream ----------------------------------------------------------

    async def handle(self, stream: INetStream) -> RemoteProtocolError | None:
        peer = remote_key(stream)

        async def answer(frames: FrameStream) -> None:
            offer = await frames.receive(SessionOffer)
            if isinstance(offer, ErrorReply):
                return
            live = await self.start(offer.start, peer)
            frames.timeout = STREAM_LIMIT  # a driver may stay quiet for the whole session
            await self._attend(frames, live)

        return await serve(stream, answer, STREAM_LIMIT)

    async def start(self, start: Signed[StartRequest], peer: bytes) -> Live:
        """Start the session of `start`'s booking, or re-attach to it; RemoteProtocolError if not."""
        booking_id = start.message.booking_id
        row = self.store.get(booking_id)
        if row is None or row["host"] != self.identity.public_key:
            raise RemoteProtocolError(Reason.WRONG_BOOKING, "no booking with that id here")
        if start.signer != peer or row["driver"] != peer:
            raise RemoteProtocolError(Reason.WRONG_SIGNER, "only the booking's driver can start its session")
        if booking_id in self.live:
            return self.live[booking_id]
        stored = self.store.session(booking_id)
        if stored is not None:  # finished before this run: replay it
            self.live[booking_id] = self._restore(stored)
            return self.live[booking_id]
        if row["state"] != Slot.CONFIRMED:
            raise RemoteProtocolError(Reason.ILLEGAL_STATE, f"the booking is {row['state']}")
        booking = self._booking(row)
        r, now = booking.request.message, self.clock()
        if now < r.start - r.terms.early_start_minutes * 60:
            raise RemoteProtocolError(Reason.TOO_EARLY, "the window has not opened yet")
        if now >= r.end:
            raise RemoteProtocolError(Reason.TOO_LATE, "the window has closed")
        live = Live(SessionMachine(booking, start), r.charger_id)
        self.store.open_session(booking_id, r.charger_id, start.encode())
        self.live[booking_id] = live
        try:
            result = await self.central.call(r.charger_id, "RemoteStartTransaction",
                                             {"connectorId": 1, "idTag": id_tag(booking_id)})
            if result.get("status") != "Accepted":
                raise ChargerOffline("the wallbox refused to start")
            with trio.move_on_after(START_TIMEOUT):
                await live.started.wait()
            if not live.started.is_set():
                raise ChargerOffline("the wallbox did not start a transaction")
        except ChargerOffline as error:
            del self.live[booking_id]
            self.store.drop_session(booking_id)
            raise RemoteProtocolError(Reason.CHARGER_OFFLINE, f"{error}; try again") from None
        self._spawn(self._watch_window, live)
        return live

    async def _attend(self, frames: FrameStream, live: Live) -> None:
        """Push the session's history, then each new message, to the driver; take its stop
        and its answer. The session goes on if the driver leaves."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen, frames, live)
            sent = 0
            while True:
                history = live.machine.history
                while sent < len(history):  # it may grow while we send
                    update = _update(history[sent])
                    sent += 1
                    if update is not None:
                        try:
                            await frames.send(update)
                        except StreamError:
                            log.info("the driver left the session stream; the session goes on")
                            nursery.cancel_scope.cancel()
                            return
                if live.machine.state in (SessionState.FINAL, SessionState.DISPUTED):
                    break
                with trio.move_on_after(ANSWER_TIMEOUT if live.machine.settlement else STREAM_LIMIT) as wait:
                    await live.changed.wait()
                if wait.cancelled_caught:
                    break
            nursery.cancel_scope.cancel()
        if live.machine.state in (SessionState.FINAL, SessionState.DISPUTED) and self._claimed(live):
            self.live.pop(live.machine.booking_id, None)  # done: a re-attaching driver gets it from the store

    async def _listen(self, frames: FrameStream, live: Live) -> None:
        """Take the driver's stop and answer; a refusal (RemoteProtocolError) ends the
        conversation through `serve`, which sends its reason and counts it against the
        driver, while the session goes on."""
        while True:
            try:
                frame = await frames.receive(StopOffer, SessionAnswer)
            except (StreamEnded, StreamError):
                return
            if isinstance(frame, StopOffer):
                self._driver_stop(live, frame.stop)
            elif isinstance(frame, SessionAnswer):
                self._driver_answer(live, frame.ack or frame.dispute)  # type: ignore[arg-type]
            else:
                return

    def _driver_stop(self, live: Live, stop: Signed[StopRequest]) -> None:
        if live.machine.state not in _RUNNING:
            return  # already stopping: the wallbox is on it
        last = live.machine.receipts[-1].message.t if live.machine.receipts else 0
        if not last - MAX_CLOCK_SKEW <= stop.message.t <= self.clock() + MAX_CLOCK_SKEW:
            raise RemoteProtocolError(Reason.BAD_TIME, "a stop is dated between the last receipt the driver saw "
                                                       "and now (give or take the allowed skew)")
        live.machine.receive(stop)
        self.store.update_session(live.machine.booking_id, "stop", stop.encode())
        live.notify()
        self._spawn(self._remote_stop, live)

    def _driver_answer(self, live: Live, answer: Signed[SettlementAck] | Signed[Dispute]) -> None:
        live.machine.receive(answer)
        self.store.update_session(live.machine.booking_id, "answer", answer.encode())
        live.notify()

    # --- stopping and settling ----------------------------------------------------------

    def _host_stop(self, live: Live) -> None:
        if live.machine.state not in _RUNNING:
            return
        last = live.machine.receipts[-1].message.t if live.machine.receipts else 0
        stop = sign(self.identity, StopRequest(booking_id=live.machine.booking_id, t=max(int(self.clock()), last)))
        self.store.update_session(live.machine.booking_id, "stop", stop.encode())
        live.machine.send(stop)
        live.notify()

    async def _watch_window(self, live: Live) -> None:
        await self.clock.sleep_until(live.machine.booking.request.message.end)
        if live.machine.state in _RUNNING:
            self._host_stop(live)
            await self._remote_stop(live)

    async def _remote_stop(self, live: Live) -> None:
        """Have the wallbox stop; settle when its StopTransaction comes, or without it."""
        with trio.move_on_after(STOP_WAIT):
            while live.machine.settlement is None:
                try:
                    await self.central.call(live.charger, "RemoteStopTransaction", {"transactionId": live.transaction})
                    break
                except ChargerOffline as error:
                    log.info("stopping %s: %s; retrying", live.charger, error)
                    await trio.sleep(1.0)
            while live.machine.settlement is None:
                await live.changed.wait()
        if live.machine.settlement is None:
            log.warning("%s never reported its stop: settling on the receipts it did report", live.charger)
            self._settle(live)

    def _settle(self, live: Live) -> None:
        machine = live.machine
        if machine.settlement is not None:
            return
        self._host_stop(live)
        expected = machine.expected_price()
        last = machine.receipts[-1]
        settlement = sign(self.identity, Settlement(
            booking_id=machine.booking_id, last_receipt=last.digest, energy_wh=last.message.energy_wh,
            amount=expected.total, currency=expected.currency, breakdown=expected.lines,
            t=max(int(self.clock()), last.message.t),
        ))
        self.store.update_session(machine.booking_id, "settlement", settlement.encode())
        machine.send(settlement)
        live.notify()
        self._finish(live)

    def _finish(self, live: Live) -> None:
        """Close a settled session's booking and claim it on the ledger (again, harmlessly,
        when a write of the first try was refused)."""
        self.store.settle(live.machine.booking_id, Slot.SETTLED)
        self._claim(live)

    def _claimed(self, live: Live) -> bool:
        """Is the settled session on the ledger (or is there no ledger to put it on)?"""
        return self.ledger is None or live.machine.booking_id in self.ledger.state.claims

    def _claim(self, live: Live) -> None:
        machine = live.machine
        if machine.settlement is None or self._claimed(live):
            return
        assert self.ledger is not None
        claim = SettlementClaim(booking=machine.booking, receipts=tuple(machine.receipts), settlement=machine.settlement)
        self.ledger.append(self.identity, [(EntryKind.SETTLEMENT, claim)], t=machine.settlement.message.t)

    def _cap_near(self, live: Live) -> bool:
        """Could one more meter interval at full power pass the spend cap?"""
        receipts = live.machine.receipts
        r = live.machine.booking.request.message
        last = receipts[-1].message
        gap = last.t - receipts[-2].message.t if len(receipts) > 1 else 0
        interval = max(gap, METER_INTERVAL)
        ahead = MeterReading(last.t + interval, last.energy_wh + -(-r.max_power_w * interval // 3600))
        return price(r.tariff, [x.message for x in receipts] + [ahead], r.tz).total > r.spend_cap

    # --- confirmed bookings: reservations and no-shows ------------------------------------

    def _watch_bookings(self) -> None:
        now = int(self.clock())
        rows = self.store.bookings(Slot.CONFIRMED)
        confirmed = {row["booking_id"] for row in rows}
        self._confirmed = {k: v for k, v in self._confirmed.items() if k in confirmed}  # started, settled, gone
        self._reserved &= confirmed
        for row in rows:
            if row["host"] != self.identity.public_key or row["booking_id"] in self.live:
                continue
            if row["booking_id"] not in self._confirmed:  # decoded (signatures checked) once
                self._confirmed[row["booking_id"]] = self._booking(row)
            booking = self._confirmed[row["booking_id"]]
            terms = booking.request.message.terms
            if now < row["start"] - terms.early_start_minutes * 60:
                continue
            if booking.id not in self._reserved:
                self._reserved.add(booking.id)
                self._spawn(self._reserve, booking)
            if now >= row["start"] + terms.noshow_timeout_minutes * 60:
                self._no_show(booking, now)

    async def _reserve(self, booking: Booking) -> None:
        """Hold the connector for the driver from the window's opening to the no-show deadline."""
        r = booking.request.message
        try:
            await self.central.call(r.charger_id, "ReserveNow", {
                "connectorId": 1, "idTag": id_tag(booking.id), "reservationId": reservation_id(booking.id),
                "expiryDate": ocpp.iso(r.start + r.terms.noshow_timeout_minutes * 60)})
        except ChargerOffline as error:
            log.info("no reservation at %s: %s", r.charger_id, error)

    def _no_show(self, booking: Booking, now: int) -> None:
        machine = BookingMachine(booking.request)
        machine.receive(booking.confirmation)
        no_show = sign(self.identity, NoShow(booking_id=booking.id, t=now))
        machine.send(no_show)
        self.store.settle(booking.id, Slot.NO_SHOW, no_show.encode())
        self._spawn(self._cancel_reservation, booking)
        if machine.fee and self.ledger is not None:
            claim = FeeClaim(booking=booking, no_show=no_show, amount=machine.fee)
            self.ledger.append(self.identity, [(EntryKind.FEE, claim)], t=now)

    async def _cancel_reservation(self, booking: Booking) -> None:
        try:
            await self.central.call(booking.request.message.charger_id, "CancelReservation",
                                    {"reservationId": reservation_id(booking.id)})
        except ChargerOffline as error:
            log.info("reservation not cancelled: %s", error)

    # --- Transactions: what the wallbox reports (CentralSystem calls these) ---------------

    def _by(self, charger: str, *, tag: str | None = None, transaction: int | None = None) -> Live | None:
        for live in self.live.values():
            if live.charger == charger and (id_tag(live.machine.booking_id) == tag or
                                            (transaction is not None and live.transaction == transaction)):
                return live
        return None

    def authorize(self, charger: str, tag: str) -> bool:
        live = self._by(charger, tag=tag)
        return live is not None and live.machine.state in _RUNNING

    def start_transaction(self, charger: str, tag: str, meter_start: int, t: int) -> tuple[int, bool]:
        live = self._by(charger, tag=tag)
        if live is None or live.machine.state not in _RUNNING:
            return 0, False
        if live.transaction is None:  # not a resent StartTransaction
            live.transaction = self.store.next_transaction(live.machine.booking_id, meter_start)
            live.meter_start = meter_start
            self._mint(live, t, meter_start)
            live.started.set()
        return live.transaction, True

    def meter_values(self, charger: str, transaction: int, readings: list[tuple[int, int]]) -> None:
        live = self._by(charger, transaction=transaction)
        if live is None:
            log.info("%s reported meter values of unknown transaction %s", charger, transaction)
            return
        for t, register in readings:
            self._mint(live, t, register, final=False)
        if live.machine.state is SessionState.METERING and self._cap_near(live):
            log.info("%s: the spend cap is near; stopping", charger)
            self._host_stop(live)
            self._spawn(self._remote_stop, live)

    def stop_transaction(self, charger: str, transaction: int, meter_stop: int, t: int,
                         readings: list[tuple[int, int]]) -> None:
        live = self._by(charger, transaction=transaction)
        if live is None:
            return  # not ours
        if live.machine.settlement is not None:
            self._finish(live)  # resent: the first try may have been cut short by a full disk
            return
        for reading_t, register in readings:
            self._mint(live, reading_t, register, final=False)
        self._host_stop(live)
        self._mint(live, t, meter_stop)
        self._settle(live)

    def _mint(self, live: Live, t: int, register: int, final: bool = True) -> None:
        """The next receipt for a register reading, unless it is one already counted, a
        periodic one dated after the stop (the stop's own reading is the final one), or
        one the protocol would call implausible (outside the window, faster than the
        charger, too long after the stop): the host never signs those."""
        machine = live.machine
        if machine.settlement is not None:
            return
        energy = register - live.meter_start
        receipts = machine.receipts
        if receipts and (t <= receipts[-1].message.t or energy < receipts[-1].message.energy_wh):
            return
        if not final and machine.stop is not None and t > machine.stop.message.t:
            return
        if energy < 0:
            log.warning("%s: meter register below its start value; reading ignored", live.charger)
            return
        reading = MeterReceipt(booking_id=machine.booking_id, seq=len(receipts), t=t, energy_wh=energy,
                               prev=receipts[-1].digest if receipts else GENESIS)
        if (fault := machine.implausible(reading)) is not None:
            log.warning("%s: reading not receipted: %s", live.charger, fault)
            return
        receipt = sign(self.identity, reading)
        self.store.add_receipt(machine.booking_id, receipt.message.seq, receipt.encode())
        machine.send(receipt)
        live.notify()

