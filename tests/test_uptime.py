"""A co-op, a host and a driver left running for a month (issue "Real time").

Real libp2p nodes on 127.0.0.1, the host's simulated wallbox over the real OCPP
WebSocket, the co-op's witness, all on one clock that runs 1800 times real time and is
jumped forward between evenings (`Clock.advance`: every sleeper wakes, as a laptop
waking from sleep sees it). Every evening the driver must still find the host's ad (so
the host re-signed it before it expired and keeps providing its cell); on the nights
chosen it books, charges and settles. The nights cross midnight, a month end and both
DST switches of Europe/Berlin, and each bill is checked against a hand computation from
the receipts, with the UTC length of the night's off-peak hours written out as a
constant. At the end every ledger audits clean and the host holds no finished session
in memory.
"""

import datetime as dt
from contextlib import AsyncExitStack
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
import trio
from fixtures import EVERY_DAY, TERMS, TZ, WALLBOX_PASSWORD, at, make_ad, ocpp_endpoint, off_peak_tariff, run_bounded

from wattshare import protocol as p
from wattshare.ledger import Checkpoint, Entry, EntryKind, LedgerStore, MoneyMove, audit, members_at
from wattshare.node import AD_LIFETIME, Clock, Curve, Node, Wallbox, witness_feeds
from wattshare.testing import SampleWorld

SPEED = 1800
POWER_W = 7_000
BERLIN = ZoneInfo(TZ)
ALL_DAY = (p.WeeklyWindow(days=EVERY_DAY, start="00:00", end="00:00"),)


def local(day: dt.date, hhmm: str) -> int:
    """UTC seconds of a local wall time on `day` (the first, if DST repeats it)."""
    return at(f"{day.isoformat()}T{hhmm}")


def round_half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2))


class Night:
    """One night's booking: 22:00 local on `day` to `end` local the next morning;
    `off_peak_hours` is the UTC length of its off-peak part (23:00 to 07:00, or to the
    window's end), written out by hand."""

    def __init__(self, day: str, end: str, off_peak_hours: int) -> None:
        self.day = dt.date.fromisoformat(day)
        self.start = local(self.day, "22:00")
        self.end = local(self.day + dt.timedelta(days=1), end)
        self.off_peak = (local(self.day, "23:00"), min(self.end, local(self.day + dt.timedelta(days=1), "07:00")))
        self.off_peak_hours = off_peak_hours


SPRING = [  # 30 days from 2027-03-20, the month of the spring switch (2027-03-28 02:00 -> 03:00)
    Night("2027-03-20", "01:00", 2),  # across midnight
    Night("2027-03-27", "08:00", 7),  # across the switch: 23:00 CET to 07:00 CEST is 7 hours
    Night("2027-03-31", "01:00", 2),  # across the month end
    Night("2027-04-08", "01:00", 2),
    Night("2027-04-18", "01:00", 2),  # the 30th evening
]
AUTUMN = [  # the autumn switch (2027-10-31 03:00 -> 02:00) and the month end after it
    Night("2027-10-30", "08:00", 9),  # 23:00 CEST to 07:00 CET is 9 hours
    Night("2027-10-31", "01:00", 2),  # across the month end
]


class Neighbourhood:
    """The co-op (bootstrap, full ledger, witness), the host with its wallbox, and a driver."""

    def __init__(self, tmp_path, first_day: dt.date) -> None:
        self.tmp_path = tmp_path
        self.world = SampleWorld(seed=12)
        self.clock = Clock(speed=SPEED, origin=local(first_day, "12:00"))
        self.founding = [e.encode() for e in self.world.founding()]

    def ledger(self, name):
        store = LedgerStore(self.tmp_path / f"{name}.db", self.world.coop.public_key)
        store.ingest(self.founding)
        return store

    async def open(self, stack):
        world, t = self.world, self.tmp_path
        self.coop = Node(world.coop, state=t / "coop.db", ledger=self.ledger("coop"), clock=self.clock,
                         sync_interval=1.0)
        self.host = Node(world.hosts[0], state=t / "host.db", ledger=self.ledger("host"), clock=self.clock,
                         access=p.AccessInfo(address="12 Acacia Avenue", code="4711"), ocpp=ocpp_endpoint(),
                         sync_interval=1.0)
        self.driver = Node(world.drivers[0], state=t / "driver.db", ledger=self.ledger("driver"), clock=self.clock,
                           sync_interval=1.0)
        await stack.enter_async_context(self.coop.running())
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        nursery.start_soon(witness_feeds, self.coop.ledger, world.witness, world.coop.public_key, self.clock)
        self.coop.ledger.append(world.treasurer, [(EntryKind.DEPOSIT, MoneyMove(
            charter=world.charter, member=world.drivers[0].public_key, amount=20_000, currency="EUR"))],
            t=int(self.clock()))
        for node in (self.host, self.driver):
            await stack.enter_async_context(node.running())
            await node.join([self.coop.address])
        self.ad = make_ad(host=world.hosts[0].public_key, availability=ALL_DAY, max_power_w=POWER_W,
                          tariff=off_peak_tariff(), expires=int(self.clock()) + AD_LIFETIME)
        await self.host.publish(self.ad)
        self.wallbox = Wallbox(self.ad.charger_id, self.host.sessions.central.port, self.clock, WALLBOX_PASSWORD,
                               meter_interval=300,
                               curve=Curve(power_w=POWER_W, battery_wh=150_000, start_percent=10))
        nursery.start_soon(self.wallbox.run)
        await self.wallbox.connected.wait()
        with trio.fail_after(20):  # the deposit reaches the host, which checks the driver's credit
            while self.host.ledger.balance(world.drivers[0].public_key, "EUR") < 20_000:
                await trio.sleep(0.05)
        return self

    def jump_to(self, t: int) -> None:
        self.clock.advance(max(0.0, t - self.clock()))

    async def find_host(self) -> p.ChargerAd:
        """The host's ad as a search finds it this evening (bounded: a failure names the day)."""
        lat, lon = p.geo.decode(self.ad.geohash)
        now = int(self.clock())
        query = p.Query(lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), radius_m=1_000, start=now + 3600,
                        end=now + 7200)
        with trio.move_on_after(15):
            while not (results := await self.driver.search(query)):
                await trio.sleep(0.1)
        day = dt.datetime.fromtimestamp(now, BERLIN).isoformat(timespec="minutes")
        assert results, f"the host's charger could not be found on {day}"
        return results[0].ad.message

    async def charge(self, night: Night, ad: p.ChargerAd):
        booking = await self.driver.book(ad, night.start, night.end, spend_cap=2_000)
        self.wallbox.percent = self.wallbox.curve.start_percent  # tonight's car
        await self.clock.sleep_until(night.start - 30)
        return booking, await self.driver.charge(booking)


