"""The other entry kinds: fees, withdrawals, adjustments, checkpoints and disputes."""

import pytest

from wattshare import protocol as p
from wattshare.ledger import (
    Adjustment,
    Checkpoint,
    Entry,
    EntryKind,
    EntryRefused,
    FeeClaim,
    LedgerStore,
    MoneyMove,
    Role,
    Rule,
    audit,
    check_entry,
    members_at,
)
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600


@pytest.fixture
def setup(tmp_path):
    world = SampleWorld(seed=31)
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    store.ingest([*(e.encode() for e in world.founding()), world.money(world.drivers[0], 10_000, EPOCH + 1).encode()])
    return world, store


def booking(world, start=NIGHT):
    session = world.session(world.hosts[0], world.drivers[0], start)
    return session.booking


def fee_entry(world, cancel=None, no_show=None, amount=200, book=None, t=None):
    """A host's fee claim, dated when its cancel or no-show was (or at `t`)."""
    claim = FeeClaim(booking=book, cancel=cancel, no_show=no_show, amount=amount)
    return world.entry(world.hosts[0], EntryKind.FEE, claim, (cancel or no_show).message.t if t is None else t)


def test_late_cancel_fee(setup):
    world, store = setup
    b = booking(world)
    cancel = p.sign(world.drivers[0], p.Cancel(booking_id=b.id, t=NIGHT - 30 * 60))  # inside the 60-minute limit
    store.ingest([fee_entry(world, cancel=cancel, amount=200, book=b).encode()])
    assert store.balance(world.hosts[0].public_key, "EUR") == 200
    assert store.balance(world.drivers[0].public_key, "EUR") == 10_000 - 200
    assert audit(store.path).ok


@pytest.mark.parametrize("minutes_before, who, amount", [(120, 0, 200), (30, 0, 150), (30, "host", 200)])
def test_fees_the_terms_do_not_give(setup, minutes_before, who, amount):
    world, store = setup
    b = booking(world)
    signer = world.hosts[0] if who == "host" else world.drivers[0]
    cancel = p.sign(signer, p.Cancel(booking_id=b.id, t=NIGHT - minutes_before * 60))
    with pytest.raises(EntryRefused) as caught:
        store.ingest([fee_entry(world, cancel=cancel, amount=amount, book=b).encode()])
    assert caught.value.rule is Rule.BAD_FEE


def test_no_show_fee_and_one_claim_per_booking(setup):
    world, store = setup
    b = booking(world)
    no_show = p.sign(world.hosts[0], p.NoShow(booking_id=b.id, t=NIGHT + 3600))
    store.ingest([fee_entry(world, no_show=no_show, amount=300, book=b).encode()])
    assert store.balance(world.hosts[0].public_key, "EUR") == 300
    again = fee_entry(world, no_show=no_show, amount=300, book=b)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([again.encode()])
    assert caught.value.rule is Rule.DUPLICATE_CLAIM


def test_a_no_show_fee_claimed_before_the_no_show_is_refused(setup):
    world, store = setup
    b = booking(world)
    no_show = p.sign(world.hosts[0], p.NoShow(booking_id=b.id, t=NIGHT + 3600))  # dated after the timeout ...
    early = fee_entry(world, no_show=no_show, amount=300, book=b, t=NIGHT - 600)  # ... claimed before the window
    with pytest.raises(EntryRefused) as caught:
        store.ingest([early.encode()])
    assert caught.value.rule is Rule.BAD_FEE and "predates" in caught.value.detail
    assert store.balance(world.hosts[0].public_key, "EUR") == 0


def test_withdrawal_and_adjustment_move_money_and_conserve(setup):
    world, store = setup
    withdrawal = world.money(world.drivers[0], 2_500, EPOCH + 5, kind=EntryKind.WITHDRAWAL)
    adjust = Adjustment(charter=world.charter, booking_id=bytes(32), payer=world.drivers[0].public_key,
                        payee=world.hosts[1].public_key, amount=700, currency="EUR", note="dispute settled")
    store.ingest([withdrawal.encode(), world.entry(world.treasurer, EntryKind.ADJUSTMENT, adjust, EPOCH + 6).encode()])
    assert store.balance(world.drivers[0].public_key, "EUR") == 10_000 - 2_500 - 700
    assert store.balance(world.hosts[1].public_key, "EUR") == 700
    assert store.state.money_in["EUR"] == 7_500 and store.state.conserved()
    assert audit(store.path).ok


