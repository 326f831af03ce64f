"""The host's sans-IO session core and its arrivals: events in, messages and actions out.
No sockets, no clock: every time is a number the test passes."""

import pytest
from fixtures import DRIVER, HOST, TERMS, make_booking
from hypothesis import given, settings
from hypothesis import strategies as st

from wattshare import protocol as p
from wattshare.protocol import SessionState as S

BOOKING = make_booking(start="2026-11-27T22:00", hours=2)  # 11 kW, peak 0.30 until 23:00, 0.12 after
R = BOOKING.request.message
T0 = R.start


def fresh(booking=BOOKING):
    start = p.sign(DRIVER, p.StartRequest(booking_id=booking.id, t=T0))
    return p.HostSession(HOST, booking, start)


def take(session, event, now=T0):
    step = session.handle(event, now)
    session.commit(step)
    return step


def started(booking=BOOKING, register=1_000):
    session = fresh(booking)
    take(session, p.WallboxStarted(transaction=7, meter_start=register, t=T0))
    return session


def kinds(step):
    return [type(s.message).__name__ for s in step.messages]


def test_start_mints_receipt_zero_and_asks_to_be_woken_at_the_window_end():
    session = fresh()
    step = take(session, p.WallboxStarted(transaction=7, meter_start=1_000, t=T0))
    assert kinds(step) == ["MeterReceipt"] and step.messages[0].message.energy_wh == 0
    assert step.actions == (p.Wake(R.end),) and session.transaction == (7, 1_000)
    assert take(session, p.WallboxStarted(transaction=8, meter_start=1_000, t=T0)).messages == ()  # resent
    assert session.transaction == (7, 1_000)


def test_a_step_changes_nothing_until_it_is_committed():
    session = started()
    before = (session.state, list(session.machine.history))
    step = session.handle(p.WallboxReadings(readings=((T0 + 600, 2_000),)), T0 + 600)
    assert kinds(step) == ["MeterReceipt"]
    assert (session.state, session.machine.history) == before  # the write failed: nothing happened
    again = session.handle(p.WallboxReadings(readings=((T0 + 600, 2_000),)), T0 + 600)  # the wallbox resends
    session.commit(again)
    assert [r.message.energy_wh for r in session.machine.receipts] == [0, 1_000]


def test_resent_and_lower_readings_are_skipped_and_energy_counts_from_the_start_register():
    session = started()
    take(session, p.WallboxReadings(readings=((T0 + 300, 1_500), (T0 + 600, 2_200))))
    step = take(session, p.WallboxReadings(readings=((T0 + 300, 1_500), (T0 + 600, 2_200), (T0 + 700, 2_100))))
    assert step.messages == ()
    assert [r.message.energy_wh for r in session.machine.receipts] == [0, 500, 1_200]


def test_an_implausible_reading_is_not_signed_and_the_host_is_told():
    session = started()
    step = take(session, p.WallboxReadings(readings=((T0 + 60, 50_000),)))  # 49 kWh in a minute at 11 kW
    assert step.messages == () and isinstance(step.actions[0], p.Note) and "over_power" in step.actions[0].text


def test_the_wallbox_stopping_closes_the_chain_and_settles_at_the_price():
    session = started()
    take(session, p.WallboxReadings(readings=((T0 + 1800, 4_000),)))
    step = take(session, p.WallboxStopped(t=T0 + 2000, meter_stop=4_500), now=T0 + 2001)
    assert kinds(step) == ["StopRequest", "MeterReceipt", "Settlement"] and step.actions == (p.Settled(),)
    settlement = session.machine.settlement.message
    assert settlement.energy_wh == 3_500 and settlement.amount == 105  # 3.5 kWh at 0.30
    p.check_session(BOOKING, session.machine.receipts, session.machine.settlement)
    assert take(session, p.WallboxStopped(t=T0 + 2000, meter_stop=4_500)).actions == (p.Settled(),)  # resent


def test_the_cap_guard_stops_one_interval_before_the_cap():
    booking = make_booking(start="2026-11-27T22:00", hours=2, spend_cap=150)
    session = started(booking)
    step = take(session, p.WallboxReadings(readings=((T0 + 600, 1_000 + 1_800),)), now=T0 + 600)
    assert step.actions == ()  # 0.54 now, 0.55 more in the next ten minutes at 11 kW: within 1.50
    step = take(session, p.WallboxReadings(readings=((T0 + 1200, 1_000 + 3_600),)), now=T0 + 1200)
    assert kinds(step) == ["MeterReceipt", "StopRequest"] and p.RemoteStop() in step.actions  # 1.08 + 0.55
    assert session.state is S.STOPPING
    assert session.machine.running_price().total <= 150


