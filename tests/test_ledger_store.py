"""The ledger store: ingest, balances, conservation, forks, atomic batches, bad input."""

import os
import random
import signal
import sqlite3
import subprocess
import sys

import nacl.signing
import pytest

from wattshare import protocol as p
from wattshare.ledger import (
    EntryKind,
    EntryRefused,
    FeedHead,
    LedgerStore,
    MoneyMove,
    Rule,
    SettlementClaim,
    StoreError,
    audit,
    check_entry,
    movements,
)
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600


def dump(store: LedgerStore) -> str:
    return "\n".join(store.db.conn.iterdump())


@pytest.fixture
def world():
    return SampleWorld(seed=7)


@pytest.fixture
def store(tmp_path, world):
    s = LedgerStore(tmp_path / "ledger.db", world.coop.public_key, clock=world.clock)
    yield s
    s.close()


def base_entries(world):
    host, driver = world.hosts[0], world.drivers[0]
    entries = [world.charter_entry(), world.money(driver, 10_000, EPOCH + 10)]
    session = world.session(host, driver, NIGHT)
    entries += [world.settlement_entry(session), world.ack_entry(session)]
    return entries, session


def test_settlement_moves_money_and_conserves(store, world):
    entries, session = base_entries(world)
    report = store.ingest([e.encode() for e in entries])
    assert report.added == 4
    amount = session.settlement.message.amount
    # 22:00-01:00 at 7.2 kW: 7.2 kWh peak x 0.30 + 14.4 kWh off-peak x 0.12 = 2.16 + 1.728 -> 3.89 (lines round half up)
    assert amount == 216 + 173
    assert store.balance(world.drivers[0].public_key, "EUR") == 10_000 - amount
    assert store.balance(world.hosts[0].public_key, "EUR") == amount
    assert store.state.conserved()
    assert store.state.money_in["EUR"] == 10_000
    driver = world.drivers[0].public_key
    assert store.state.credit_limit(driver) == 0 and not store.state.is_member(driver)  # not admitted yet
    store.ingest([world.entry(world.coop, EntryKind.ADMIT, world.charter_body().admission(driver), EPOCH + 20).encode()])
    assert store.state.credit_limit(driver) == 5_000 and store.state.is_member(driver)  # the charter's default
    store.ingest([world.entry(world.coop, EntryKind.ADMIT, world.charter_body().admission(driver, 900), EPOCH + 30).encode()])
    assert store.state.credit_limit(driver) == 900
    store.close()
    assert LedgerStore(store.path, world.coop.public_key, clock=world.clock).state.credit_limit(driver) == 900


def test_a_members_history_adds_up_to_its_balance(store, world):
    entries, session = base_entries(world)
    store.ingest([e.encode() for e in entries])
    host, driver = world.hosts[0].public_key, world.drivers[0].public_key
    amount = session.settlement.message.amount
    booking = session.booking.id
    assert [(m.kind, m.booking_id, m.delta) for m in movements(store, driver)] == [
        (EntryKind.DEPOSIT, None, 10_000), (EntryKind.SETTLEMENT, booking, -amount)]
    assert [(m.kind, m.author, m.currency, m.delta) for m in movements(store, host)] == [
        (EntryKind.SETTLEMENT, host, "EUR", amount)]
    for member in (host, driver):
        assert sum(m.delta for m in movements(store, member)) == store.balance(member, "EUR")
    assert movements(store, world.coop.public_key) == []


def test_a_members_history_reads_only_the_entries_that_move_its_money(store, world, monkeypatch):
    """A year of a big co-op's ledger must not be re-verified to show one member's page:
    the `party` column (audited) picks the member's entries, adjustments aside."""
    import wattshare.ledger._history as history

    entries, session = base_entries(world)
    others = [world.session(world.hosts[1], world.drivers[1], NIGHT + d * 86_400) for d in range(1, 4)]
    store.ingest([e.encode() for e in entries] + [world.money(world.drivers[1], 9_000, EPOCH + 5).encode()]
                 + [world.settlement_entry(s).encode() for s in others])
    read = []
    monkeypatch.setattr(history, "check_entry", lambda envelope: read.append(envelope) or check_entry(envelope))
    driver = world.drivers[0].public_key
    assert [m.kind for m in movements(store, driver)] == [EntryKind.DEPOSIT, EntryKind.SETTLEMENT]
    assert len(read) == 2  # not the other driver's deposit, nor its three settlements
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE entries SET party = NULL WHERE kind = 'settlement' AND party = ?", [driver])
    assert [(v.rule, v.author) for v in audit(store.path).violations] == [(Rule.MALFORMED, world.hosts[0].public_key)]