def test_checkpoint_by_the_witness_is_checked_against_the_feeds(setup):
    world, store = setup
    coop, treasurer = world.coop.public_key, world.treasurer.public_key
    store.ingest([world.checkpoint(store, EPOCH + 9, {coop: store.state.size(coop), treasurer: 1}).encode()])
    report = audit(store.path)
    assert report.ok and report.checkpoints == 1
    honest = world.checkpoint_body(store, EPOCH + 10)
    names = members_at(store, honest.coop_size)
    beyond = honest.replace(sizes=Checkpoint.pack_sizes([n + (k == treasurer) for k, n in honest.cut(names).items()]))
    store.ingest([world.entry(world.witness, EntryKind.CHECKPOINT, beyond, EPOCH + 10).encode(),
                  world.entry(world.witness, EntryKind.CHECKPOINT, honest.replace(accounts=bytes(32)), EPOCH + 11).encode()])
    violations = audit(store.path).violations
    assert [v.rule for v in violations] == [Rule.HEAD_MISMATCH] * 2
    assert "holds fewer of" in violations[0].detail and "accounts differ" in violations[1].detail


def test_only_the_coops_key_admits_members(setup):
    world, store = setup
    stranger = p.Identity.generate().public_key
    forged = world.entry(world.treasurer, EntryKind.ADMIT, world.charter_body().admission(stranger, 10**9), EPOCH + 5)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([forged.encode()])
    assert caught.value.rule is Rule.UNTRUSTED_COOP and not store.state.is_member(stranger)


def test_checkpoint_by_a_non_witness(setup):
    world, store = setup
    entry = world.checkpoint(store, EPOCH, witness=world.treasurer)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([entry.encode()])
    assert caught.value.rule is Rule.NOT_WITNESS


def test_dispute_of_a_settlement(setup):
    world, store = setup
    session = world.session(world.hosts[0], world.drivers[0], NIGHT)
    dispute = p.Dispute(booking_id=session.booking.id, settlement=session.settlement.digest, t=NIGHT + 86_400,
                        reason=p.Reason.MISPRICED, detail="the car showed 18 kWh")
    store.ingest([world.settlement_entry(session).encode(),
                  world.entry(world.drivers[0], EntryKind.DISPUTE, dispute, NIGHT + 86_400).encode()])
    assert audit(store.path).ok


def test_money_in_another_currency_than_the_coops(setup):
    world, store = setup
    move = MoneyMove(charter=world.charter, member=world.drivers[0].public_key, amount=5, currency="GBP")
    with pytest.raises(EntryRefused) as caught:
        store.ingest([world.entry(world.treasurer, EntryKind.DEPOSIT, move, EPOCH + 3).encode()])
    assert caught.value.rule is Rule.MALFORMED


def test_a_retired_treasurer_minting_with_its_old_charter_moves_nothing_whatever_it_dates_or_arrives_first(tmp_path):
    """The attack of a removed treasurer: a deposit to itself, signed with the charter that
    still named it and backdated before its removal. Whether it counts follows the feeds'
    order (the co-op retired it at its feed size), so it moves nothing on a ledger that
    knew of the retirement first, and is voided on one that took the deposit first."""
    world = SampleWorld(seed=32)
    thief = world.treasurer
    old_charter = world.charter_entry()
    honest = world.money(world.drivers[0], 10_000, EPOCH + 60)  # thief's seq 0: before its removal
    newcomer = world.identity("treasurer", 1)
    retired = world.charter_body().replace(treasurers=(thief.public_key, newcomer.public_key)) \
        .retire(thief.public_key, Role.TREASURER, until=1)
    removal = world.entry(world.coop, EntryKind.COOP, retired, EPOCH + 3600)
    mint = world.entry(thief, EntryKind.DEPOSIT, MoneyMove(charter=old_charter, member=thief.public_key,
                                                           amount=10**6, currency="EUR"), EPOCH + 120)
    informed = LedgerStore(tmp_path / "informed.db", world.coop.public_key, clock=world.clock)
    informed.ingest([old_charter.encode(), honest.encode(), removal.encode()])
    informed.ingest([mint.encode()])
    late = LedgerStore(tmp_path / "late.db", world.coop.public_key, clock=world.clock)
    late.ingest([old_charter.encode(), honest.encode()])
    late.ingest([mint.encode()])
    assert late.balance(thief.public_key, "EUR") == 10**6  # the removal has not reached it yet
    late.ingest([removal.encode()])
    for store in (informed, late):
        assert store.balance(thief.public_key, "EUR") == 0
        assert store.balance(world.drivers[0].public_key, "EUR") == 10_000  # its deposits before removal stand
        assert store.state.size(thief.public_key) == 2  # the mint stays in the chain, so feeds still converge
        report = audit(store.path)
        assert [(v.rule, v.author, v.seq) for v in report.violations] == [(Rule.NOT_TREASURER, thief.public_key, 1)]
    late.close()
    reopened = LedgerStore(tmp_path / "late.db", world.coop.public_key, clock=world.clock)  # voided after a restart too
    assert reopened.balance(thief.public_key, "EUR") == 0 and reopened.state.void(check_entry(mint.encode()))


