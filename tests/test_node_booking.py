"""Bookings between real libp2p nodes: confirmations, reason codes, one winner per slot,
manual approval, cancellation fees on the ledger."""

import hashlib
from contextlib import AsyncExitStack

import pytest
import trio
from fixtures import TERMS, at, make_ad, off_peak_tariff, pinned_clock, run_bounded

from wattshare import protocol as p
from wattshare.ledger import EntryKind, LedgerStore, audit
from wattshare.node import (
    BOOKING_PROTOCOL,
    Approval,
    BookingRejected,
    FrameStream,
    Node,
    NodeError,
    StreamEnded,
    request_booking,
    request_cancel,
)
from wattshare.node._framing import varint
from wattshare.node._host import peer_of
from wattshare.testing import SampleWorld

ACCESS = p.AccessInfo(address="12 Acacia Avenue", instructions="wallbox by the garage", code="4711")
NIGHT = (at("2026-11-28T23:00"), at("2026-11-29T06:00"))  # tonight, on the nodes' pinned clock (noon)


def identity(i):
    return p.Identity(hashlib.sha256(b"booking-test/%d" % i).digest())


async def start(stack, node, bootstrap=None):
    await stack.enter_async_context(node.running())
    if bootstrap is not None:
        await node.join([bootstrap.address])
    return node


def ledger_for(tmp_path, world, name, members=(identity(0), *(identity(10 + i) for i in range(5)))):
    """A ledger holding the co-op's charter and admissions of `members`, with 50.00 EUR
    of credit each (the same entries for every ledger of one world)."""
    store = LedgerStore(tmp_path / f"{name}.db", world.coop.public_key)
    if not world.founded:
        world.founding(members=tuple(m.public_key for m in members))
    store.ingest([e.encode() for e in world.founded])
    return store


async def neighbourhood(stack, tmp_path, drivers=1, approval=Approval.AUTO, terms=TERMS, timeout=300.0):
    world = SampleWorld(seed=41)
    host_id = identity(0)
    clock = pinned_clock()
    host = Node(host_id, state=tmp_path / "host.db", access=ACCESS, approval=approval,
                ledger=ledger_for(tmp_path, world, "host-ledger"), approval_timeout=timeout, clock=clock)
    await start(stack, host)
    ad = (await host.publish(make_ad(host=host_id.public_key, terms=terms))).message
    cars = [await start(stack, Node(identity(10 + i), state=tmp_path / f"driver{i}.db", clock=clock,
                                    ledger=ledger_for(tmp_path, world, f"driver{i}-ledger")), host)
            for i in range(drivers)]
    return host, ad, cars


