"""The other entry kinds: fees, withdrawals, adjustments, checkpoints and disputes."""

import pytest

from wattshare import protocol as p
from wattshare.ledger import (
    Adjustment,
    Checkpoint,
    EntryKind,
    EntryRefused,
    FeeClaim,
    HeadRef,
    LedgerStore,
    MoneyMove,
    Rule,
    audit,
)
from wattshare.ledger._sample import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600


@pytest.fixture
def setup(tmp_path):
    world = SampleWorld(seed=31)
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key)
    store.ingest([world.charter_entry().encode(), world.money(world.drivers[0], 10_000, EPOCH + 1).encode()])
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
    treasurer = store.state.feeds[world.treasurer.public_key]
    good = HeadRef(author=world.treasurer.public_key, size=1, root=treasurer.log.root())
    entry = world.entry(world.witness, EntryKind.CHECKPOINT, Checkpoint(charter=world.charter, heads=(good,)), EPOCH + 9)
    store.ingest([entry.encode()])
    report = audit(store.path)
    assert report.ok and report.checkpoints == 1
    wrong = HeadRef(author=world.treasurer.public_key, size=1, root=bytes(32))
    store.ingest([world.entry(world.witness, EntryKind.CHECKPOINT, Checkpoint(charter=world.charter, heads=(wrong,)),
                              EPOCH + 10).encode()])
    assert [v.rule for v in audit(store.path).violations] == [Rule.HEAD_MISMATCH]


def test_checkpoint_by_a_non_witness(setup):
    world, store = setup
    ref = HeadRef(author=world.treasurer.public_key, size=1, root=bytes(32))
    entry = world.entry(world.treasurer, EntryKind.CHECKPOINT, Checkpoint(charter=world.charter, heads=(ref,)), EPOCH)
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