@pytest.mark.parametrize("change, problem", [
    (lambda c, key: c.replace(retired=()), "forgets a retirement"),
    (lambda c, key: c.replace(treasurers=(key,)), "without retiring it"),
])
def test_a_charter_must_keep_retirements_and_retire_what_it_drops(tmp_path, change, problem):
    world = SampleWorld(seed=33)
    newcomer = world.identity("treasurer", 1).public_key
    first = world.charter_body().replace(treasurers=(world.treasurer.public_key, world.witness.public_key, newcomer))
    second = first.retire(world.witness.public_key, Role.TREASURER, until=0)
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    store.append(world.coop, [(EntryKind.COOP, first)], t=EPOCH)
    store.append(world.coop, [(EntryKind.COOP, second)], t=EPOCH + 1)
    with pytest.raises(EntryRefused) as caught:
        store.append(world.coop, [(EntryKind.COOP, change(second, newcomer))], t=EPOCH + 2)
    assert caught.value.rule is Rule.BAD_CHARTER and problem in caught.value.detail
    assert store.state.charter[1] == second
    with pytest.raises(p.InvalidValue, match="cannot hold that role again"):
        second.replace(treasurers=second.treasurers + (world.witness.public_key,))


def test_entry_times_never_go_back_in_a_feed_nor_run_ahead_of_the_clock(tmp_path):
    world = SampleWorld(seed=34)
    now = [EPOCH + 3600]
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=lambda: now[0])
    store.ingest([*(e.encode() for e in world.founding()), world.money(world.drivers[0], 500, EPOCH + 600).encode()])
    body = world.money(world.drivers[0], 1, 0).message.body
    earlier = p.sign(world.treasurer, Entry(author=world.treasurer.public_key, seq=1,
                                            prev=store.state.feeds[world.treasurer.public_key].tip, t=EPOCH + 599,
                                            kind=EntryKind.DEPOSIT, body=body))
    with pytest.raises(EntryRefused) as caught:
        store.ingest([earlier.encode()])
    assert caught.value.rule is Rule.BAD_TIME and "before the feed's previous entry" in caught.value.detail
    ahead = world.entry(world.hosts[0], EntryKind.ACK, p.SettlementAck(booking_id=bytes(32), settlement=bytes(32),
                                                                       t=now[0] + 301), now[0] + 301)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([ahead.encode()])
    assert caught.value.rule is Rule.BAD_TIME and "ahead of this ledger's clock" in caught.value.detail
    now[0] += 1  # once the clock is within the skew, the same entry is taken: it was early, not forged
    assert store.ingest([ahead.encode()]).added == 1


def test_a_settlement_in_another_currency_than_the_coops_is_refused(setup):
    world, store = setup
    world.tariff = world.tariff.replace(currency="GBP")
    session = world.session(world.hosts[0], world.drivers[0], NIGHT)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([world.settlement_entry(session).encode()])
    assert caught.value.rule is Rule.MALFORMED and "another currency than the co-op's EUR" in caught.value.detail
    assert store.balance(world.hosts[0].public_key, "GBP") == 0


def test_only_the_bookings_driver_disputes_a_fee_without_dangling(setup):
    world, store = setup
    b = booking(world)
    cancel = p.sign(world.drivers[0], p.Cancel(booking_id=b.id, t=NIGHT - 30 * 60))
    fee = fee_entry(world, cancel=cancel, amount=200, book=b)
    store.ingest([fee.encode()])
    assert store.fee_claim(b.id) == (fee.digest, fee.message.t)
    for who in (world.drivers[0], world.drivers[1]):
        dispute = p.Dispute(booking_id=b.id, settlement=fee.digest, t=NIGHT, reason=p.Reason.BAD_TIME)
        store.ingest([world.entry(who, EntryKind.DISPUTE, dispute, NIGHT).encode()])
    report = audit(store.path)
    assert [(v.rule, v.author) for v in report.violations] == [(Rule.DANGLING, world.drivers[1].public_key)]
