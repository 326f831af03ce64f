"""The node's clock: speed and origin, jumps that wake every sleeper, and the ad and
checkpoint schedules that run on it; on trio's MockClock, so a week passes in a moment."""

import trio
import trio.lowlevel
import trio.testing
from fixtures import HOST, at, make_ad

from wattshare import protocol as p
from wattshare.ledger import Checkpoint, Entry, LedgerStore, members_at
from wattshare.node import AD_LIFETIME, AdBoard, Clock, witness_feeds
from wattshare.node._ads import AD_RENEW_AHEAD
from wattshare.testing import SampleWorld

ORIGIN = at("2027-03-27T21:00")


def run_mocked(scenario):
    """Run under MockClock: trio's time jumps whenever every task waits."""
    return trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_clock_maps_real_time_to_domain_time_by_speed_and_origin():
    real = [1000.0]
    clock = Clock(speed=1800, origin=ORIGIN, real=lambda: real[0])
    assert clock() == ORIGIN
    real[0] += 2.0  # two real seconds are an hour at 1800x
    assert clock() == ORIGIN + 3600
    assert clock.real_seconds(3600) == 2.0 and clock.real_seconds(-5) == 0.0
    clock.advance(86_400)
    assert clock() == ORIGIN + 3600 + 86_400


def test_sleepers_wake_at_their_domain_time_and_at_once_after_a_jump_past_it():
    async def scenario():
        clock = Clock(speed=60, origin=ORIGIN, real=trio.current_time)
        woke = {}

        async def sleeper(name, t):
            await clock.sleep_until(t)
            woke[name] = clock()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper, "in an hour", ORIGIN + 3600)
            nursery.start_soon(sleeper, "tomorrow", ORIGIN + 86_400)
            nursery.start_soon(sleeper, "next week", ORIGIN + 7 * 86_400)
            await clock.sleep_until(ORIGIN + 3600 + 1)
            assert set(woke) == {"in an hour"}
            clock.advance(2 * 86_400)  # the laptop slept two days
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
        return woke

    woke = run_mocked(scenario)
    assert ORIGIN + 3600 <= woke["in an hour"] < ORIGIN + 3601
    assert woke["tomorrow"] >= ORIGIN + 86_400  # woken by the jump, once
    assert woke["next week"] >= ORIGIN + 7 * 86_400  # and this one slept on to its own time


def test_a_jump_backwards_is_refused():
    clock = Clock(origin=ORIGIN)
    for seconds in (-1, float("nan")):
        try:
            clock.advance(seconds)
        except ValueError:
            continue
        raise AssertionError(f"advance({seconds}) was accepted")


def test_the_board_renews_an_ad_two_days_before_it_expires_keeping_its_terms():
    board = AdBoard(HOST)
    ad = make_ad(expires=ORIGIN + AD_LIFETIME)
    board.publish(ad)
    assert board.next_renewal() == ORIGIN + AD_LIFETIME - AD_RENEW_AHEAD
    assert board.renewals(ORIGIN + AD_LIFETIME - AD_RENEW_AHEAD - 1) == []
    due = ORIGIN + AD_LIFETIME - AD_RENEW_AHEAD
    [renewed] = board.renewals(due)
    assert renewed == ad.replace(seq=ad.seq + 1, expires=due + AD_LIFETIME)  # only seq and expiry change
    board.publish(renewed)
    assert board.next_renewal() == due + AD_LIFETIME - AD_RENEW_AHEAD
    assert AdBoard(HOST).next_renewal() is None


def test_the_witness_checkpoints_at_most_once_an_hour_and_only_when_feeds_moved(tmp_path):
    world = SampleWorld(seed=3)
    ledger = LedgerStore(tmp_path / "coop.db", world.coop.public_key)
    ledger.ingest([*(e.encode() for e in world.founding())])

    async def scenario():
        clock = Clock(speed=1, origin=ORIGIN, real=trio.current_time)
        ledger.clock = clock  # as a Node does: entries are judged by the node's time
        witness = world.witness.public_key
        async with trio.open_nursery() as nursery:
            nursery.start_soon(witness_feeds, ledger, world.witness, world.coop.public_key, clock)
            await clock.sleep(3 * 3600 + 1)  # three quiet hours after the charter: one checkpoint
            first = ledger.sizes().get(witness, 0)
            ledger.ingest([world.money(world.drivers[0], 100, int(clock())).encode()])
            await clock.sleep(3600)
            second = ledger.sizes().get(witness, 0)
            clock.advance(30 * 86_400)  # a month asleep, nothing new: nothing to witness
            await clock.sleep(3600)
            third = ledger.sizes().get(witness, 0)
            nursery.cancel_scope.cancel()
        return first, second, third

    assert run_mocked(scenario) == (1, 2, 2)
    [envelope] = ledger.entries(world.witness.public_key, 1, 2)
    checkpoint = Checkpoint.decode(p.Signed.decode(envelope, Entry).message.body)
    assert checkpoint.cut(members_at(ledger, checkpoint.coop_size))[world.treasurer.public_key] == 1  # the deposit