def test_booking_happy_path_and_reason_codes(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            host, ad, [car] = await neighbourhood(stack, tmp_path)
            booking = await car.book(ad, *NIGHT, spend_cap=2_000)
            assert booking.confirmation.signer == host.identity.public_key
            assert car.access(booking) == ACCESS  # the sealed access, kept beside the booking, opens for the driver
            assert host.store.get(booking.id)["state"] == p.BookingState.CONFIRMED
            assert car.store.get(booking.id)["state"] == p.BookingState.CONFIRMED

            reasons = {}
            for name, window, cap, the_ad in [
                ("noon", (at("2026-11-28T12:00"), at("2026-11-28T14:00")), 1_000, ad),
                ("same slot", NIGHT, 1_000, ad),
                ("credit", (at("2026-11-29T23:00"), at("2026-11-30T06:00")), 3_500, ad),
                ("old ad", (at("2026-11-30T23:00"), at("2026-12-01T06:00")), 1_000,
                 ad.replace(seq=0, tariff=off_peak_tariff(off_peak=10_000))),  # before a price change
            ]:
                try:
                    await car.book(the_ad, *window, spend_cap=cap)
                except BookingRejected as rejected:
                    reasons[name] = rejected.reason
        assert reasons == {
            "noon": p.Reason.OUTSIDE_AVAILABILITY,
            "same slot": p.Reason.SLOT_TAKEN,
            "credit": p.Reason.INSUFFICIENT_CREDIT,  # 50.00 credit - 20.00 open cap < 35.00
            "old ad": p.Reason.AD_EXPIRED,
        }

    run_bounded(scenario)


def test_a_driver_racing_three_hosts_holds_no_more_than_its_credit(tmp_path):
    """The attack: one key books three hosts at once, each for more than half its credit.
    Each host sees the driver's holds on its own feed, counts those made before the one
    it decides on, and confirms only what the credit covers; a key the co-op has not
    admitted, and a wallet that keeps no ledger (so holds nothing), get nothing at all."""
    async def scenario():
        outcomes = {}
        async with AsyncExitStack() as stack:
            world, clock = SampleWorld(seed=41), pinned_clock()
            stranger = identity(99)
            hosts = []
            for i in range(3):
                host = Node(identity(i), state=tmp_path / f"host{i}.db", access=ACCESS, clock=clock,
                            ledger=ledger_for(tmp_path, world, f"host{i}-ledger",
                                              members=[identity(j) for j in range(3)] + [identity(10), identity(11)]))
                await start(stack, host, hosts[0][0] if hosts else None)
                hosts.append((host, (await host.publish(make_ad(host=identity(i).public_key))).message))
            racer, stranger_node, ledgerless = [
                await start(stack, Node(who, state=tmp_path / f"{name}.db", clock=clock, ledger=ledger), hosts[0][0])
                for name, who, ledger in [
                    ("racer", identity(10), ledger_for(tmp_path, world, "racer-ledger")),
                    ("stranger", stranger, ledger_for(tmp_path, world, "stranger-ledger")),
                    ("ledgerless", identity(11), None)]]

            async def attempt(car, name, ad):
                try:
                    await car.book(ad, *NIGHT, spend_cap=4_000)
                    outcomes[name] = "confirmed"
                except BookingRejected as rejected:
                    outcomes[name] = rejected.reason

            for car, who in [(racer, "racer"), (stranger_node, "stranger")]:
                async with trio.open_nursery() as nursery:
                    for i, (_, ad) in enumerate(hosts):
                        nursery.start_soon(attempt, car, f"{who}@{i}", ad)
            await attempt(ledgerless, "ledgerless@0", hosts[0][1])
            feed = racer.ledger.state
            released = [s for s in racer.store.bookings() if s["state"] == p.BookingState.REJECTED]
            assert feed.available(identity(10).public_key, "EUR", int(clock())) == 1_000  # 50.00 - the one 40.00 hold
            open_holds = feed.holds[identity(10).public_key].keys()
            assert len(released) == 2 and not open_holds & {r["booking_id"] for r in released}
        racing = sorted(v for k, v in outcomes.items() if k.startswith("racer"))
        assert racing == ["confirmed", p.Reason.INSUFFICIENT_CREDIT, p.Reason.INSUFFICIENT_CREDIT]
        assert {v for k, v in outcomes.items() if k.startswith("stranger")} == {p.Reason.NOT_A_MEMBER}
        assert outcomes["ledgerless@0"] is p.Reason.NO_HOLD

    run_bounded(scenario)


def test_twenty_concurrent_requests_for_one_slot_yield_one_confirmation(tmp_path):
    async def scenario():
        outcomes = []
        async with AsyncExitStack() as stack:
            host, ad, cars = await neighbourhood(stack, tmp_path, drivers=5)

            async def attempt(car, offset):
                try:
                    await car.book(ad, NIGHT[0] + offset * 600, NIGHT[1] - offset * 600, spend_cap=1_000)
                    outcomes.append("confirmed")
                except BookingRejected as rejected:
                    outcomes.append(rejected.reason)

            async with trio.open_nursery() as nursery:
                for car in cars:
                    for offset in range(4):
                        nursery.start_soon(attempt, car, offset)
            held = host.store.bookings(p.BookingState.CONFIRMED)
        assert outcomes.count("confirmed") == 1 and len(held) == 1
        assert outcomes.count(p.Reason.SLOT_TAKEN) == 19

    run_bounded(scenario)


def test_manual_approval_approve_decline_and_timeout(tmp_path):
    async def scenario():
        results = {}
        async with AsyncExitStack() as stack:
            host, ad, cars = await neighbourhood(stack, tmp_path, drivers=3, approval=Approval.MANUAL, timeout=3.0)
            windows = [NIGHT, (at("2026-11-29T23:00"), at("2026-11-30T06:00")),
                       (at("2026-11-30T23:00"), at("2026-12-01T06:00"))]

            async def ask(index):
                try:
                    await cars[index].book(ad, *windows[index], spend_cap=1_000)
                    results[index] = "confirmed"
                except BookingRejected as rejected:
                    results[index] = rejected.reason

            async with trio.open_nursery() as nursery:
                for index in range(3):
                    nursery.start_soon(ask, index)
                with trio.fail_after(5):
                    while len(host.desk.pending()) < 3:
                        await trio.sleep(0.02)
                by_driver = {host.store.get(b)["driver"]: b for b in host.desk.pending()}
                # while the first is pending, its slot is held against everyone else
                try:
                    await cars[1].book(ad, *NIGHT, spend_cap=1_000)
                except BookingRejected as rejected:
                    results["competing"] = rejected.reason
                host.desk.decide_pending(by_driver[cars[0].identity.public_key], approve=True)
                host.desk.decide_pending(by_driver[cars[1].identity.public_key], approve=False)
        assert results == {0: "confirmed", 1: p.Reason.DECLINED, 2: p.Reason.APPROVAL_TIMEOUT,
                           "competing": p.Reason.SLOT_TAKEN}

    run_bounded(scenario)


def test_late_cancel_charges_the_fee_on_the_hosts_ledger_and_the_driver_may_dispute_it(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            late_terms = TERMS.replace(cancel_until_minutes=10**6)  # any cancel from now on is late
            host, ad, [car] = await neighbourhood(stack, tmp_path, terms=late_terms)
            booking = await car.book(ad, *NIGHT, spend_cap=1_000)
            fee = await car.cancel(booking, "plans changed")
            assert fee == TERMS.cancel_fee == 200
            assert host.store.get(booking.id)["state"] == p.BookingState.CANCELLED
            ledger = host.ledger
            [fee_row] = ledger.db.execute("SELECT kind FROM entries WHERE author = ?",
                                          [host.identity.public_key]).fetchall()
            assert fee_row[0] == EntryKind.FEE.value
            assert ledger.balance(host.identity.public_key, "EUR") == 200
            assert ledger.balance(car.identity.public_key, "EUR") == -200
            assert audit(ledger.path).ok
            await car.sync.pull(car.host, host.host.get_id())  # the driver sees the fee on the ledger...
            disputed = car.dispute(booking, p.Reason.BAD_TIME, "I cancelled in time")  # ...and contests it
            await host.sync.pull(host.host, car.host.get_id())
            assert disputed.settlement == ledger.fee_claim(booking.id)[0]
            assert ledger.db.execute("SELECT COUNT(*) FROM entries WHERE author = ? AND kind = 'dispute'",
                                     [car.identity.public_key]).fetchone()[0] == 1
            assert audit(ledger.path).ok  # a fee disputed by its own driver dangles nowhere
            with pytest.raises(NodeError, match="only the booking's driver"):
                host.dispute(booking, p.Reason.BAD_TIME)

    run_bounded(scenario)


def test_a_cancel_dated_earlier_than_it_was_sent_is_refused_and_the_fee_stands(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            terms = TERMS.replace(cancel_until_minutes=12 * 60)  # from noon, a cancel for 23:00 is late
            host, ad, [car] = await neighbourhood(stack, tmp_path, terms=terms)
            booking = await car.book(ad, *NIGHT, spend_cap=1_000)
            backdated = p.sign(car.identity, p.Cancel(booking_id=booking.id, t=int(car.clock()) - 2 * 3600))
            with pytest.raises(p.RemoteProtocolError) as refused:  # two hours ago it would have been free
                await request_cancel(car.host, peer_of(ad.host), backdated)
            state = host.store.get(booking.id)["state"]
            fee = await car.cancel(booking, "plans changed")  # honestly dated
            return refused.value, state, fee, host.conduct.culprits()

    refused, state, fee, culprits = run_bounded(scenario)
    assert refused.reason is p.Reason.BAD_TIME and "clock skew" in refused.message
    assert state == p.BookingState.CONFIRMED and fee == TERMS.cancel_fee  # nothing changed by the backdated one
    assert [(c["protocol"], c["reason"]) for c in culprits] == [(BOOKING_PROTOCOL, "bad_time")]


def test_booking_protocol_refuses_bad_input(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            host, ad, [car] = await neighbourhood(stack, tmp_path)
            impostor = identity(77)  # signs a request, but car sends it
            forged = p.sign(impostor, p.BookingRequest(
                driver=impostor.public_key, host=ad.host, charger_id=ad.charger_id, ad_seq=ad.seq,
                tariff=ad.tariff, terms=ad.terms, tz=ad.tz, max_power_w=ad.max_power_w, geohash=ad.geohash,
                country=ad.country, start=NIGHT[0],
                end=NIGHT[1], spend_cap=1_000,
                nonce=bytes(16), created=int(host.clock())))
            try:
                await request_booking(car.host, peer_of(ad.host), forged)
            except BookingRejected as rejected:
                forged_reason = rejected.reason
            stream = await car.host.new_stream(peer_of(ad.host), [BOOKING_PROTOCOL])
            await stream.write(varint(3) + b"\xff\xfe\xfd")
            reply = await FrameStream(stream).receive(p.BookingAnswer)
            await stream.close()
            half_closed = await car.host.new_stream(peer_of(ad.host), [BOOKING_PROTOCOL])
            await half_closed.close_write()  # says nothing at all
            with trio.fail_after(15):
                try:
                    await FrameStream(half_closed).read()
                except StreamEnded:
                    half_closed_outcome = "ended"
            await half_closed.close()
            booking = await car.book(ad, *NIGHT, spend_cap=1_000)  # the host still serves
        assert forged_reason is p.Reason.WRONG_SIGNER
        assert isinstance(reply, p.ErrorReply) and reply.reason is p.Reason.MALFORMED
        assert booking.confirmation.signer == host.identity.public_key
        assert half_closed_outcome == "ended"

    run_bounded(scenario)


def test_a_restarted_host_reloads_its_ads_and_bookings_and_is_found_again(tmp_path):
    host_id = identity(0)
    found = {}

    async def first_life():
        async with AsyncExitStack() as stack:
            host, ad, [car] = await neighbourhood(stack, tmp_path)
            found["booking"] = await car.book(ad, *NIGHT, spend_cap=1_000)

    async def second_life():
        async with AsyncExitStack() as stack:
            clock = pinned_clock()
            boot = await start(stack, Node(identity(90), clock=clock))
            host = await start(stack, Node(host_id, state=tmp_path / "host.db", access=ACCESS, clock=clock), boot)
            driver = await start(stack, Node(identity(91), clock=clock), boot)
            found["reloaded"] = host.store.get(found["booking"].id)["state"]
            lat, lon = p.geo.decode(make_ad().geohash)
            query = p.Query(lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), radius_m=1_000,
                            start=at("2026-11-29T23:00"), end=at("2026-11-30T06:00"))
            with trio.fail_after(25):  # until the host's re-announcement has reached the DHT
                while not (results := await driver.search(query)):
                    await trio.sleep(0.1)
            found["results"] = results

    run_bounded(first_life)
    run_bounded(second_life)
    assert found["reloaded"] == p.BookingState.CONFIRMED
    [result] = found["results"]
    assert result.ad.signer == host_id.public_key and result.ad.message.charger_id == "driveway"


def test_rate_limiter_allows_a_burst_then_a_steady_trickle():
    from wattshare.node._limits import RateLimiter

    now = [0.0]
    limiter = RateLimiter(burst=3, rate=0.5, now=lambda: now[0])
    assert [limiter.allow(b"a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(b"b")  # another peer has its own bucket
    now[0] += 2.0  # one token back after two seconds
    assert [limiter.allow(b"a") for _ in range(2)] == [True, False]


def test_a_flood_of_booking_requests_is_rate_limited_and_others_are_still_served(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            host, ad, (flooder, neighbour) = await neighbourhood(stack, tmp_path, drivers=2)
            reasons = []
            for offset in range(30):
                try:
                    await flooder.book(ad, NIGHT[0] + offset * 60, NIGHT[0] + offset * 60 + 30, spend_cap=100)
                    reasons.append("confirmed")
                except BookingRejected as rejected:
                    reasons.append(rejected.reason)
                except p.RemoteProtocolError as refused:
                    reasons.append(refused.reason)
            honest = await neighbour.book(ad, NIGHT[1] - 3600, NIGHT[1], spend_cap=1_000)
            return reasons, honest

    reasons, honest = run_bounded(scenario)
    assert reasons.count(p.Reason.RATE_LIMITED) >= 18 and reasons[:10] == ["confirmed"] * 10
    assert honest.confirmation.message.booking_id == honest.id


def test_a_driver_that_gave_up_waiting_asks_again_and_learns_the_host_confirmed(tmp_path):
    async def scenario():
        async with AsyncExitStack() as stack:
            host, ad, [car] = await neighbourhood(stack, tmp_path, approval=Approval.MANUAL, timeout=30.0)
            with trio.move_on_after(1.0):  # Ctrl-C, or a phone losing its signal, while the host decides
                await car.book(ad, *NIGHT, spend_cap=1_000)
            [booking_id] = host.desk.pending()
            kept = car.store.get(booking_id)["state"]
            deciding = await car.ask_again_pending()
            host.desk.decide_pending(booking_id, approve=True)
            with trio.fail_after(5):
                while host.store.get(booking_id)["state"] != p.BookingState.CONFIRMED:
                    await trio.sleep(0.02)
            answered = await car.ask_again_pending()
            booking = car.store.booking(booking_id)
            return booking_id, kept, deciding, answered, car.store.get(booking_id)["state"], car.access(booking), \
                car.ledger.state.hold(car.identity.public_key, booking_id)

    booking_id, kept, deciding, answered, state, access, hold = run_bounded(scenario)
    assert kept == p.BookingState.PENDING  # not "rejected": the host may confirm it yet
    assert deciding == [booking_id]  # asked again while the host still decided: still unknown
    assert answered == [] and state == p.BookingState.CONFIRMED and access == ACCESS  # the host's first answer, sealed access too
    assert hold is not None  # the credit hold stands for the confirmed booking
