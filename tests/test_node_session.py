"""Charging sessions end to end: real libp2p nodes, the real OCPP WebSocket, the simulated
wallbox, at accelerated time (one clock for all, 1800x: three hours in six seconds)."""

import hashlib
import json
import subprocess
import sys
from contextlib import AsyncExitStack
from fractions import Fraction
from pathlib import Path

import pytest
import trio
from fixtures import TERMS, WALLBOX_PASSWORD, at, make_ad, ocpp_endpoint, run_bounded
from trio_websocket import open_websocket

from wattshare import protocol as p
from wattshare.ledger import LedgerStore, audit
from wattshare.node import Node, SessionLost, basic_auth
from wattshare.node._clock import Clock
from wattshare.node._wallbox import Curve, Wallbox
from wattshare.testing import FullDisk, SampleWorld

ACCESS = p.AccessInfo(address="12 Acacia Avenue", code="4711")
SPEED = 1800
START, END = at("2026-11-28T22:00"), at("2026-11-29T01:00")
OFF_PEAK = at("2026-11-28T23:00")


def identity(i):
    return p.Identity(hashlib.sha256(b"session-test/%d" % i).digest())


def ledger_for(tmp_path, world, founding, name):
    store = LedgerStore(tmp_path / f"{name}.db", world.coop.public_key)
    store.ingest(founding)  # admitting both nodes, with 50.00 EUR of credit each
    return store


def round_half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


class Street:
    """A host with its wallbox and a driver, on one fast clock that starts two hours
    before the window (four real seconds for the set-up)."""

    def __init__(self, tmp_path, clock, host_node, driver_node, wallbox, ad):
        self.tmp_path, self.clock = tmp_path, clock
        self.host, self.driver, self.wallbox, self.ad = host_node, driver_node, wallbox, ad

    @classmethod
    async def open(cls, stack, tmp_path, *, origin=at("2026-11-28T20:00"), curve=Curve(power_w=7_000,
                   battery_wh=100_000, start_percent=10), unit="Wh", terms=TERMS):
        world = SampleWorld(seed=43)
        founding = [e.encode() for e in world.founding(members=(identity(0).public_key, identity(1).public_key))]
        clock = Clock(speed=SPEED, origin=origin)
        host = Node(identity(0), state=tmp_path / "host.db", access=ACCESS, ledger=ledger_for(tmp_path, world, founding, "hl"),
                    ocpp=ocpp_endpoint("driveway", "garage"), clock=clock)
        await stack.enter_async_context(host.running())
        ad = (await host.publish(make_ad(host=identity(0).public_key, terms=terms, max_power_w=7_000))).message
        driver = Node(identity(1), state=tmp_path / "driver.db", ledger=ledger_for(tmp_path, world, founding, "dl"), clock=clock)
        await stack.enter_async_context(driver.running())
        await driver.join([host.address])
        wallbox = Wallbox(ad.charger_id, host.sessions.central.port, clock, WALLBOX_PASSWORD, curve=curve,
                          meter_interval=300, unit=unit)
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        nursery.start_soon(wallbox.run)
        await wallbox.connected.wait()
        street = cls(tmp_path, clock, host, driver, wallbox, ad)
        street.nursery = nursery
        return street

    async def book(self, spend_cap=5_000, start=START, end=END):
        """Book the window, then wait (on the fast clock) until just before it opens."""
        booking = await self.driver.book(self.ad, start, end, spend_cap)
        await self.clock.sleep_until(start - 30)
        return booking


def check_chain(charging, booking):
    receipts = charging.machine.receipts
    p.check_session(booking, receipts, charging.settlement)
    assert [r.message.seq for r in receipts] == list(range(len(receipts)))
    return receipts


