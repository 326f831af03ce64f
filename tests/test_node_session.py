"""Charging sessions end to end: real libp2p nodes, the real OCPP WebSocket, the simulated
wallbox, at accelerated time (one clock for all, 1800x: three hours in six seconds)."""

import hashlib
from contextlib import AsyncExitStack
from fractions import Fraction

import trio

from fixtures import TERMS, at, make_ad, run_bounded
from wattshare import protocol as p
from wattshare.ledger import EntryKind, LedgerStore, audit
from wattshare.ledger._sample import SampleWorld
from wattshare.node import Node, Slot
from wattshare.node._clock import Clock
from wattshare.node._wallbox import Curve, Wallbox

ACCESS = p.AccessInfo(address="12 Acacia Avenue", code="4711")
SPEED = 1800
START, END = at("2026-11-28T22:00"), at("2026-11-29T01:00")
OFF_PEAK = at("2026-11-28T23:00")


def identity(i):
    return p.Identity(hashlib.sha256(b"session-test/%d" % i).digest())


def ledger_for(tmp_path, world, charter, name):
    store = LedgerStore(tmp_path / f"{name}.db", world.coop.public_key)
    store.ingest([charter])  # credit limit 50.00 EUR for every member
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
        charter = world.charter_entry().encode()
        clock = Clock(speed=SPEED, origin=origin)
        host = Node(identity(0), state=tmp_path / "host.db", access=ACCESS, ledger=ledger_for(tmp_path, world, charter, "hl"),
                    ocpp=("127.0.0.1", 0), clock=clock)
        await stack.enter_async_context(host.running())
        ad = (await host.publish(make_ad(host=identity(0).public_key, terms=terms, max_power_w=7_000))).message
        driver = Node(identity(1), state=tmp_path / "driver.db", ledger=ledger_for(tmp_path, world, charter, "dl"), clock=clock)
        await stack.enter_async_context(driver.running())
        await driver.join([host.address])
        wallbox = Wallbox(ad.charger_id, host.sessions.central.port, clock, curve=curve, meter_interval=300, unit=unit)
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
    assert street.host.store.get(booking.id)["state"] == Slot.SETTLED
    host_ledger = street.host.ledger
    assert booking.id in host_ledger.state.claims  # claimed once on the host's feed
    assert host_ledger.balance(booking.request.message.host, "EUR") == expected
    assert street.driver.ledger.sizes()[street.driver.identity.public_key] == 1  # the ack on the driver's feed
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


def test_driver_stop_and_a_wallbox_reporting_in_kwh(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street.open(stack, tmp_path, unit="kWh")
            booking = await street.book()
            stop = trio.Event()
            charging = await street.driver.charge(
                booking, stop=stop, on_update=lambda c: stop.set() if c.energy_wh >= 3_000 else None)
            return booking, charging

    booking, charging = run_bounded(scenario, 60)
    receipts = check_chain(charging, booking)
    stops = [m for m in charging.machine.history if isinstance(m.message, p.StopRequest)]
    assert [s.signer for s in stops] == [booking.request.message.driver]  # the driver's own stop
    assert 3_000 <= receipts[-1].message.energy_wh < 3_000 + 7_000 * 300 / 3600 + 50
    assert isinstance(charging.answer.message, p.SettlementAck)
