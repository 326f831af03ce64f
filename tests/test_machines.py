"""Booking and session state machines: every legal path, every illegal step refused."""

import itertools

import pytest
from fixtures import DRIVER, HOST, STRANGER, at, confirm, make_request

from wattshare import protocol as p
from wattshare.protocol import BookingState as B
from wattshare.protocol import SessionState as S

WINDOW_START = at("2026-11-27T22:00")


def signed(identity, cls, booking_id, **fields):
    return p.sign(identity, cls(booking_id=booking_id, **fields))


def booking_machine(state: B, nonce: bytes = bytes(16)) -> p.BookingMachine:
    """A booking machine driven along legal steps into `state`."""
    request = make_request(nonce=nonce)
    machine = p.BookingMachine(request)
    bid = machine.booking_id
    steps = {
        B.PENDING: [],
        B.CONFIRMED: [confirm(request)],
        B.REJECTED: [signed(HOST, p.BookingRejection, bid, reason=p.Reason.SLOT_TAKEN)],
        B.CANCELLED: [signed(DRIVER, p.Cancel, bid, t=WINDOW_START - 7200)],
        B.STARTED: [confirm(request), signed(DRIVER, p.StartRequest, bid, t=WINDOW_START)],
        B.NO_SHOW: [confirm(request), signed(HOST, p.NoShow, bid, t=WINDOW_START + 1800)],
        B.SETTLED: [confirm(request), signed(DRIVER, p.StartRequest, bid, t=WINDOW_START),
                    booking_step(p.Settlement, HOST, bid, request)],
    }
    for step in steps[state]:
        machine.receive(step)
    assert machine.state is state
    return machine


def test_happy_path_to_a_start():
    machine = booking_machine(B.STARTED)
    assert machine.booking is not None and machine.booking.id == machine.booking_id
    assert [s.type for s in machine.history] == ["booking_confirmation", "start_request"]
    assert machine.fee == 0


def test_rejection_carries_its_reason():
    machine = booking_machine(B.REJECTED)
    assert machine.history[-1].message.reason is p.Reason.SLOT_TAKEN


@pytest.mark.parametrize(
    "who, minutes_before, fee",
    [(DRIVER, 120, 0), (DRIVER, 60, 0), (DRIVER, 59, 200), (DRIVER, 1, 200), (HOST, 1, 0)],
)
def test_cancellation_fee_follows_the_terms(who, minutes_before, fee):
    machine = booking_machine(B.CONFIRMED)
    machine.receive(signed(who, p.Cancel, machine.booking_id, t=WINDOW_START - minutes_before * 60))
    assert machine.state is B.CANCELLED
    assert machine.fee == fee


def test_withdrawing_an_unanswered_request_is_free():
    machine = booking_machine(B.PENDING)
    machine.receive(signed(DRIVER, p.Cancel, machine.booking_id, t=WINDOW_START - 60))
    assert (machine.state, machine.fee) == (B.CANCELLED, 0)


def test_no_show_fee_after_the_timeout_only():
    machine = booking_machine(B.CONFIRMED)
    with pytest.raises(p.RemoteProtocolError) as caught:
        machine.receive(signed(HOST, p.NoShow, machine.booking_id, t=WINDOW_START + 29 * 60))
    assert caught.value.reason is p.Reason.TOO_EARLY
    machine.receive(signed(HOST, p.NoShow, machine.booking_id, t=WINDOW_START + 30 * 60))
    assert (machine.state, machine.fee) == (B.NO_SHOW, 300)


@pytest.mark.parametrize(
    "offset, reason",
    [(-5 * 60 - 1, p.Reason.TOO_EARLY), (9 * 3600, p.Reason.TOO_LATE), (-5 * 60, None), (9 * 3600 - 1, None)],
)
def test_start_must_fall_in_the_window_with_early_grace(offset, reason):
    machine = booking_machine(B.CONFIRMED)
    start = signed(DRIVER, p.StartRequest, machine.booking_id, t=WINDOW_START + offset)
    if reason is None:
        machine.receive(start)
        assert machine.state is B.STARTED
    else:
        with pytest.raises(p.RemoteProtocolError) as caught:
            machine.receive(start)
        assert caught.value.reason is reason
        assert machine.state is B.CONFIRMED


def test_cancel_after_the_window_started_is_too_late():
    machine = booking_machine(B.CONFIRMED)
    with pytest.raises(p.RemoteProtocolError) as caught:
        machine.receive(signed(DRIVER, p.Cancel, machine.booking_id, t=WINDOW_START))
    assert caught.value.reason is p.Reason.TOO_LATE