def witnessed(ledger: LedgerStore, witness: bytes, author: bytes) -> int:
    """The size of `author`'s feed in the witness's newest checkpoint (0 if there is none)."""
    size = ledger.sizes().get(witness, 0)
    if not size:
        return 0
    [envelope] = ledger.entries(witness, size - 1, size)
    checkpoint = Checkpoint.decode(p.Signed.decode(envelope, Entry).message.body)
    return checkpoint.cut(members_at(ledger, checkpoint.coop_size)).get(author, 0)


def check_bill(night: Night, booking, charging) -> int:
    """The night's bill against a hand computation from its receipts; returns the amount."""
    receipts = charging.machine.receipts
    p.check_session(booking, receipts, charging.settlement)
    energy_at = {r.message.t: r.message.energy_wh for r in receipts}
    first, last = receipts[0].message, receipts[-1].message
    assert night.start - TERMS.early_start_minutes * 60 <= first.t < night.off_peak[0] <= night.end <= last.t
    assert abs(last.energy_wh - POWER_W * (last.t - first.t) / 3600) <= 2  # 7 kW all night, nothing lost
    off_start, off_end = night.off_peak
    assert off_end - off_start == night.off_peak_hours * 3600  # the night's UTC length, DST included
    if off_end == night.end:  # off-peak to the last reading (the stop comes a little after the window's end)
        off_end = last.t
    off_peak = energy_at[off_end] - energy_at[off_start]  # clock-aligned readings at 23:00 and 07:00
    assert abs(off_peak - POWER_W * (off_end - off_start) / 3600) <= 2
    peak = last.energy_wh - off_peak
    settlement = charging.settlement.message
    lines = {(line.kind, line.element): line for line in settlement.breakdown}
    assert lines[(p.LineKind.ENERGY, 0)].quantity == off_peak  # element 0: 0.12 EUR/kWh from 23:00 to 07:00
    assert lines[(p.LineKind.ENERGY, 1)].quantity == peak  # element 1: 0.30 EUR/kWh otherwise
    expected = round_half_up(Fraction(off_peak * 12, 1000)) + round_half_up(Fraction(peak * 30, 1000))
    assert settlement.amount == expected
    assert isinstance(charging.answer.message, p.SettlementAck)  # the driver countersigned
    return expected


@pytest.mark.parametrize("nights, days", [(SPRING, 30), (AUTUMN, 3)], ids=["spring-30-days", "autumn"])
def test_a_month_of_uptime_renews_ads_and_settles_every_night_across_dst_and_month_ends(tmp_path, nights, days):
    first_day = nights[0].day
    by_day = {night.day: night for night in nights}

    async def scenario():
        async with AsyncExitStack() as stack:
            town = await Neighbourhood(tmp_path, first_day).open(stack)
            seqs, bills = [], []
            for offset in range(days):
                day = first_day + dt.timedelta(days=offset)
                town.jump_to(local(day, "21:00"))
                ad = await town.find_host()
                assert ad.expires > town.clock()
                seqs.append(ad.seq)
                if day in by_day:
                    booking, charging = await town.charge(by_day[day], ad)
                    bills.append((by_day[day], booking, charging))
            claims = {booking.id for _, booking, _ in bills}
            with trio.fail_after(30):  # every settlement, and each night's credit hold and ack, replicates to the co-op
                while not (claims <= set(town.coop.ledger.state.claims)
                           and town.coop.ledger.sizes().get(town.driver.identity.public_key) == 2 * len(bills)):
                    await trio.sleep(0.1)
            town.jump_to(town.clock() + 2 * 3600)  # the witness's next round covers the last night
            with trio.fail_after(10):
                host_key = town.host.identity.public_key
                while witnessed(town.coop.ledger, town.world.witness.public_key, host_key) != \
                        town.coop.ledger.sizes()[host_key]:
                    await trio.sleep(0.05)
            return town, seqs, bills

    town, seqs, bills = run_bounded(scenario, 240)
    amounts = [check_bill(night, booking, charging) for night, booking, charging in bills]
    assert len(amounts) == len(nights) and all(amounts)
    assert seqs == sorted(seqs) and seqs[-1] >= 1 + (days - 1) * 24 * 3600 // (4 * 24 * 3600)  # re-signed every 4 days
    for node in (town.coop, town.host, town.driver):
        assert audit(node.ledger.path).ok
    host_key = town.host.identity.public_key
    assert town.coop.ledger.balance(host_key, "EUR") == sum(amounts)
    assert town.coop.ledger.state.conserved()
    assert town.host.sessions.live == {}  # finished sessions leave memory; the store keeps them
