"""Membership and credit holds (`ledger/_state.py`): what a host may still let a
driver book, from the driver's own feed, whatever order the entries arrive in."""

import pytest

from wattshare import protocol as p
from wattshare.ledger import (
    HOLD_LAPSE,
    Adjustment,
    EntryKind,
    EntryRefused,
    Hold,
    LedgerStore,
    Release,
    Replicator,
    Rule,
    audit,
    sync,
)
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600
LATER = NIGHT + 30 * 86_400  # the ledgers' clock: after every entry below


@pytest.fixture
def world_and_store(tmp_path):
    world = SampleWorld(seed=51)
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=lambda: LATER)
    store.ingest([*(e.encode() for e in world.founding(credit_limit=5_000))])  # every host and driver: 50.00 EUR
    return world, store


def hold(world, session, t=EPOCH + 60):
    driver = next(d for d in world.drivers if d.public_key == session.booking.request.message.driver)
    return world.entry(driver, EntryKind.HOLD, Hold(request=session.booking.request), t)


def test_each_hold_counts_against_the_holds_made_before_it_until_claimed_released_or_lapsed(world_and_store):
    world, store = world_and_store
    driver = world.drivers[0].public_key
    sessions = [world.session(world.hosts[i], world.drivers[0], NIGHT + 3600 * i, spend_cap=2_000) for i in range(3)]
    holds = [hold(world, s) for s in sessions]
    store.ingest([h.encode() for h in holds])
    seqs = [store.state.hold(driver, s.booking.id)[0] for s in sessions]
    assert [store.state.available(driver, "EUR", NIGHT, before=seq) for seq in seqs] == [5_000, 3_000, 1_000]
    assert store.state.available(driver, "EUR", NIGHT) == -1_000  # the third host must refuse it

    rejection = p.sign(world.hosts[1], p.BookingRejection(booking_id=sessions[1].booking.id, reason=p.Reason.SLOT_TAKEN))
    release = Release(request=sessions[1].booking.request, rejection=rejection)
    store.ingest([world.entry(world.drivers[0], EntryKind.RELEASE, release, EPOCH + 120).encode(),
                  world.settlement_entry(sessions[0]).encode()])
    paid = sessions[0].settlement.message.amount
    assert store.state.hold(driver, sessions[0].booking.id) is None  # claimed: the balance carries it now
    assert store.state.available(driver, "EUR", NIGHT) == 5_000 - paid - 2_000
    lapsed = sessions[2].booking.request.message.end + HOLD_LAPSE
    assert store.state.available(driver, "EUR", lapsed) == 5_000 - paid
    store.close()
    reopened = LedgerStore(store.path, world.coop.public_key, clock=world.clock)  # holds are rebuilt from the feeds
    assert reopened.state.available(driver, "EUR", NIGHT) == 5_000 - paid - 2_000


def test_a_hold_or_release_nobody_may_write_is_refused(world_and_store):
    world, store = world_and_store
    session = world.session(world.hosts[0], world.drivers[0], NIGHT)
    borrowed = world.entry(world.drivers[1], EntryKind.HOLD, Hold(request=session.booking.request), EPOCH)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([borrowed.encode()])
    assert caught.value.rule is Rule.WRONG_AUTHOR
    self_rejected = p.sign(world.drivers[0], p.BookingRejection(booking_id=session.booking.id, reason=p.Reason.DECLINED))
    forged = world.entry(world.drivers[0], EntryKind.RELEASE,
                         Release(request=session.booking.request, rejection=self_rejected), EPOCH)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([forged.encode()])
    assert caught.value.rule is Rule.WRONG_AUTHOR and "its host's rejection" in caught.value.detail


def test_keys_the_coop_has_not_admitted_get_no_credit_and_their_feeds_are_not_wanted(world_and_store, tmp_path):
    world, store = world_and_store
    stranger = p.Identity.generate()
    assert store.state.credit_limit(stranger.public_key) == 0 and not store.state.is_member(stranger.public_key)
    assert store.state.credit_limit(world.drivers[0].public_key) == 5_000
    theirs = LedgerStore(tmp_path / "theirs.db", world.coop.public_key, clock=lambda: LATER)
    theirs.ingest([world.charter.encode()])
    theirs.append(stranger, [(EntryKind.ACK, p.SettlementAck(booking_id=bytes(32), settlement=bytes(32), t=NIGHT))])
    theirs.append(world.drivers[0], [(EntryKind.ACK, p.SettlementAck(booking_id=bytes(32), settlement=bytes(32),
                                                                      t=NIGHT))])
    sync(Replicator(theirs), Replicator(store))
    assert stranger.public_key not in store.sizes() and store.sizes()[world.drivers[0].public_key] == 1


def test_a_fresh_ledger_learns_the_members_and_fetches_their_feeds_in_one_sync(world_and_store, tmp_path):
    world, store = world_and_store
    store.ingest([world.money(world.drivers[0], 700, EPOCH + 60).encode()])
    fresh = LedgerStore(tmp_path / "fresh.db", world.coop.public_key, clock=lambda: LATER)
    assert sync(Replicator(store), Replicator(fresh)) == (0, 8)  # the charter and six admissions, then the deposit
    assert fresh.balance(world.drivers[0].public_key, "EUR") == 700


def test_audit_names_a_member_owing_more_than_its_credit(world_and_store):
    world, store = world_and_store
    session = world.session(world.hosts[0], world.drivers[1], NIGHT, spend_cap=5_000, hours=9, power_w=11_000)
    store.ingest([world.settlement_entry(session).encode()])
    owed = session.settlement.message.amount
    adjustment = world.entry(world.treasurer, EntryKind.ADJUSTMENT, Adjustment(
        charter=world.charter, booking_id=session.booking.id, payer=world.drivers[1].public_key,
        payee=world.hosts[0].public_key, amount=5_001 - owed, currency="EUR"), NIGHT)  # one cent past the limit
    store.ingest([adjustment.encode()])
    report = audit(store.path)
    assert [(v.rule, v.author) for v in report.violations] == [(Rule.OVER_CREDIT, world.drivers[1].public_key)]