def test_strangers_and_other_bookings_are_refused():
    machine = booking_machine(B.PENDING)
    with pytest.raises(p.RemoteProtocolError) as caught:
        machine.receive(signed(STRANGER, p.BookingRejection, machine.booking_id, reason=p.Reason.DECLINED))
    assert caught.value.reason is p.Reason.WRONG_SIGNER
    with pytest.raises(p.RemoteProtocolError) as caught:
        machine.receive(confirm(make_request(nonce=b"\x09" * 16)))
    assert caught.value.reason is p.Reason.WRONG_BOOKING
    assert machine.state is B.PENDING and machine.history == []


def booking_step(cls, identity, booking_id, request):
    if cls is p.Settlement:  # its content is the session machine's to check
        return p.sign(identity, p.Settlement(booking_id=booking_id, last_receipt=bytes(32), energy_wh=0, amount=0,
                                             currency="EUR", breakdown=(), t=WINDOW_START + 3600))
    if cls is p.BookingConfirmation:
        return p.sign(identity, p.BookingConfirmation(booking_id=booking_id, access_digest=bytes(32), confirmed=1))
    if cls is p.BookingRejection:
        return signed(identity, cls, booking_id, reason=p.Reason.DECLINED)
    return signed(identity, cls, booking_id, t=WINDOW_START - 7200 if cls is p.Cancel else WINDOW_START + 3600)


BOOKING_MESSAGES = [p.BookingConfirmation, p.BookingRejection, p.Cancel, p.NoShow, p.StartRequest, p.Settlement]


def assert_table_closed(machine_class, state, messages, reach, step):
    """Every (message type, role) the table lacks for `state` is refused both ways, changing nothing."""
    roles = {p.Role.DRIVER: DRIVER, p.Role.HOST: HOST}
    for cls, role in itertools.product(messages, roles):
        if (state, cls, role) in machine_class.TRANSITIONS:
            continue
        holder = reach(state)
        machine = getattr(holder, "machine", holder)
        message = step(holder, cls, roles[role])
        with pytest.raises(p.RemoteProtocolError) as caught:
            machine.receive(message)
        assert caught.value.reason is p.Reason.ILLEGAL_STATE
        with pytest.raises(p.IllegalTransition):
            machine.send(message)
        assert machine.state is state


@pytest.mark.parametrize("state", list(B))
def test_every_step_outside_the_booking_table_is_refused(state):
    assert_table_closed(
        p.BookingMachine, state, BOOKING_MESSAGES, booking_machine,
        lambda machine, cls, identity: booking_step(cls, identity, machine.booking_id, make_request()),
    )


# --- session ------------------------------------------------------------------------


class Session:
    """A started session and a host that writes correct receipts for it."""

    def __init__(self, spend_cap: int = 5_000):
        request = make_request(spend_cap=spend_cap)
        booking = p.BookingMachine(request)
        booking.receive(confirm(request))
        start = signed(DRIVER, p.StartRequest, booking.booking_id, t=WINDOW_START)
        booking.receive(start)
        self.machine = p.SessionMachine(booking.booking, start)
        self.id = booking.booking_id
        self.t = WINDOW_START

    def receipt(self, energy_wh: int, *, dt: int = 600, seq: int | None = None, prev: bytes | None = None):
        last = self.machine.receipts[-1] if self.machine.receipts else None
        self.t += dt if last else 0
        return signed(
            HOST, p.MeterReceipt, self.id,
            seq=seq if seq is not None else (last.message.seq + 1 if last else 0),
            t=self.t, energy_wh=energy_wh,
            prev=prev if prev is not None else (last.digest if last else p.GENESIS),
        )

    def meter(self, *energies: int, dt: int = 600):
        for energy in energies:
            self.machine.receive(self.receipt(energy, dt=dt))

    def stop(self, who=DRIVER):
        self.machine.receive(signed(who, p.StopRequest, self.id, t=self.t + 1))

    def settlement(self, amount_delta: int = 0):
        expected = self.machine.expected_price()
        lines = expected.lines
        if amount_delta:
            first = lines[0]
            lines = (first.replace(amount=first.amount + amount_delta),) + lines[1:]
        last = self.machine.receipts[-1]
        return signed(
            HOST, p.Settlement, self.id, last_receipt=last.digest, energy_wh=last.message.energy_wh,
            amount=expected.total + amount_delta, currency="EUR", breakdown=lines, t=self.t + 60,
        )


def settled_session(**kw) -> Session:
    s = Session(**kw)
    s.meter(0, 1100, 2200)
    s.stop()
    s.meter(3300)
    s.machine.receive(s.settlement())
    return s