def test_reopen_restores_the_same_state(tmp_path, world):
    entries, _ = base_entries(world)
    first = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    first.ingest([e.encode() for e in entries])
    sizes, balances = first.sizes(), dict(first.state.balances)
    first.close()
    again = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    assert again.sizes() == sizes
    assert dict(again.state.balances) == balances
    assert again.state.charter is not None and again.state.charter[1].name.startswith("Acacia")
    assert again.state.claims.keys() == {SettlementClaim.decode(entries[2].message.body).booking.id}


def test_ingest_is_idempotent_and_order_independent(tmp_path, world):
    entries, _ = base_entries(world)
    more = [world.money(world.drivers[1], 500 * i, EPOCH + 100 + i) for i in range(1, 6)]
    all_entries = [e.encode() for e in entries + more]
    a = LedgerStore(tmp_path / "a.db", world.coop.public_key, clock=world.clock)
    a.ingest(all_entries)
    assert a.ingest(all_entries).duplicates == len(all_entries)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    shuffled = all_entries[:]
    random.Random(3).shuffle(shuffled)
    b.ingest(shuffled)
    assert a.sizes() == b.sizes()
    assert dict(a.state.balances) == dict(b.state.balances)


def refused(store, envelopes, rule):
    before = dump(store)
    with pytest.raises(EntryRefused) as caught:
        store.ingest(envelopes)
    assert caught.value.rule is rule, caught.value
    assert dump(store) == before
    return caught.value


def test_tampered_bytes(store, world):
    entries, _ = base_entries(world)
    store.ingest([entries[0].encode()])
    data = bytearray(entries[1].encode())
    data[-10] ^= 0x01  # inside the body: the signature no longer covers it
    refused(store, [bytes(data)], Rule.SIGNATURE)
    refused(store, [b"\xa1\x61x\x00"], Rule.MALFORMED)


def test_wrong_signature(store, world):
    charter = world.charter_entry()
    forged = p.encode_cbor({**charter.to_wire(), "sig": world.hosts[0].sign(b"something else")})
    refused(store, [forged], Rule.SIGNATURE)


def test_gap_in_seq_and_wrong_prev(store, world):
    charter = world.charter_entry()
    d1 = world.money(world.drivers[0], 100, EPOCH + 1)
    d2 = world.money(world.drivers[0], 100, EPOCH + 2)
    store.ingest([charter.encode()])
    refused(store, [d2.encode()], Rule.SEQ_GAP)
    store.ingest([d1.encode()])
    wrong_prev = p.sign(world.treasurer, d2.message.replace(prev=bytes(32)))
    refused(store, [wrong_prev.encode()], Rule.PREV_MISMATCH)
    store.ingest([d2.encode()])


def claim_entry(world, host, session, **changes):
    claim = SettlementClaim(booking=session.booking, receipts=session.receipts, settlement=session.settlement)
    return world.entry(host, EntryKind.SETTLEMENT, claim.replace(**changes), session.settlement.message.t)


def resettle(host, session, **changes):
    return p.sign(host, session.settlement.message.replace(**changes))


