"""The host's side of one charging session, sans I/O: events in, decisions out.

Theory of operation (DESIGN.md, "Session and metering"; h11's connection object):

- The node feeds a `HostSession` what happens, with the time its clock reads:
  `WallboxStarted`, `WallboxReadings`, `WallboxStopped` (OCPP), `DriverStop`,
  `DriverAnswer` (the session stream), `Tick` (the window may have ended) and
  `StopOverdue` (the wallbox never reported its stop). `handle(event, now)` returns a
  `Step`: the signed messages the session takes (receipts, a stop, the settlement, the
  driver's answer) and the actions the node must take after them (`RemoteStop`,
  `Settled`, `Wake`, `Note`). It changes nothing: the node stores the step's messages,
  then `commit`s it, then acts. A refused write leaves the session as it was, so the
  same event can come again; a refused event (a driver's bad stop) raises
  RemoteProtocolError and changes nothing either.
- Receipts: every register reading of the transaction becomes the next hash-chained
  MeterReceipt, signed here. A reading not later and not higher than the last receipt
  is a resent one (a reconnecting wallbox replays its queue) and is skipped, so energy
  is neither lost (the register is cumulative) nor counted twice. A periodic reading
  dated after a stop is skipped (the stop's own reading is the final one), and one the
  protocol calls implausible (outside the window, faster than the charger, too long
  after the stop) is never signed: the node is told in a `Note`.
- The cap guard: after each batch of readings the session prices one more meter
  interval at the charger's full power, and stops if that could pass the spend cap, so
  the cap is never exceeded even by one interval.
- The window: a session still running at the window's end is stopped by the host
  (`Tick`); `Wake` says when that is due.
- Stop and settlement: any stop (the host's is dated at the last receipt at the
  earliest) asks the node to `RemoteStop` the wallbox. Its StopTransaction closes the
  chain with the final reading and settles; `StopOverdue` settles on the receipts the
  wallbox did report. The settlement is the protocol's price (`expected_price`), signed
  here; `Settled` asks the node to close the booking and claim it on the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ._booking import MAX_CLOCK_SKEW
from ._envelope import Signed, sign
from ._errors import Reason, RemoteProtocolError
from ._identity import Identity
from ._messages import GENESIS, Booking, MeterReceipt, Settlement, SettlementEvent, StartRequest, StopRequest
from ._pricing import MeterReading, price
from ._record import Message
from ._session import SessionMachine, SessionState

METER_INTERVAL = 60  # the shortest meter interval the cap guard assumes (seconds)
RUNNING = (SessionState.STARTED, SessionState.METERING)
ANSWERED = (SessionState.FINAL, SessionState.DISPUTED)


# --- events ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class WallboxStarted:
    """The wallbox began the session's OCPP transaction (`transaction`, the node's new id)."""

    transaction: int
    meter_start: int
    t: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WallboxReadings:
    """Periodic energy register readings (t, Wh) of the session's transaction."""

    readings: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WallboxStopped:
    """The wallbox ended the transaction: `meter_stop` at `t`, after `readings`."""

    t: int
    meter_stop: int
    readings: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverStop:
    stop: Signed[StopRequest]


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverAnswer:
    answer: Signed[SettlementEvent]


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Time passed (the node was woken as a `Wake` asked)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopOverdue:
    """The wallbox did not report its stop in time: settle on what it did report."""


SessionEvent = WallboxStarted | WallboxReadings | WallboxStopped | DriverStop | DriverAnswer | Tick | StopOverdue


# --- actions --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RemoteStop:
    """Have the wallbox stop the transaction (then feed WallboxStopped or StopOverdue)."""


@dataclass(frozen=True, slots=True)
class Settled:
    """The session is settled: close its booking and claim it on the ledger."""


@dataclass(frozen=True, slots=True)
class Wake:
    """Feed a Tick at (clock) time `at`."""

    at: int


@dataclass(frozen=True, slots=True)
class Note:
    """Something the host's operator should read (a reading not receipted, and why)."""

    text: str


SessionAction = RemoteStop | Settled | Wake | Note


@dataclass(frozen=True, slots=True)
class Step:
    """What one event did: the messages to store, in order, then the actions to take."""

    messages: tuple[Signed[Message], ...]
    actions: tuple[SessionAction, ...]
    _machine: SessionMachine = field(repr=False)
    transaction: tuple[int, int] | None = field(repr=False, default=None)


class HostSession:
    """One session of a confirmed booking at the host (see the module doc)."""

    def __init__(self, identity: Identity, booking: Booking, start: Signed[StartRequest], *,
                 transaction: tuple[int, int] | None = None) -> None:
        self.identity = identity
        self.machine = SessionMachine(booking, start)
        self.transaction = transaction  # (OCPP transaction id, meter register at its start)

    @classmethod
    def restore(cls, identity: Identity, booking: Booking, start: Signed[StartRequest],
                transaction: tuple[int, int] | None, log: Sequence[Signed[Message]]) -> HostSession:
        """The session as its stored log (every message it took, in order) left it."""
        session = cls(identity, booking, start, transaction=transaction)
        for signed in log:
            session.machine.receive(signed)
        return session

    @property
    def booking_id(self) -> bytes:
        return self.machine.booking_id

    @property
    def state(self) -> SessionState:
        state: SessionState = self.machine.state
        return state

    @property
    def running(self) -> bool:
        return self.machine.state in RUNNING

    def wake(self) -> Wake | None:
        """When the session next needs a Tick (its window's end), if it is running."""
        return Wake(self.machine.booking.request.message.end) if self.running else None

    def handle(self, event: SessionEvent, now: int) -> Step:
        """What `event` at clock time `now` does; RemoteProtocolError if the driver's
        message is refused. Nothing changes until `commit`."""
        trial = _Trial(self, now)
        trial.handle(event)
        return Step(messages=tuple(trial.machine.history[len(self.machine.history):]), actions=tuple(trial.actions),
                    _machine=trial.machine, transaction=trial.transaction)

    def commit(self, step: Step) -> None:
        """Take a step whose messages are stored."""
        self.machine = step._machine
        self.transaction = step.transaction