def test_the_window_end_stops_the_session_and_an_early_tick_waits_again():
    session = started()
    assert take(session, p.Tick(), now=R.end - 1).actions == (p.Wake(R.end),)
    step = take(session, p.Tick(), now=R.end)
    assert kinds(step) == ["StopRequest"] and step.actions == (p.RemoteStop(),)
    assert take(session, p.Tick(), now=R.end + 60).messages == ()


def test_a_driver_stop_is_checked_for_its_time_and_taken_once():
    session = started()
    with pytest.raises(p.RemoteProtocolError) as caught:
        session.handle(p.DriverStop(stop=p.sign(DRIVER, p.StopRequest(booking_id=BOOKING.id, t=T0 + 3600))), T0 + 60)
    assert caught.value.reason is p.Reason.BAD_TIME and session.state is S.METERING
    stop = p.sign(DRIVER, p.StopRequest(booking_id=BOOKING.id, t=T0 + 60))
    assert take(session, p.DriverStop(stop=stop), now=T0 + 60).actions == (p.RemoteStop(),)
    assert take(session, p.DriverStop(stop=stop), now=T0 + 61).messages == ()  # already stopping


def test_a_stop_that_never_comes_settles_on_the_reported_receipts():
    session = started()
    take(session, p.WallboxReadings(readings=((T0 + 600, 2_000),)))
    take(session, p.Tick(), now=R.end)
    step = take(session, p.StopOverdue(), now=R.end + 30)
    assert kinds(step) == ["Settlement"] and p.Settled() in step.actions
    assert session.machine.settlement.message.energy_wh == 1_000


def test_the_driver_answer_finishes_the_session():
    session = started()
    take(session, p.WallboxStopped(t=T0 + 600, meter_stop=2_000))
    ack = p.sign(DRIVER, p.SettlementAck(booking_id=BOOKING.id, t=T0 + 700,
                                         settlement=session.machine.settlement.digest))
    assert kinds(take(session, p.DriverAnswer(answer=ack))) == ["SettlementAck"]
    assert session.state is S.FINAL


def test_restore_replays_a_stored_log_to_the_same_state():
    session = started()
    take(session, p.WallboxReadings(readings=((T0 + 600, 2_000),)))
    take(session, p.WallboxStopped(t=T0 + 900, meter_stop=2_400))
    again = p.HostSession.restore(HOST, BOOKING, session.machine.start, session.transaction, session.machine.history)
    assert again.state is S.SETTLED and again.machine.settlement == session.machine.settlement


readings = st.lists(st.tuples(st.integers(1, 900), st.integers(0, 3_000), st.booleans()), max_size=25)


@settings(max_examples=60, deadline=None)
@given(readings, st.integers(20, 1_000))
def test_refused_writes_and_resends_change_nothing_and_the_chain_always_settles(steps, cap):
    """Each batch of readings may fail to be stored (not committed) and come again; the
    session ends as the one that never failed, its chain checks and its price keeps the cap."""
    booking = make_booking(start="2026-11-27T22:00", hours=2, spend_cap=cap)
    lucky, unlucky = started(booking), started(booking)
    t, register = T0, 1_000
    for dt, wh, fails in steps:
        t, register = t + dt, register + min(wh, 11_000 * dt // 3600)
        event = p.WallboxReadings(readings=((t, register),))
        take(lucky, event, now=t)
        if fails:
            unlucky.handle(event, t)  # the disk refused it: the wallbox sends it again
        take(unlucky, event, now=t)
    for session in (lucky, unlucky):
        take(session, p.WallboxStopped(t=t + 1, meter_stop=register), now=t + 1)
        p.check_session(booking, session.machine.receipts, session.machine.settlement)
        assert session.machine.settlement.message.amount <= cap
    assert [r.message for r in lucky.machine.receipts] == [r.message for r in unlucky.machine.receipts]


# --- arrivals: reservations and no-shows ---------------------------------------------------

def test_arrivals_reserve_at_the_opening_and_close_a_no_show_with_its_fee():
    arrivals = p.Arrivals(HOST)
    arrivals.expect(BOOKING)
    opens, deadline = T0 - TERMS.early_start_minutes * 60, T0 + TERMS.noshow_timeout_minutes * 60
    assert arrivals.due(opens - 1) == [] and arrivals.next_due() == opens
    [reserve] = arrivals.due(opens)
    assert reserve == p.Reserve(BOOKING, deadline)
    arrivals.reserved(BOOKING.id)
    assert arrivals.due(opens + 60) == [] and arrivals.next_due() == deadline
    [no_show] = arrivals.due(deadline)
    assert isinstance(no_show, p.NoShowDue) and no_show.fee == TERMS.noshow_fee
    assert no_show.no_show.signer == HOST.public_key and no_show.no_show.message.t == deadline
    assert arrivals.due(deadline) != []  # not stored yet: offered again
    arrivals.forget(BOOKING.id)
    assert arrivals.due(deadline) == [] and arrivals.next_due() is None