def test_settlement_over_the_cap_or_mispriced(store, world):
    host, driver = world.hosts[0], world.drivers[0]
    small = world.session(host, driver, NIGHT, spend_cap=100)
    assert small.settlement.message.amount == 100  # capped by the protocol
    lines = small.settlement.message.breakdown[:-1]  # drop the SPEND_CAP line: uncapped claim
    over = resettle(host, small, amount=sum(line.amount for line in lines), breakdown=lines)
    refused(store, [claim_entry(world, host, small, settlement=over).encode()], Rule.OVER_CAP)

    world2 = SampleWorld(seed=7)
    fair = world2.session(world2.hosts[0], world2.drivers[0], NIGHT)
    first = fair.settlement.message.breakdown[0]
    padded = (first.replace(amount=first.amount + 1),) + fair.settlement.message.breakdown[1:]
    bad = resettle(world2.hosts[0], fair, amount=fair.settlement.message.amount + 1, breakdown=padded)
    refused(store, [claim_entry(world2, world2.hosts[0], fair, settlement=bad).encode()], Rule.MISPRICED)


def test_second_settlement_of_a_booking(store, world):
    host, driver = world.hosts[0], world.drivers[0]
    session = world.session(host, driver, NIGHT)
    store.ingest([world.settlement_entry(session).encode()])
    refused(store, [world.settlement_entry(session).encode()], Rule.DUPLICATE_CLAIM)


def test_settlement_by_someone_else_than_the_host(store, world):
    session = world.session(world.hosts[0], world.drivers[0], NIGHT)
    refused(store, [claim_entry(world, world.hosts[1], session).encode()], Rule.WRONG_AUTHOR)


def test_deposit_by_a_non_treasurer(store, world):
    charter = world.charter_entry()
    store.ingest([charter.encode()])
    move = MoneyMove(charter=charter, member=world.drivers[0].public_key, amount=10**6, currency="EUR")
    refused(store, [world.entry(world.drivers[0], EntryKind.DEPOSIT, move, EPOCH).encode()], Rule.NOT_TREASURER)


def test_deposit_under_a_charter_of_another_coop(store, world):
    impostor = SampleWorld(seed=99)
    impostor.treasurer = world.treasurer  # names our treasurer, but is not our co-op
    charter = impostor.charter_entry()
    move = MoneyMove(charter=charter, member=world.drivers[0].public_key, amount=10**6, currency="EUR")
    refused(store, [world.entry(world.treasurer, EntryKind.DEPOSIT, move, EPOCH).encode()], Rule.UNTRUSTED_COOP)


def test_a_bad_entry_refuses_the_whole_batch(store, world):
    entries, _ = base_entries(world)
    bad = bytearray(entries[3].encode())
    bad[-5] ^= 0x40
    refused(store, [e.encode() for e in entries[:3]] + [bytes(bad)], Rule.SIGNATURE)
    assert store.sizes() == {}


def test_fork_is_kept_as_fraud_proof_and_freezes_the_feed(store, world):
    charter = world.charter_entry()
    d1 = world.money(world.drivers[0], 100, EPOCH + 1)
    d2 = world.money(world.drivers[0], 200, EPOCH + 2)
    store.ingest([charter.encode(), d1.encode(), d2.encode()])
    assert store.balance(world.drivers[0].public_key, "EUR") == 300
    other = p.sign(world.treasurer, d2.message.replace(body=MoneyMove.decode(d2.message.body).replace(amount=999).encode()))
    report = store.ingest([other.encode()])
    assert report.forks == [(world.treasurer.public_key, 1)]
    assert store.balance(world.drivers[0].public_key, "EUR") == 0  # nothing of a forked feed counts
    assert store.state.conserved()
    assert store.frauds() == [tuple(sorted((d2.encode(), other.encode())))]
    assert store.ingest([world.money(world.drivers[0], 5, EPOCH + 3).encode()]).ignored == 1
    reopened = LedgerStore(store.path, world.coop.public_key, clock=world.clock)
    assert reopened.balance(world.drivers[0].public_key, "EUR") == 0
    assert reopened.state.feeds[world.treasurer.public_key].frozen


def test_fork_evidence_converges_whichever_branch_came_first(tmp_path, world):
    charter = world.charter_entry()
    d1 = world.money(world.drivers[0], 100, EPOCH + 1)
    other = p.sign(world.treasurer, d1.message.replace(t=EPOCH + 9))
    a = LedgerStore(tmp_path / "a.db", world.coop.public_key, clock=world.clock)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    a.ingest([charter.encode(), d1.encode()])
    a.ingest([other.encode()])
    b.ingest([charter.encode(), other.encode()])
    b.ingest([d1.encode()])
    assert a.sizes() == b.sizes() and dict(a.state.balances) == dict(b.state.balances)