def test_session_happy_path_to_final():
    s = settled_session()
    assert s.machine.state is S.SETTLED
    assert s.machine.settlement.message.energy_wh == 3300
    # 22:00-22:30 peak: 3.3 kWh x 0.30 = 0.99
    assert s.machine.settlement.message.amount == 99
    ack = signed(DRIVER, p.SettlementAck, s.id, settlement=s.machine.settlement.digest, t=s.t + 120)
    s.machine.receive(ack)
    assert s.machine.state is S.FINAL


def test_dispute_inside_and_after_the_window():
    s = settled_session()
    late = signed(DRIVER, p.Dispute, s.id, settlement=s.machine.settlement.digest,
                  t=s.machine.settlement.message.t + 24 * 3600 + 1, reason=p.Reason.MISPRICED)
    with pytest.raises(p.RemoteProtocolError) as caught:
        s.machine.receive(late)
    assert caught.value.reason is p.Reason.TOO_LATE
    on_time = signed(DRIVER, p.Dispute, s.id, settlement=s.machine.settlement.digest,
                     t=s.machine.settlement.message.t + 3600, reason=p.Reason.MISPRICED)
    s.machine.receive(on_time)
    assert s.machine.state is S.DISPUTED


def test_running_price_for_the_live_view():
    s = Session()
    assert s.machine.running_price() is None
    s.meter(0, 5500, dt=1800)
    assert s.machine.running_price().total == 165  # 5.5 kWh peak x 0.30


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda s: s.receipt(3000, seq=5), "seq 5, expected 2"),
        (lambda s: s.receipt(3000, prev=b"\x07" * 32), "does not name the previous"),
        (lambda s: s.receipt(3000, dt=0), "not later"),
        (lambda s: s.receipt(1000), "lowers the cumulative energy"),
    ],
)
def test_broken_receipt_chains(make, fragment):
    s = Session()
    s.meter(0, 1100)
    before = list(s.machine.receipts)
    with pytest.raises(p.RemoteProtocolError, match=fragment) as caught:
        s.machine.receive(make(s))
    assert caught.value.reason is p.Reason.BROKEN_CHAIN
    assert s.machine.receipts == before and s.machine.state is S.METERING


def test_receipt_zero_must_start_at_zero():
    with pytest.raises(p.InvalidValue, match="receipt 0"):
        p.MeterReceipt(booking_id=bytes(32), seq=0, t=1, energy_wh=5, prev=p.GENESIS)


def test_mispriced_settlement_is_refused():
    s = Session()
    s.meter(0, 1100)
    s.stop()
    with pytest.raises(p.RemoteProtocolError) as caught:
        s.machine.receive(s.settlement(amount_delta=1))
    assert caught.value.reason is p.Reason.MISPRICED
    assert s.machine.state is S.STOPPING
    s.machine.receive(s.settlement())
    assert s.machine.state is S.SETTLED


def test_settlement_is_capped_and_over_cap_is_refused():
    s = Session(spend_cap=50)
    s.meter(0, 5500, dt=1800)  # 1.65 uncapped
    s.stop()
    capped = s.settlement()
    assert capped.message.amount == 50
    assert capped.message.breakdown[-1].kind is p.LineKind.SPEND_CAP
    over = s.settlement(amount_delta=1)
    with pytest.raises(p.RemoteProtocolError) as caught:
        s.machine.receive(over)
    assert caught.value.reason is p.Reason.OVER_CAP
    s.machine.receive(capped)


def test_settlement_must_close_on_the_last_receipt():
    s = Session()
    s.meter(0, 1100)
    s.stop()
    stale = s.settlement()
    s.meter(2200)
    with pytest.raises(p.RemoteProtocolError) as caught:
        s.machine.receive(stale)
    assert caught.value.reason is p.Reason.BROKEN_CHAIN


def test_settlement_without_any_receipt():
    s = Session()
    s.stop(HOST)
    fake = signed(HOST, p.Settlement, s.id, last_receipt=bytes(32), energy_wh=0, amount=0, currency="EUR",
                  breakdown=(), t=s.t + 5)
    with pytest.raises(p.RemoteProtocolError) as caught:
        s.machine.receive(fake)
    assert caught.value.reason is p.Reason.BROKEN_CHAIN
    with pytest.raises(p.IllegalTransition):
        s.machine.expected_price()


def session_in(state: S) -> Session:
    s = Session()
    if state is S.STARTED:
        return s
    s.meter(0)
    if state is S.METERING:
        return s
    s.stop()
    if state is S.STOPPING:
        return s
    s.machine.receive(s.settlement())
    if state is S.SETTLED:
        return s
    cls = p.SettlementAck if state is S.FINAL else p.Dispute
    extra = {} if cls is p.SettlementAck else {"reason": p.Reason.MISPRICED}
    s.machine.receive(signed(DRIVER, cls, s.id, settlement=s.machine.settlement.digest, t=s.t + 100, **extra))
    assert s.machine.state is state
    return s


