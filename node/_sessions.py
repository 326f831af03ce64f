"""The host's charging sessions: one coordinator, one choke point for every session message.

Theory of operation (DESIGN.md, "Session and metering"; the protocol's HostSession):

- Every event of a session, whoever brings it, passes through `SessionDesk.apply`: the
  protocol's `HostSession` decides what it does (a `Step`: the messages it signs or
  takes, then actions), the desk stores the step's messages in one transaction, then
  commits the step, then acts (RemoteStop, Settled, Wake, Note). A refused write (a full
  disk) leaves the session exactly as it was, with the error shown in `Live.error` and
  the log: the wallbox's OCPP call gets InternalError and resends, a driver's stop is
  refused with INTERNAL (send it again), a background step retries.
- The events come from three parts: the driver's stream (`_session_stream`: start,
  stop, answer), the wallbox (`_transactions`: OCPP StartTransaction, MeterValues,
  StopTransaction) and the clock (`Wake` -> Tick, a stop that never came ->
  StopOverdue). Confirmed bookings waiting for their driver (reservations, no-shows)
  are `_arrivals`'.
- Start (`start`): the driver's signed StartRequest must be the stream peer's, for a
  confirmed booking here, inside the window (from the terms' early start grace to the
  window's end). The desk stores the session, sends RemoteStartTransaction with the
  booking's id tag and waits for the wallbox's StartTransaction, which mints receipt 0.
  If the wallbox does not start, the session is undone and the booking is confirmed
  again (`CHARGER_OFFLINE`).
- Settled: the booking is closed with the settlement (in the step's transaction) and
  claimed on the host's ledger feed; a claim a full disk refused is made again when the
  event comes again (the ledger refuses a second claim of one booking).
- Memory: a session the driver has answered leaves it once claimed (a re-attaching
  driver is replayed from the store), so a host running for a year holds only its
  open sessions.
- Crash safety: a restarted desk rebuilds every session the driver has not answered
  from its stored log, re-arms its window, finishes a stop in progress, and makes a
  stored but unclaimed settlement's claim; a session whose wallbox never started is
  undone.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from libp2p.abc import INetStream, INetwork

from wattshare.ledger import EntryKind, LedgerStore, SettlementClaim
from wattshare.protocol import (
    Booking,
    BookingState,
    HostSession,
    Identity,
    Note,
    Reason,
    RemoteProtocolError,
    RemoteStop,
    SessionAction,
    SessionEvent,
    SessionMachine,
    SessionState,
    Settled,
    Signed,
    StartRequest,
    StopOverdue,
    Tick,
    Wake,
)

from ._arrivals import ArrivalDesk
from ._central import CentralSystem, ChargerOffline, OcppEndpoint
from ._clock import Clock
from ._session_stream import SESSION_PROTOCOL, serve_driver
from ._store import NodeStore, StoredSession
from ._transactions import WallboxTransactions, id_tag

START_TIMEOUT = 15.0  # real seconds for the wallbox to start after RemoteStartTransaction
STOP_WAIT = 30.0  # real seconds for its StopTransaction before settling without it
STORAGE_RETRY = 1.0  # real seconds before a background step the disk refused runs again
log = logging.getLogger(__name__)

__all__ = ["SESSION_PROTOCOL", "Live", "SessionDesk"]


@dataclass
class Live:
    """A session the desk is running or has settled since it started."""

    session: HostSession
    charger: str
    started: trio.Event = field(default_factory=trio.Event)
    changed: trio.Event = field(default_factory=trio.Event)
    error: str | None = None  # why its last event could not be stored, until one is

    @property
    def machine(self) -> SessionMachine:
        return self.session.machine

    @property
    def answered(self) -> bool:
        return self.session.state in (SessionState.FINAL, SessionState.DISPUTED)

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class SessionDesk:
    """The host's sessions (see the module doc)."""

    def __init__(self, identity: Identity, store: NodeStore, clock: Clock, ledger: LedgerStore | None,
                 ocpp: OcppEndpoint, network: INetwork | None = None) -> None:
        """`network`: the host's libp2p swarm, whose links to drivers a session protects."""
        self.identity = identity
        self.network = network
        self.store = store
        self.clock = clock
        self.ledger = ledger
        self.central = CentralSystem(WallboxTransactions(self), clock, ocpp)
        self.arrivals = ArrivalDesk(identity, store, clock, ledger, self.central)
        self.live: dict[bytes, Live] = {}
        self._nursery: trio.Nursery | None = None
        for stored in store.sessions(open_only=True):
            self.live[stored.booking_id] = self._restore(stored)

    def _restore(self, stored: StoredSession) -> Live:
        booking = self.store.booking(stored.booking_id)
        assert booking is not None, "a stored session has its confirmed booking"
        live = Live(HostSession.restore(self.identity, booking, stored.start, stored.transaction, stored.log),
                    stored.charger_id)
        if stored.transaction is not None:
            live.started.set()
        return live

    # --- lifetime -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Serve OCPP, resume stored sessions and keep the confirmed bookings, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.central.serve)
            for live in list(self.live.values()):
                self._resume(live)
            await nursery.start(self.arrivals.run)
            task_status.started()

    def _resume(self, live: Live) -> None:
        session = live.session
        if session.running and session.transaction is None:
            del self.live[session.booking_id]  # the wallbox never started: start again
            self.store.drop_session(session.booking_id)
            self.arrivals.expect(session.machine.booking)
        elif session.running:
            self._act(live, session.wake())  # type: ignore[arg-type]
        elif session.state is SessionState.STOPPING:
            self._act(live, RemoteStop())
        elif session.machine.settlement is not None:
            self._act(live, Settled())

    def _spawn(self, task: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run `task` in the background; a storage failure (a full disk) is retried, never
        fatal: every task here can run again from the top."""
        assert self._nursery is not None, "the desk is not running"

        async def retried() -> None:
            while True:
                try:
                    await task(*args)
                    return
                except sqlite3.OperationalError as error:
                    log.warning("storage refused a write (%s); retrying in %g s", error, STORAGE_RETRY)
                    await trio.sleep(STORAGE_RETRY)

        self._nursery.start_soon(retried)

    # --- the choke point ------------------------------------------------------------------

    def apply(self, live: Live, event: SessionEvent) -> None:
        """Persist, then step, then act (see the module doc). RemoteProtocolError if the
        session refuses the event; sqlite3.OperationalError if storage does."""
        step = live.session.handle(event, int(self.clock()))
        try:
            self.store.keep_session(live.session.booking_id, step.messages, step.transaction)
        except sqlite3.OperationalError as error:
            live.error = f"storage refused a write: {error}"
            log.warning("%s: %s; the session waits for the event again", live.charger, live.error)
            raise
        live.error = None
        live.session.commit(step)
        if step.messages:
            live.notify()
        for action in step.actions:
            self._act(live, action)

    def _act(self, live: Live, action: SessionAction) -> None:
        if isinstance(action, RemoteStop):
            self._spawn(self._remote_stop, live)
        elif isinstance(action, Settled):
            self._claim(live.machine)
        elif isinstance(action, Wake):
            self._spawn(self._wake, live, action.at)
        elif isinstance(action, Note):
            log.warning("%s: %s", live.charger, action.text)

    async def _wake(self, live: Live, at: int) -> None:
        await self.clock.sleep_until(at)
        self.apply(live, Tick())

    async def _remote_stop(self, live: Live) -> None:
        """Have the wallbox stop; its StopTransaction settles, or StopOverdue does."""
        with trio.move_on_after(STOP_WAIT):
            while live.machine.settlement is None:
                try:
                    await self.central.call(live.charger, "RemoteStopTransaction",
                                            {"transactionId": live.session.transaction[0]})  # type: ignore[index]
                    break
                except ChargerOffline as error:
                    log.info("stopping %s: %s; retrying", live.charger, error)
                    await trio.sleep(1.0)
            while live.machine.settlement is None:
                await live.changed.wait()
        self.apply(live, StopOverdue())

    def claimed(self, machine: SessionMachine) -> bool:
        """Is the settled session on the ledger (or is there no ledger to put it on)?"""
        return self.ledger is None or machine.booking_id in self.ledger.state.claims

    def _claim(self, machine: SessionMachine) -> None:
        if machine.settlement is None or self.claimed(machine):
            return
        assert self.ledger is not None
        claim = SettlementClaim(booking=machine.booking, receipts=tuple(machine.receipts), settlement=machine.settlement)
        self.ledger.append(self.identity, [(EntryKind.SETTLEMENT, claim)], t=machine.settlement.message.t)

    # --- starting -----------------------------------------------------------------------

    async def handle(self, stream: INetStream) -> RemoteProtocolError | None:
        return await serve_driver(self, stream)

    async def start(self, start: Signed[StartRequest], peer: bytes, *, attach: bool = False) -> Live:
        """Start the session of `start`'s booking, or re-attach to it (`attach`: only
        that); RemoteProtocolError if not."""
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
        if attach:
            raise RemoteProtocolError(Reason.ILLEGAL_STATE, f"no session runs for this booking ({row['state']}): "
                                                            "start one first")
        booking = self.store.booking(booking_id)
        if row["state"] != BookingState.CONFIRMED or booking is None:
            raise RemoteProtocolError(Reason.ILLEGAL_STATE, f"the booking is {row['state']}")
        return await self._start(booking, start)

    async def _start(self, booking: Booking, start: Signed[StartRequest]) -> Live:
        r, now = booking.request.message, self.clock()
        if now < r.terms.opening(r.start):
            raise RemoteProtocolError(Reason.TOO_EARLY, "the window has not opened yet")
        if now >= r.end:
            raise RemoteProtocolError(Reason.TOO_LATE, "the window has closed")
        live = Live(HostSession(self.identity, booking, start), r.charger_id)
        self.store.open_session(booking.id, r.charger_id, start)
        self.live[booking.id] = live
        self.arrivals.forget(booking.id)
        try:
            result = await self.central.call(r.charger_id, "RemoteStartTransaction",
                                             {"connectorId": 1, "idTag": id_tag(booking.id)})
            if result.get("status") != "Accepted":
                raise ChargerOffline("the wallbox refused to start")
            with trio.move_on_after(START_TIMEOUT):
                await live.started.wait()
            if not live.started.is_set():
                raise ChargerOffline("the wallbox did not start a transaction")
        except ChargerOffline as error:
            del self.live[booking.id]
            self.store.drop_session(booking.id)
            self.arrivals.expect(booking)
            raise RemoteProtocolError(Reason.CHARGER_OFFLINE, f"{error}; try again") from None
        return live

    def summary(self) -> list[dict[str, object]]:
        """The sessions in memory as the host's status shows them, a refused write included."""
        return [{"booking": booking_id.hex(), "charger": live.charger, "state": str(live.session.state),
                 "energy_wh": live.machine.receipts[-1].message.energy_wh if live.machine.receipts else 0,
                 "error": live.error} for booking_id, live in self.live.items()]

    def leave(self, live: Live) -> None:
        """Forget an answered and claimed session (the store keeps it)."""
        if live.answered and self.claimed(live.machine):
            self.live.pop(live.session.booking_id, None)