def test_crash_in_the_middle_of_a_batch_leaves_the_store_as_before(store, world):
    entries, _ = base_entries(world)
    store.ingest([entries[0].encode()])
    # the entries are written, then the balances write fails (a full disk, say)
    store.db.execute("CREATE TRIGGER full_disk BEFORE INSERT ON balances BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    before = dump(store)
    with pytest.raises(Exception, match="disk full"):
        store.ingest([e.encode() for e in entries[1:]])
    assert dump(store) == before
    assert store.sizes() == {world.coop.public_key: 1}
    store.db.execute("DROP TRIGGER full_disk")
    store.ingest([e.encode() for e in entries[1:]])
    assert store.state.conserved()


KILLED_INGEST = """
import sys
from wattshare.ledger import LedgerStore
from wattshare.testing import SampleWorld, EPOCH
world = SampleWorld(seed=5)
store = LedgerStore(sys.argv[1], world.coop.public_key, clock=world.clock)
store.ingest([*(e.encode() for e in world.founding())])
batch = [world.money(world.drivers[0], 1, EPOCH + i).encode() for i in range(4000)]
while True:
    print("ingesting", flush=True)
    store.ingest(batch)
    print("committed", flush=True)
    batch = [world.money(world.drivers[0], 1, EPOCH + i).encode() for i in range(4000)]
"""


def test_kill_9_during_ingest_leaves_whole_batches_only(tmp_path):
    path = tmp_path / "killed.db"
    child = subprocess.Popen([sys.executable, "-c", KILLED_INGEST, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        lines = [child.stdout.readline().strip() for _ in range(3)]
        assert lines == ["ingesting", "committed", "ingesting"]  # killed inside the second batch's ingest
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    world = SampleWorld(seed=5)
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    size = store.sizes()[world.treasurer.public_key]
    assert size >= 4000 and size % 4000 == 0  # whole batches, never part of one
    assert store.balance(world.drivers[0].public_key, "EUR") == size
    assert store.state.conserved()


def test_heads_are_signed_and_checked(store, world):
    store.ingest([*(e.encode() for e in world.founding())])
    appended = store.append(world.treasurer, [(EntryKind.DEPOSIT, MoneyMove(
        charter=world.charter, member=world.drivers[0].public_key, amount=50, currency="EUR"))], t=EPOCH + 5)
    heads = {h.message.author: h for h in store.heads()}
    head = heads[world.treasurer.public_key].message
    assert (head.size, head.root) == (1, store.state.feeds[world.treasurer.public_key].log.root())
    assert appended[0].message.seq == 0
    lying = p.sign(world.treasurer, FeedHead(author=head.author, size=1, root=bytes(32), t=EPOCH + 6))
    with pytest.raises(EntryRefused) as caught:
        store.ingest_head(lying.encode())
    assert caught.value.rule is Rule.HEAD_MISMATCH
    ahead = p.sign(world.treasurer, FeedHead(author=head.author, size=5, root=bytes(32), t=EPOCH + 6))
    assert store.ingest_head(ahead) is False


def test_kept_heads_are_read_back_without_checking_their_signatures_again(store, world, monkeypatch):
    """`ingest_head` verified each head it kept: reading them back (every Have a node
    sends) costs no signature check, but a row whose envelope another key signed is
    checked, and left out when it fails."""
    store.ingest([*(e.encode() for e in world.founding())])
    store.append(world.coop, [(EntryKind.ADMIT, world.charter_body().admission(world.hosts[0].public_key))],
                 t=EPOCH + 5)
    store.append(world.treasurer, [(EntryKind.DEPOSIT, MoneyMove(
        charter=world.charter, member=world.drivers[0].public_key, amount=50, currency="EUR"))], t=EPOCH + 5)
    checks = []
    verify = nacl.signing.VerifyKey.verify
    monkeypatch.setattr(nacl.signing.VerifyKey, "verify", lambda key, *a: checks.append(key) or verify(key, *a))
    assert {h.message.author for h in store.heads()} == {world.coop.public_key, world.treasurer.public_key}
    assert checks == []
    envelope = bytearray(store.db.execute("SELECT envelope FROM heads WHERE author = ?",
                                          [world.treasurer.public_key]).fetchone()[0])
    envelope[8] ^= 1  # in its signature
    store.db.execute("UPDATE heads SET envelope = ? WHERE author = ?", [bytes(envelope), world.coop.public_key])
    assert [h.message.author for h in store.heads()] == [world.treasurer.public_key]  # the co-op's row: left out
    assert len(checks) == 1  # the row signed by another key than its author's, and only that one, was checked


def test_wrong_coop_and_garbage_files(tmp_path, world):
    LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock).close()
    with pytest.raises(StoreError, match="another co-op"):
        LedgerStore(tmp_path / "l.db", world.hosts[0].public_key)
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match="not a usable ledger"):
        LedgerStore(junk, world.coop.public_key, clock=world.clock)


def test_only_the_bookings_own_driver_can_dent_a_hosts_record(store, world):
    from wattshare.protocol import Dispute

    host, driver, stranger = world.hosts[0], world.drivers[0], world.drivers[1]
    store.ingest([*(e.encode() for e in world.founding())])
    sessions = [world.session(host, driver, EPOCH + day * 86_400 + 22 * 3600) for day in range(3)]
    store.ingest([world.settlement_entry(s).encode() for s in sessions])

    def dispute(by, session, settlement=None, t=EPOCH + 10 * 86_400):
        body = Dispute(booking_id=session.booking.id, settlement=settlement or session.settlement.digest,
                       reason=p.Reason.MISPRICED, t=t)
        return world.entry(by, EntryKind.DISPUTE, body, t).encode()

    store.ingest([dispute(stranger, sessions[0]), dispute(stranger, sessions[1])])  # anyone may write, but ...
    assert store.track_record(host.public_key) == (3, 0)  # ... a stranger's disputes do not count
    store.ingest([dispute(driver, sessions[0], settlement=bytes(32))])  # the driver, of another settlement
    assert store.track_record(host.public_key) == (3, 0)
    store.ingest([dispute(driver, sessions[1], t=EPOCH + 11 * 86_400)])
    assert store.track_record(host.public_key) == (3, 1)  # the booking's driver, of the claimed settlement


def test_a_price_bomb_twenty_years_long_is_refused_before_anything_is_priced(store, world, monkeypatch):
    import wattshare.protocol._session as session_rules

    host, driver = world.hosts[0], world.drivers[0]
    store.ingest([*(e.encode() for e in world.founding())])
    session = world.session(host, driver, EPOCH + 22 * 3600)
    first, second = session.receipts[:2]
    bomb = p.sign(host, p.MeterReceipt(booking_id=session.booking.id, seq=2, t=second.message.t + 20 * 365 * 86_400,
                                       energy_wh=second.message.energy_wh + 1, prev=second.digest))
    settlement = p.sign(host, session.settlement.message.replace(last_receipt=bomb.digest,
                                                                 energy_wh=bomb.message.energy_wh))
    claim = SettlementClaim(booking=session.booking, receipts=(first, second, bomb), settlement=settlement)
    entry = world.entry(host, EntryKind.SETTLEMENT, claim, EPOCH + 23 * 3600)

    def no_pricing(*args, **kwargs):
        raise AssertionError("a claim with a reading outside its window must be refused before it is priced")

    monkeypatch.setattr(session_rules, "price", no_pricing)
    with pytest.raises(EntryRefused) as caught:
        store.ingest([entry.encode()])
    assert caught.value.rule is Rule.OUTSIDE_WINDOW and caught.value.author == host.public_key
    assert store.keep_evidence(entry.encode()).rule is Rule.OUTSIDE_WINDOW  # the host's signed lie, kept