def session_step(s: Session, cls, identity):
    if cls is p.MeterReceipt:
        return p.sign(identity, s.receipt(10**6 if s.machine.receipts else 0).message)
    if cls is p.StopRequest:
        return signed(identity, cls, s.id, t=s.t + 1)
    if cls is p.Settlement:
        return p.sign(identity, p.Settlement(booking_id=s.id, last_receipt=bytes(32), energy_wh=0, amount=0,
                                             currency="EUR", breakdown=(), t=s.t))
    extra = {} if cls is p.SettlementAck else {"reason": p.Reason.MISPRICED}
    return signed(identity, cls, s.id, settlement=bytes(32), t=s.t, **extra)


SESSION_MESSAGES = [p.MeterReceipt, p.StopRequest, p.Settlement, p.SettlementAck, p.Dispute]


@pytest.mark.parametrize("state", list(S))
def test_every_step_outside_the_session_table_is_refused(state):
    assert_table_closed(p.SessionMachine, state, SESSION_MESSAGES, session_in, session_step)


@pytest.mark.parametrize("state", [S.STARTED, S.METERING])
@pytest.mark.parametrize("who", [DRIVER, HOST])
def test_either_party_may_stop(state, who):
    s = session_in(state)
    s.stop(who)
    assert s.machine.state is S.STOPPING


def test_check_session_verifies_a_finished_session_as_a_whole():
    s = settled_session()
    receipts, settlement = s.machine.receipts, s.machine.settlement
    p.check_session(s.machine.booking, receipts, settlement)
    stranger_receipt = p.sign(STRANGER, receipts[1].message)
    with pytest.raises(p.RemoteProtocolError) as caught:
        p.check_session(s.machine.booking, [receipts[0], stranger_receipt, *receipts[2:]], settlement)
    assert caught.value.reason is p.Reason.WRONG_BOOKING
    with pytest.raises(p.RemoteProtocolError) as caught:
        p.check_session(s.machine.booking, receipts, p.sign(DRIVER, settlement.message))
    assert caught.value.reason is p.Reason.WRONG_SIGNER
    with pytest.raises(p.RemoteProtocolError) as caught:
        p.check_session(s.machine.booking, receipts[:-1], settlement)
    assert caught.value.reason is p.Reason.BROKEN_CHAIN


def test_a_reading_faster_than_the_charger_is_taken_but_the_settlement_is_disputed():
    s = Session()  # the ad's charger: 11 kW
    s.meter(0, 1_800)  # 10.8 kW over ten minutes: plausible
    s.machine.receive(s.receipt(101_800, dt=123))  # 100 kWh in 123 s: the wallbox lies
    [fault] = s.machine.faults
    assert fault.reason is p.Reason.OVER_POWER and "at 11000 W" in fault.message
    s.stop()
    with pytest.raises(p.RemoteProtocolError) as caught:
        s.machine.receive(s.settlement())  # priced right, but of a reading no charger could make
    assert caught.value.reason is p.Reason.OVER_POWER


@pytest.mark.parametrize("when, plausible", [
    (WINDOW_START - 5 * 60, True),  # the terms' early-start grace
    (WINDOW_START - 5 * 60 - 1, False),
    (WINDOW_START + 9 * 3600 + p.SETTLE_MARGIN, True),  # the window's end and the stop's margin
    (WINDOW_START + 9 * 3600 + p.SETTLE_MARGIN + 1, False),
    (WINDOW_START + 20 * 365 * 86_400, False),  # twenty years on: the price bomb
])
def test_readings_must_lie_inside_the_booking_window_and_its_margins(when, plausible):
    s = Session()
    s.t = when
    s.machine.receive(s.receipt(0))
    assert [f.reason for f in s.machine.faults] == ([] if plausible else [p.Reason.OUTSIDE_WINDOW])


def test_after_a_stop_only_one_final_reading_close_to_it():
    late = Session()
    late.meter(0, 1_100)
    late.stop()
    late.machine.receive(late.receipt(1_200, dt=p.FINAL_READING_MARGIN + 2))
    assert [f.reason for f in late.machine.faults] == [p.Reason.AFTER_STOP]

    more = Session()
    more.meter(0, 1_100)
    more.stop()
    more.meter(2_200)  # the final reading
    assert more.machine.faults == []
    more.meter(3_300)  # and another: the host kept charging
    assert [f.reason for f in more.machine.faults] == [p.Reason.AFTER_STOP]
    with pytest.raises(p.RemoteProtocolError) as caught:
        more.machine.receive(more.settlement())
    assert caught.value.reason is p.Reason.AFTER_STOP