def test_overnight_session_across_the_off_peak_boundary_settles_to_the_hand_computed_amount(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book()
            seen = []
            charging = await street.driver.charge(booking, on_update=lambda c: seen.append((c.energy_wh, c.cost)))
            return street, booking, charging, seen

    street, booking, charging, seen = run_bounded(scenario, 60)
    receipts = check_chain(charging, booking)
    t0, t_end = receipts[0].message.t, receipts[-1].message.t
    assert START - 300 <= t0 <= START + 120
    assert END <= t_end <= END + 600  # stopped by the window's end (a tenth of a real second late at most)
    energy_at = {r.message.t: r.message.energy_wh for r in receipts}
    e23, e_end = energy_at[OFF_PEAK], receipts[-1].message.energy_wh  # clock-aligned reading at 23:00
    assert abs(e23 - 7_000 * (OFF_PEAK - t0) / 3600) <= 2  # 7 kW
    assert abs(e_end - 7_000 * (t_end - t0) / 3600) <= 2
    # by hand: 0.30 EUR/kWh before 23:00, 0.12 after; each line rounded to the cent
    expected = round_half_up(Fraction(e23 * 30, 1000)) + round_half_up(Fraction((e_end - e23) * 12, 1000))
    settlement = charging.settlement.message
    assert settlement.amount == expected and 370 <= expected <= 400
    assert isinstance(charging.answer.message, p.SettlementAck)  # the driver countersigned
    assert seen[-1][0] == e_end and seen[-1][1] == expected  # live energy and cost reached the driver
    assert street.host.store.get(booking.id)["state"] == p.BookingState.SETTLED
    host_ledger = street.host.ledger
    assert booking.id in host_ledger.state.claims  # claimed once on the host's feed
    assert host_ledger.balance(booking.request.message.host, "EUR") == expected
    assert street.driver.ledger.sizes()[street.driver.identity.public_key] == 2  # its credit hold, then the ack
    assert audit(host_ledger.path).ok


def test_the_cap_stops_the_session_before_it_could_be_passed(tmp_path):
    cap = 150  # 1.50 EUR at 0.30/kWh: 5 kWh, about 43 minutes at 7 kW

    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book(spend_cap=cap)
            return booking, await street.driver.charge(booking)

    booking, charging = run_bounded(scenario, 60)
    receipts = check_chain(charging, booking)
    uncapped = p.price(booking.request.message.tariff, [r.message for r in receipts], booking.request.message.tz)
    assert uncapped.total <= cap  # never exceeded, not even by the last interval
    assert receipts[-1].message.t < START + 3600  # long before the window's end
    assert charging.settlement.message.amount == uncapped.total >= cap - 25  # stopped within one interval of it
    assert isinstance(charging.answer.message, p.SettlementAck)


async def garbage_charge_point(port, answers):
    """Another charge point of the host's, logged in, that sends nothing but bad frames."""
    login = [(b"Authorization", basic_auth("garage", WALLBOX_PASSWORD).encode())]  # a charger the host knows
    async with open_websocket("127.0.0.1", port, "/ocpp/garage", use_ssl=False, subprotocols=["ocpp1.6"],
                              extra_headers=login) as ws:
        for frame in ("{not json", '[2, "x1", "MeterValues", {"connectorId": 1, "meterValue": 7}]',
                      '[2, "x2", "StopTransaction", {"transactionId": 1}]', '[5, "x3", {}]'):
            await ws.send_message(frame)
            answers.append(json.loads(await ws.get_message()))


def test_driver_stop_a_wallbox_reporting_in_kwh_and_garbage_ocpp_meanwhile(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path, unit="kWh")
            booking = await street.book()
            stop, answers = trio.Event(), []

            def update(charging):
                if charging.energy_wh >= 1_500 and not answers:
                    answers.append("sent")
                    street.nursery.start_soon(garbage_charge_point, street.host.sessions.central.port, answers)
                if charging.energy_wh >= 3_000:
                    stop.set()

            charging = await street.driver.charge(booking, stop=stop, on_update=update)
            with trio.fail_after(5):
                while len(answers) < 5:
                    await trio.sleep(0.05)
            return booking, charging, answers

    booking, charging, answers = run_bounded(scenario, 60)
    assert [a[0] for a in answers[1:]] == [4, 4, 4, 4]  # four CALLERRORs ...
    assert [a[2] for a in answers[1:]] == ["FormationViolation", "TypeConstraintViolation",
                                          "OccurenceConstraintViolation", "FormationViolation"]
    receipts = check_chain(charging, booking)
    stops = [m for m in charging.machine.history if isinstance(m.message, p.StopRequest)]
    assert [s.signer for s in stops] == [booking.request.message.driver]  # the driver's own stop
    assert 3_000 <= receipts[-1].message.energy_wh < 3_000 + 7_000 * 300 / 3600 + 50
    assert isinstance(charging.answer.message, p.SettlementAck)  # ... while the session carried on to its end


def test_wallbox_reconnecting_mid_session_loses_and_doubles_nothing(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book()
            dropped = []

            def drop_once(charging):
                if charging.energy_wh >= 3_000 and not dropped:
                    dropped.append(charging.machine.receipts[-1].message.t)
                    street.wallbox.drop(1.0)  # 30 minutes offline, still charging

            return dropped, booking, await street.driver.charge(booking, on_update=drop_once)

    dropped, booking, charging = run_bounded(scenario, 60)
    receipts = check_chain(charging, booking)
    t0, t_end, e_end = receipts[0].message.t, receipts[-1].message.t, receipts[-1].message.energy_wh
    assert abs(e_end - 7_000 * (t_end - t0) / 3600) <= 2  # nothing lost, nothing counted twice
    times = [r.message.t for r in receipts[1:]]
    offline = [t for t in times if dropped[0] < t < dropped[0] + 1800]
    assert len(offline) >= 4  # readings taken while offline arrived, queued, after the reconnect
    assert all(b - a <= 300 for a, b in zip(times, times[1:]))  # every clock-aligned reading is there
    assert isinstance(charging.answer.message, p.SettlementAck)


def test_car_unplugged_while_the_wallbox_is_offline_settles_on_the_late_stop(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book()
            unplugged = []

            async def drop_then_unplug():
                street.wallbox.drop(1.5)
                await street.clock.sleep(900)  # a quarter of an hour later, still offline
                street.wallbox.stop("EVDisconnected")  # its StopTransaction waits in the queue
                unplugged.append(street.clock())

            def update(charging):
                if charging.energy_wh >= 3_000 and not unplugged:
                    unplugged.append(None)
                    street.nursery.start_soon(drop_then_unplug)

            return unplugged, booking, await street.driver.charge(booking, on_update=update)

    unplugged, booking, charging = run_bounded(scenario, 60)
    receipts = check_chain(charging, booking)
    t0, t_end, e_end = receipts[0].message.t, receipts[-1].message.t, receipts[-1].message.energy_wh
    assert abs(t_end - unplugged[1]) <= 300 and t_end < END - 3600  # closed on the late stop, not the window
    assert abs(e_end - 7_000 * (t_end - t0) / 3600) <= 2  # every Wh up to the unplug, none after
    assert charging.settlement.message.energy_wh == e_end
    assert isinstance(charging.answer.message, p.SettlementAck)


def test_a_full_disk_mid_session_loses_no_energy(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            disk = FullDisk(street.host)
            street.nursery.start_soon(disk.run)
            booking = await street.book()
            filled = []

            def update(charging):
                if charging.energy_wh >= 3_000 and not filled:
                    filled.append(charging.machine.receipts[-1].message.t)
                    disk.fill(1.0)  # half an hour of readings cannot be stored: the wallbox keeps them

            return filled, booking, await street.driver.charge(booking, on_update=update)

    filled, booking, charging = run_bounded(scenario, 60)
    receipts = check_chain(charging, booking)
    t0, t_end, e_end = receipts[0].message.t, receipts[-1].message.t, receipts[-1].message.energy_wh
    assert abs(e_end - 7_000 * (t_end - t0) / 3600) <= 2 and t_end >= END  # every Wh, to the window's end
    times = [r.message.t for r in receipts[1:]]
    assert all(b - a <= 300 for a, b in zip(times, times[1:]))  # the readings refused meanwhile came back
    assert isinstance(charging.answer.message, p.SettlementAck)


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_host_killed_mid_session_resumes_the_chain_and_settles_once(tmp_path):
    world = SampleWorld(seed=44)
    home = tmp_path / "host"
    home.mkdir()
    identity(0).save(home / "host.key")
    founding = [e.encode() for e in world.founding(members=(identity(0).public_key, identity(1).public_key))]
    LedgerStore(home / "ledger.db", world.coop.public_key).ingest(founding)
    clock = Clock(speed=SPEED, origin=at("2026-11-28T20:00"))
    listen, ocpp_port = f"/ip4/127.0.0.1/tcp/{free_port()}", free_port()
    argv = [sys.executable, str(Path(__file__).parent / "host_process.py"), str(home), listen, str(ocpp_port),
            world.coop.public_key.hex(), str(clock.speed), str(clock.origin), str(clock.anchor)]

    async def start_host():
        process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1024)
        return process, line.split()[1].decode()

    async def scenario():
        async with AsyncExitStack() as stack:
            host, address = await start_host()
            stack.callback(lambda: host.kill() if host.returncode is None else None)
            driver = Node(identity(1), ledger=ledger_for(tmp_path, world, founding, "dl"), clock=clock)
            await stack.enter_async_context(driver.running())
            await driver.join([address])
            wallbox = Wallbox("driveway", ocpp_port, clock, WALLBOX_PASSWORD, curve=Curve(power_w=7_000, battery_wh=100_000,
                                                                          start_percent=10), meter_interval=300)
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            nursery.start_soon(wallbox.run)
            await wallbox.connected.wait()
            ad = make_ad(host=identity(0).public_key, max_power_w=7_000)
            booking = await driver.book(ad, START, END, 5_000)
            await clock.sleep_until(START - 30)
            killed, restarted = [], trio.Event()

            def kill_once(charging):
                if charging.energy_wh >= 3_000 and not killed:
                    killed.append(charging.machine.receipts[-1].message.seq)
                    host.kill()  # SIGKILL, mid-session
                    nursery.start_soon(restart)

            async def restart():
                nonlocal host
                await host.wait()
                host, _ = await start_host()
                restarted.set()

            charging = await driver.charge(booking, on_update=kill_once)  # the driver rides through the restart
            assert restarted.is_set() and killed[0] < charging.machine.receipts[-1].message.seq
            host.kill()  # and once its host is gone for good, it gives up after its resume window
            await host.wait()
            with pytest.raises(SessionLost):
                await driver.charge(booking, resume=1.0)
            return killed, booking, charging

    killed, booking, charging = run_bounded(scenario, 90)
    assert killed
    receipts = check_chain(charging, booking)  # the whole chain, replayed and checked from receipt 0
    assert len(receipts) > killed[0] + 10  # it went on after the restart
    t0, t_end, e_end = receipts[0].message.t, receipts[-1].message.t, receipts[-1].message.energy_wh
    assert abs(e_end - 7_000 * (t_end - t0) / 3600) <= 2
    assert t_end >= END
    ledger = LedgerStore(home / "ledger.db", world.coop.public_key)
    assert ledger.sizes()[identity(0).public_key] == 1  # settled once
    assert booking.id in ledger.state.claims and audit(ledger.path).ok
    assert isinstance(charging.answer.message, p.SettlementAck)


def test_no_show_frees_the_reservation_closes_the_booking_and_claims_the_fee(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book()
            await street.clock.sleep_until(START + (TERMS.noshow_timeout_minutes + 5) * 60)
            with trio.fail_after(5):
                while street.host.store.get(booking.id)["state"] != p.BookingState.NO_SHOW:
                    await trio.sleep(0.05)
            with pytest.raises(p.RemoteProtocolError) as late:
                await street.driver.charge(booking)
            with trio.fail_after(5):
                while "CancelReservation" not in street.wallbox.received:
                    await trio.sleep(0.05)
            return street, booking, late.value

    street, booking, late = run_bounded(scenario, 60)
    assert late.reason is p.Reason.ILLEGAL_STATE
    assert street.wallbox.received == ["ReserveNow", "CancelReservation"]  # held at the window, freed at no-show
    assert street.wallbox.reservations == {}
    host_key = booking.request.message.host
    assert street.host.ledger.balance(host_key, "EUR") == TERMS.noshow_fee
    assert street.host.ledger.state.claims[booking.id]


def test_a_driver_who_leaves_is_settled_host_only_and_acks_once_on_return(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book()
            with trio.move_on_after(1.0):  # the driver's phone dies half an hour in
                await street.driver.charge(booking)
            await street.clock.sleep_until(END + 120)
            with trio.fail_after(10):
                while street.host.store.get(booking.id)["state"] != p.BookingState.SETTLED:
                    await trio.sleep(0.05)
            alone = street.host.store.session(booking.id)
            await street.driver.sync.pull(street.driver.host, street.host.host.get_id())  # any wallet command does
            caught = street.driver.catch_up_bookings(), street.driver.store.get(booking.id)["state"]
            back = await street.driver.charge(booking)  # re-attach: replay, settlement, ack
            again = await street.driver.charge(booking)  # and once more: the same ack, not a new one
            with trio.fail_after(5):
                while street.host.store.session(booking.id).answer is None:
                    await trio.sleep(0.05)
            return street, booking, alone, caught, back, again

    street, booking, alone, caught, back, again = run_bounded(scenario, 60)
    assert caught == ([booking.id], p.BookingState.SETTLED)  # not "started" until a watch (issue 19, item 12)
    assert alone.settlement is not None and alone.answer is None  # host-only, within the cap
    assert booking.id in street.host.ledger.state.claims
    assert back.settlement == alone.settlement and isinstance(back.answer.message, p.SettlementAck)
    assert again.answer == back.answer
    assert street.driver.ledger.sizes()[street.driver.identity.public_key] == 2  # its credit hold and one ack
    assert street.host.store.session(booking.id).answer == back.answer
    check_chain(back, booking)


def test_watching_a_booking_never_starts_its_session(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book()
            await street.clock.sleep_until(START)
            with pytest.raises(p.RemoteProtocolError) as refused:
                await street.driver.charge(booking, attach=True)  # `wallet watch` before `wallet start`
            return street, booking, refused.value

    street, booking, refused = run_bounded(scenario, 60)
    assert refused.reason is p.Reason.ILLEGAL_STATE and "start one first" in refused.message
    assert street.host.store.get(booking.id)["state"] == p.BookingState.CONFIRMED
    assert street.host.store.session(booking.id) is None
    assert street.wallbox.transaction is None  # the wallbox was never asked to start


def test_a_driver_stop_the_disk_refuses_leaves_the_session_running_until_it_comes_again(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            booking = await street.book()
            stop, writable = trio.Event(), trio.Event()

            async def refuse_writes_for_a_second():
                street.host.store.db.execute("PRAGMA query_only = 1")  # every write fails, however small
                stop.set()
                await trio.sleep(1.0)
                street.host.store.db.execute("PRAGMA query_only = 0")
                writable.set()

            def refuse_then_stop(charging):
                if charging.energy_wh >= 3_000 and not stop.is_set():
                    street.nursery.start_soon(refuse_writes_for_a_second)

            with pytest.raises(p.RemoteProtocolError) as refused:
                await street.driver.charge(booking, stop=stop, on_update=refuse_then_stop)
            [shown] = street.host.sessions.summary()  # what `host status` shows
            seen = p.SessionState(shown["state"]), shown["error"]
            await writable.wait()
            stopped = trio.Event()
            stopped.set()
            asked = street.clock()
            return booking, refused.value, seen, asked, await street.driver.charge(booking, stop=stopped)

    booking, refused, (state, error), asked, charging = run_bounded(scenario, 60)
    assert refused.reason is p.Reason.INTERNAL and "send it again" in refused.message
    assert state is p.SessionState.METERING and "readonly" in error  # not half-stepped into STOPPING
    receipts = check_chain(charging, booking)
    assert receipts[-1].message.t <= asked + 600 < END  # the stop sent again was honoured at once
    assert isinstance(charging.answer.message, p.SettlementAck)


def test_a_second_command_of_the_same_wallet_does_not_cut_the_live_session(tmp_path):
    """Issue 19, item 3: `wallet balance` beside a live `wallet start` runs a second node
    with the same key, so the same peer id; the host kept one connection per peer and
    closed the older one, the live view's."""
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path)
            street.host.host.get_network().connection_config.grace_period = 0.2  # trimmable after 0.2 s, not 20
            booking = await street.book()
            twin_joined, twin_started = trio.Event(), []

            async def twin_joins():
                twin = Node(identity(1), state=tmp_path / "twin.db", clock=street.clock)
                async with twin.running():
                    await twin.join([street.host.address])
                    twin_joined.set()
                    await trio.sleep(1.0)  # as long as `wallet balance` takes

            def on_update(charging):
                if charging.energy_wh >= 2_000 and not twin_started:
                    twin_started.append(True)
                    street.nursery.start_soon(twin_joins)

            charging = await street.driver.charge(booking, on_update=on_update)
            return booking, twin_joined.is_set(), charging

    booking, twin_joined, charging = run_bounded(scenario, 60)
    assert twin_joined
    receipts = check_chain(charging, booking)
    assert receipts[-1].message.t >= END and isinstance(charging.answer.message, p.SettlementAck)  # to the end