class _Trial:
    """A session's steps taken on a copy, collecting what they sign and ask for."""

    def __init__(self, session: HostSession, now: int) -> None:
        self.identity = session.identity
        self.machine = session.machine.fork()
        self.transaction = session.transaction
        self.now = now
        self.actions: list[SessionAction] = []

    def handle(self, event: SessionEvent) -> None:
        m = self.machine
        if isinstance(event, WallboxStarted):
            if self.transaction is None and m.state in RUNNING:  # else a resent StartTransaction
                self.transaction = (event.transaction, event.meter_start)
                self._reading(event.t, event.meter_start)
                self.actions.append(Wake(m.booking.request.message.end))
        elif isinstance(event, WallboxReadings):
            for t, register in event.readings:
                self._reading(t, register, final=False)
            if m.state is SessionState.METERING and self._cap_near():
                self.actions.append(Note("the spend cap is near; stopping"))
                self._stop()
        elif isinstance(event, WallboxStopped):
            if m.settlement is not None:  # resent: the first try may not have finished acting
                self.actions.append(Settled())
                return
            for t, register in event.readings:
                self._reading(t, register, final=False)
            self._host_stop()
            self._reading(event.t, event.meter_stop)
            self._settle()
        elif isinstance(event, DriverStop):
            self._driver_stop(event.stop)
        elif isinstance(event, DriverAnswer):
            m.receive(event.answer)
        elif isinstance(event, Tick) and m.state in RUNNING:
            end = m.booking.request.message.end
            if self.now >= end:
                self._stop()
            else:
                self.actions.append(Wake(end))
        elif isinstance(event, StopOverdue):
            if m.settlement is None and m.receipts:
                self.actions.append(Note("the wallbox never reported its stop: settling on the receipts it did"))
                self._settle()

    def _driver_stop(self, stop: Signed[StopRequest]) -> None:
        m = self.machine
        if m.state not in RUNNING:
            return  # already stopping: the wallbox is on it
        last = m.receipts[-1].message.t if m.receipts else 0
        if not last - MAX_CLOCK_SKEW <= stop.message.t <= self.now + MAX_CLOCK_SKEW:
            raise RemoteProtocolError(Reason.BAD_TIME, "a stop is dated between the last receipt the driver saw "
                                                       "and now (give or take the allowed skew)")
        m.receive(stop)
        self.actions.append(RemoteStop())

    def _stop(self) -> None:
        self._host_stop()
        self.actions.append(RemoteStop())

    def _host_stop(self) -> None:
        m = self.machine
        if m.state in RUNNING:
            last = m.receipts[-1].message.t if m.receipts else 0
            m.send(sign(self.identity, StopRequest(booking_id=m.booking_id, t=max(self.now, last))))

    def _settle(self) -> None:
        m = self.machine
        self._host_stop()
        expected, last = m.expected_price(), m.receipts[-1]
        m.send(sign(self.identity, Settlement(
            booking_id=m.booking_id, last_receipt=last.digest, energy_wh=last.message.energy_wh,
            amount=expected.total, currency=expected.currency, breakdown=expected.lines,
            t=max(self.now, last.message.t),
        )))
        self.actions.append(Settled())

    def _reading(self, t: int, register: int, final: bool = True) -> None:
        """The next receipt for a register reading, unless it is not one to sign (see the module doc)."""
        m = self.machine
        if m.settlement is not None or self.transaction is None:
            return
        energy = register - self.transaction[1]
        receipts = m.receipts
        if receipts and (t <= receipts[-1].message.t or energy < receipts[-1].message.energy_wh):
            return
        if not final and m.stop is not None and t > m.stop.message.t:
            return
        if energy < 0:
            self.actions.append(Note("the meter register is below its start value; reading ignored"))
            return
        reading = MeterReceipt(booking_id=m.booking_id, seq=len(receipts), t=t, energy_wh=energy,
                               prev=receipts[-1].digest if receipts else GENESIS)
        if (fault := m.implausible(reading)) is not None:
            self.actions.append(Note(f"reading not receipted: {fault}"))
            return
        m.send(sign(self.identity, reading))

    def _cap_near(self) -> bool:
        """Could one more meter interval at full power pass the spend cap?"""
        receipts = self.machine.receipts
        r = self.machine.booking.request.message
        last = receipts[-1].message
        gap = last.t - receipts[-2].message.t if len(receipts) > 1 else 0
        interval = max(gap, METER_INTERVAL)
        ahead = MeterReading(last.t + interval, last.energy_wh + -(-r.max_power_w * interval // 3600))
        return price(r.tariff, [x.message for x in receipts] + [ahead], r.tz).total > r.spend_cap
