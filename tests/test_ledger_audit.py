"""Audit: a clean ledger passes; each rule broken behind the ledger's back is reported
exactly; an incremental audit (from the mark a passing one leaves) checks only what is new
and finds exactly what a full audit finds."""

import hashlib
import shutil
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattshare import protocol as p
from wattshare.ledger import (
    EntryKind,
    EntryRefused,
    Envelopes,
    FeedHead,
    LedgerStore,
    MoneyMove,
    Role,
    Rule,
    SettlementClaim,
    StoreError,
    audit,
    check_entry,
    leaf_hash,
)
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600


@pytest.fixture
def ledger(tmp_path):
    """A small clean ledger: charter, six admissions, deposits, three settled and acked
    sessions (stored deflated), a head."""
    world = SampleWorld(seed=11)
    store = LedgerStore(tmp_path / "ledger.db", world.coop.public_key, clock=world.clock)
    entries = [*world.founding(), world.money(world.drivers[0], 20_000, EPOCH + 1),
               world.money(world.drivers[1], 20_000, EPOCH + 2)]
    sessions = [world.session(world.hosts[i % 2], world.drivers[i % 2], NIGHT + i * 86_400) for i in range(3)]
    entries += [world.settlement_entry(s) for s in sessions] + [world.ack_entry(s) for s in sessions]
    store.ingest([e.encode() for e in entries])
    head = p.sign(world.hosts[0], FeedHead(author=world.hosts[0].public_key, size=2,
                                           root=store.state.feeds[world.hosts[0].public_key].log.root(), t=NIGHT))
    store.ingest_head(head)
    store.close()
    return tmp_path / "ledger.db", world, sessions


def execute(path, sql, args=()):
    with sqlite3.connect(path) as conn:
        conn.execute(sql, args)


def insert(path, signed, party=None):
    """Write an entry row as a buggy or hostile tool would: straight into SQLite (`party`:
    what it writes in that column; by default the entry's own)."""
    data = signed.encode()
    entry = signed.message
    booking = None
    if entry.kind is EntryKind.SETTLEMENT:
        with p.vouched_by(entry.author):
            booking = SettlementClaim.decode(entry.body).booking.id
    if party is None:
        try:
            party = check_entry(data).party
        except EntryRefused:
            party = None
    execute(path, "INSERT INTO entries (digest, author, seq, t, kind, booking_id, leaf, envelope, frozen, party) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (hashlib.sha256(data).digest(), entry.author, entry.seq, entry.t, entry.kind.value, booking,
             leaf_hash(data), data, party))


def rules(path, workers=1):
    report = audit(path, workers=workers)
    return [v.rule for v in report.violations]


@pytest.mark.parametrize("workers", [1, 2])
def test_clean_ledger_passes(ledger, workers):
    path, world, sessions = ledger
    report = audit(path, workers=workers)
    assert report.ok, report.violations
    assert (report.entries, report.heads) == (15, 1)
    paid = sum(s.settlement.message.amount for s in sessions)
    assert sum(report.balances.values()) == 40_000
    assert sum(v for (m, _), v in report.balances.items() if m in {h.public_key for h in world.hosts}) == paid


def test_tampered_bytes(ledger):
    path, world, _ = ledger
    with sqlite3.connect(path) as conn:
        digest, envelope = conn.execute(
            "SELECT digest, envelope FROM entries WHERE author = ? ORDER BY seq DESC LIMIT 1",
            (world.drivers[1].public_key,)).fetchone()
        tampered = envelope[:100] + bytes([envelope[100] ^ 0x01]) + envelope[101:]  # inside the body
        conn.execute("UPDATE entries SET envelope = ?, digest = ? WHERE digest = ?",
                     (tampered, hashlib.sha256(tampered).digest(), digest))
    assert rules(path) == [Rule.SIGNATURE]


def test_wrong_signature(ledger):
    path, world, _ = ledger
    with sqlite3.connect(path) as conn:
        digest, envelope = conn.execute("SELECT digest, envelope FROM entries WHERE author = ? AND seq = 0",
                                        (world.drivers[0].public_key,)).fetchone()
    signed = p.Signed.decode(envelope)
    forged = p.encode_cbor({**signed.to_wire(), "sig": world.drivers[1].sign(b"not this")})
    execute(path, "UPDATE entries SET envelope = ?, digest = ? WHERE digest = ?",
            (forged, hashlib.sha256(forged).digest(), digest))
    assert rules(path) == [Rule.SIGNATURE]


def test_gap_in_seq(ledger):
    path, world, sessions = ledger
    extra = world.ack_entry(sessions[2], t=NIGHT + 5 * 86_400)  # driver 0's feed: acks 0, 2, then 2 again
    insert(path, extra)
    execute(path, "DELETE FROM entries WHERE author = ? AND seq = 1", (world.drivers[0].public_key,))  # the first ack of 2
    assert rules(path) == [Rule.SEQ_GAP]


def test_wrong_prev(ledger):
    path, world, _ = ledger
    charter = world.charter_entry(t=EPOCH + 50)
    insert(path, p.sign(world.coop, charter.message.replace(prev=bytes(32))))
    assert rules(path) == [Rule.PREV_MISMATCH]


def test_settlement_over_the_cap(ledger):
    path, world, _ = ledger
    session = world.session(world.hosts[0], world.drivers[0], NIGHT + 9 * 86_400, spend_cap=100)
    lines = session.settlement.message.breakdown[:-1]
    insert(path, world.resettled_entry(session, amount=sum(x.amount for x in lines), breakdown=lines))
    assert rules(path) == [Rule.OVER_CAP]


def test_mispriced_settlement(ledger):
    path, world, _ = ledger
    session = world.session(world.hosts[0], world.drivers[0], NIGHT + 9 * 86_400)
    insert(path, world.overclaim_entry(session, 50))
    assert rules(path) == [Rule.MISPRICED]


def test_second_settlement_of_a_booking(ledger):
    path, world, sessions = ledger
    insert(path, world.settlement_entry(sessions[0]))
    assert rules(path) == [Rule.DUPLICATE_CLAIM]


def test_deposit_by_a_non_treasurer(ledger):
    path, world, _ = ledger
    move = MoneyMove(charter=world.charter, member=world.drivers[0].public_key, amount=10**6, currency="EUR")
    insert(path, world.entry(world.drivers[0], EntryKind.DEPOSIT, move, NIGHT + 9 * 86_400))
    assert rules(path) == [Rule.NOT_TREASURER]


def test_fork_written_behind_the_ledgers_back(ledger):
    path, world, _ = ledger
    with sqlite3.connect(path) as conn:
        envelope = conn.execute("SELECT envelope FROM entries WHERE author = ? AND seq = 0",
                                (world.drivers[1].public_key,)).fetchone()[0]
    twin = p.Signed.decode(envelope).message
    with pytest.raises(sqlite3.IntegrityError):  # the file's own constraint: one entry per author and seq
        insert(path, p.sign(world.drivers[1], twin.replace(t=twin.t + 1)))
    with sqlite3.connect(path) as conn:  # a hostile tool rewrites the table without it
        conn.executescript("CREATE TABLE loose AS SELECT * FROM entries; DROP TABLE entries; "
                           "ALTER TABLE loose RENAME TO entries;")
    insert(path, p.sign(world.drivers[1], twin.replace(t=twin.t + 1)))
    report = audit(path)
    assert [(v.rule, v.author, v.seq) for v in report.violations] == [(Rule.FORK, world.drivers[1].public_key, 0)]


def test_tampered_balance(ledger):
    path, world, _ = ledger
    execute(path, "UPDATE balances SET balance = balance + 500 WHERE member = ?", (world.hosts[1].public_key,))
    assert rules(path) == [Rule.BALANCE_MISMATCH, Rule.CONSERVATION]


def test_signed_head_that_disagrees(ledger):
    path, world, _ = ledger
    lying = p.sign(world.hosts[0], FeedHead(author=world.hosts[0].public_key, size=2, root=bytes(32), t=NIGHT))
    execute(path, "UPDATE heads SET envelope = ?, root = ?", (lying.encode(), bytes(32)))
    assert rules(path) == [Rule.HEAD_MISMATCH]


def test_dangling_ack(ledger):
    path, world, _ = ledger
    ghost = world.session(world.hosts[1], world.drivers[1], NIGHT + 20 * 86_400)  # never settled
    insert(path, world.ack_entry(ghost))
    assert rules(path) == [Rule.DANGLING]


def test_a_second_answer_to_one_settlement_is_named(ledger, tmp_path):
    path, world, sessions = ledger
    dispute = p.Dispute(booking_id=sessions[0].booking.id, t=NIGHT + 86_400, settlement=sessions[0].settlement.digest,
                        reason=p.Reason.MISPRICED, detail="changed my mind after acking")
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    store.append(world.drivers[0], [(EntryKind.DISPUTE, dispute)], t=NIGHT + 86_400)  # ingest keeps it: no money moves
    store.close()
    report = audit(path)
    assert [(v.rule, v.author) for v in report.violations] == [(Rule.DOUBLE_ANSWER, world.drivers[0].public_key)]


def test_parallel_audit_gives_the_single_core_verdict(ledger):
    path, world, sessions = ledger
    insert(path, world.settlement_entry(sessions[0]))
    single, parallel = audit(path), audit(path, workers=2)
    assert single.violations == parallel.violations and single.balances == parallel.balances


def test_not_a_ledger(tmp_path):
    with pytest.raises(StoreError, match="no ledger"):
        audit(tmp_path / "absent.db")
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable ledger"):
        audit(tmp_path / "junk.db")


def test_a_cut_tail_is_caught_where_witnessed_and_reported_where_not(ledger):
    """Cutting a feed's last entry (and adjusting balances to match) leaves nothing
    inconsistent behind unless a checkpoint covered it, so audit reports every feed's
    unwitnessed tail; once witnessed, the same cut is a violation."""
    path, world, sessions = ledger
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    store.ingest([world.checkpoint(store, NIGHT + 9 * 86_400).encode()])
    late = world.money(world.drivers[0], 500, NIGHT + 10 * 86_400)
    store.ingest([late.encode()])
    store.close()
    report = audit(path)
    assert report.ok and report.unwitnessed == {world.treasurer.public_key: (2, 3)}

    def cut(entry):
        move = MoneyMove.decode(entry.message.body)
        execute(path, "DELETE FROM entries WHERE digest = ?", (entry.digest,))
        execute(path, "UPDATE balances SET balance = balance - ? WHERE member = ?", (move.amount, move.member))
        execute(path, "UPDATE reserves SET amount = amount - ?", (move.amount,))

    cut(late)
    report = audit(path)
    assert report.ok and report.unwitnessed == {}  # a cut tail leaves no trace: hence the report above
    with sqlite3.connect(path) as conn:
        Envelopes.of(conn)
        witnessed = p.Signed.decode(conn.execute("SELECT unpacked(envelope) FROM entries WHERE author = ? AND seq = 1",
                                                 (world.treasurer.public_key,)).fetchone()[0])
    cut(witnessed)
    assert rules(path) == [Rule.HEAD_MISMATCH]  # the checkpoint's cut holds an entry the ledger no longer does


def test_a_wrongly_typed_column_is_named_by_its_row(ledger):
    path, world, _ = ledger
    execute(path, "UPDATE entries SET seq = 'one' WHERE author = ? AND seq = 1", (world.drivers[0].public_key,))
    execute(path, "UPDATE balances SET balance = 1.5 WHERE member = ?", (world.hosts[1].public_key,))
    report = audit(path)
    named = [v.detail for v in report.violations if v.detail.startswith("row ")]
    assert len(named) == 2
    assert any("of entries: seq holds text, not integer" in d for d in named)
    assert any("of balances: balance holds real, not integer" in d for d in named)


def test_the_frozen_column_must_agree_with_the_evidence(ledger):
    path, world, _ = ledger
    execute(path, "UPDATE entries SET frozen = 1 WHERE author = ?", (world.hosts[1].public_key,))  # no fraud proof
    report = audit(path)
    assert {(v.rule, v.author) for v in report.violations} == {(Rule.MALFORMED, world.hosts[1].public_key)}
    assert all("the row says frozen=1, the evidence gives 0" in v.detail for v in report.violations)


# --- incremental audit ------------------------------------------------------------------


def grow(path, world, days=(5, 6)):
    """A few more nights: new sessions settled and acked, a deposit, and a checkpoint
    that covers every feed (some of it from before the mark)."""
    store = LedgerStore(path, world.coop.public_key, clock=lambda: NIGHT + 60 * 86_400)
    sessions = [world.session(world.hosts[d % 2], world.drivers[d % 2], NIGHT + d * 86_400) for d in days]
    entries = [world.settlement_entry(s) for s in sessions] + [world.ack_entry(s) for s in sessions]
    entries.append(world.money(world.drivers[1], 700, NIGHT + 8 * 86_400))
    store.ingest([e.encode() for e in entries])
    store.ingest([world.checkpoint(store, NIGHT + 9 * 86_400).encode()])
    store.close()
    return sessions


def same_findings(incremental, full):
    assert [(v.rule, v.author, v.seq) for v in incremental.violations] == \
        [(v.rule, v.author, v.seq) for v in full.violations]
    assert incremental.balances == full.balances and incremental.unwitnessed == full.unwitnessed


def test_the_next_audit_checks_only_the_new_entries_and_finds_what_a_full_audit_finds(ledger, tmp_path):
    path, world, _ = ledger
    mark = tmp_path / "ledger.db.audit-mark"
    first = audit(path, mark=mark)
    assert first.ok and first.since == 0 and first.entries == 15 and mark.exists()
    grow(path, world)
    again = audit(path, mark=mark)
    assert again.ok and (again.since, again.entries) == (15, 6)  # 2 settlements, 2 acks, a deposit, a checkpoint
    same_findings(again, audit(path))
    assert again.checkpoints == 1 and again.unwitnessed == {}  # the new checkpoint covers every feed
    third = audit(path, mark=mark)
    assert third.ok and (third.since, third.entries) == (21, 0)


@pytest.mark.parametrize("lie", ["second claim", "second answer", "dangling ack", "balance", "mistyped row"])
def test_new_entries_that_break_a_rule_against_audited_ones_are_found(ledger, tmp_path, lie):
    path, world, sessions = ledger
    mark = tmp_path / "mark"
    assert audit(path, mark=mark).ok
    before = mark.read_bytes()
    if lie == "second claim":  # a booking the audited part already settled
        insert(path, world.settlement_entry(sessions[0]))
    elif lie == "second answer":  # a dispute of a settlement the driver acked before the mark
        store = LedgerStore(path, world.coop.public_key, clock=world.clock)
        store.append(world.drivers[0], [(EntryKind.DISPUTE, p.Dispute(
            booking_id=sessions[0].booking.id, t=NIGHT + 86_400, settlement=sessions[0].settlement.digest,
            reason=p.Reason.MISPRICED))], t=NIGHT + 86_400)
        store.close()
    elif lie == "dangling ack":
        insert(path, world.ack_entry(world.session(world.hosts[1], world.drivers[1], NIGHT + 20 * 86_400)))
    elif lie == "balance":
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE balances SET balance = balance + 1 WHERE member = ?", [world.hosts[0].public_key])
    else:  # a new row whose seq a buggy tool wrote as text
        grow(path, world, days=(5,))
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE entries SET seq = 'one' WHERE rowid = (SELECT MAX(rowid) FROM entries)")
    incremental, full = audit(path, mark=mark), audit(path)
    assert not incremental.ok and incremental.since == 15
    same_findings(incremental, full)
    assert {v.rule for v in incremental.violations} & {Rule.DUPLICATE_CLAIM, Rule.DOUBLE_ANSWER, Rule.DANGLING,
                                                       Rule.BALANCE_MISMATCH, Rule.MALFORMED}
    assert mark.read_bytes() == before  # a failing audit leaves the last passing mark


def test_a_mark_of_another_ledger_or_a_fork_since_makes_the_audit_run_in_full(ledger, tmp_path):
    path, world, _ = ledger
    other = SampleWorld(seed=12)
    elsewhere = tmp_path / "other.db"
    LedgerStore(elsewhere, other.coop.public_key).close()
    mark = tmp_path / "mark"
    assert audit(elsewhere, mark=mark).ok
    report = audit(path, mark=mark)  # the mark names another co-op
    assert report.ok and report.since == 0 and report.entries == 15
    grow(path, world)
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    with sqlite3.connect(path) as conn:
        envelope = conn.execute("SELECT envelope FROM entries WHERE author = ? AND seq = 0",
                                [world.drivers[1].public_key]).fetchone()[0]
    twin = p.sign(world.drivers[1], p.Signed.decode(envelope).message.replace(t=NIGHT + 3))
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    store.ingest([], forks=[(envelope, twin.encode())])  # a fork of an audited feed, learnt since
    store.close()
    report = audit(path, mark=mark)
    assert report.since == 0 and Rule.FORK in {v.rule for v in report.violations}
    assert audit(copy, mark=mark).since == 15  # the mark still serves the ledger without the fork


def test_a_charter_retiring_a_key_from_an_audited_entry_on_makes_the_audit_run_in_full(ledger, tmp_path):
    """The treasurer's two audited deposits count until a charter says otherwise: one
    retiring it from its seq 1 on voids an audited entry, so the mark cannot serve."""
    path, world, _ = ledger
    mark = tmp_path / "mark"
    assert audit(path, mark=mark).ok
    newcomer = world.identity("treasurer", 1)
    retired = world.charter_body().replace(treasurers=(world.treasurer.public_key, newcomer.public_key)) \
        .retire(world.treasurer.public_key, Role.TREASURER, until=1)
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    store.ingest([world.entry(world.coop, EntryKind.COOP, retired, NIGHT + 9 * 86_400).encode()])
    store.close()
    report, full = audit(path, mark=mark), audit(path)
    assert report.since == 0 and report.entries == 16
    same_findings(report, full)
    assert (Rule.NOT_TREASURER, world.treasurer.public_key, 1) in [(v.rule, v.author, v.seq) for v in report.violations]


def test_an_audit_of_a_ledger_its_node_goes_on_writing_reads_one_snapshot(ledger):
    """A co-op audits its live ledger (WAL): every query of one audit must see the same
    entries, balances and heads, or an entry arriving between two of them would read as
    a violation. The audit's connection holds one read transaction."""
    from wattshare.ledger._audit import open_readonly

    path, world, _ = ledger
    conn = open_readonly(path)
    before = conn.execute("SELECT COUNT(*), SUM(balance) FROM entries, balances").fetchone()
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    assert store.ingest([world.money(world.drivers[0], 1_000, NIGHT + 9 * 86_400).encode()]).added == 1
    store.close()
    assert conn.execute("SELECT COUNT(*), SUM(balance) FROM entries, balances").fetchone() == before
    conn.close()
    assert audit(path).ok and audit(path).entries == 16


def test_a_mark_whose_charter_is_gone_from_the_file_makes_the_audit_run_in_full(ledger, tmp_path):
    path, world, _ = ledger
    mark = tmp_path / "mark"
    assert audit(path, mark=mark).ok
    execute(path, "DELETE FROM entries WHERE author = ? AND seq = 0", (world.coop.public_key,))
    report, full = audit(path, mark=mark), audit(path)
    assert report.since == 0 and not report.ok
    same_findings(report, full)


GROWTH = ["night", "deposit", "second answer", "second claim", "checkpoint", "tampered balance"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(GROWTH), min_size=1, max_size=6))
def test_whatever_the_ledger_grows_by_an_incremental_audit_finds_what_a_full_audit_finds(tmp_path_factory, steps):
    """Grow a ledger step by step (honest nights, deposits and checkpoints, and lies that
    reach back to audited entries), auditing after each step both ways."""
    path = tmp_path_factory.mktemp("grown") / "ledger.db"
    world = SampleWorld(seed=13)
    store = LedgerStore(path, world.coop.public_key, clock=lambda: NIGHT + 400 * 86_400)
    store.ingest([*(e.encode() for e in world.founding()),
                  world.money(world.drivers[0], 90_000, EPOCH + 1).encode()])
    store.close()
    mark, nights = path.with_name("ledger.db.audit-mark"), []
    for step, what in enumerate(steps):
        store = LedgerStore(path, world.coop.public_key, clock=lambda: NIGHT + 400 * 86_400)
        if what == "night" or not nights and what in ("second answer", "second claim"):
            session = world.session(world.hosts[step % 2], world.drivers[0], NIGHT + (step + 1) * 86_400)
            store.ingest([world.settlement_entry(session).encode(), world.ack_entry(session).encode()])
            nights.append(session)
        elif what == "deposit":
            store.ingest([world.money(world.drivers[0], 100 + step, NIGHT + (step + 1) * 86_400).encode()])
        elif what == "second answer":  # the first night's settlement, acked already
            store.ingest([world.entry(world.drivers[0], EntryKind.DISPUTE, p.Dispute(
                booking_id=nights[0].booking.id, t=NIGHT + 300 * 86_400, settlement=nights[0].settlement.digest,
                reason=p.Reason.MISPRICED), NIGHT + 300 * 86_400).encode()])
        elif what == "checkpoint":
            store.ingest([world.checkpoint(store, NIGHT + 200 * 86_400).encode()])
        store.close()
        if what == "second claim":
            insert(path, world.settlement_entry(nights[0]))
        elif what == "tampered balance":
            execute(path, "UPDATE balances SET balance = balance + 1 WHERE member = ?", (world.drivers[0].public_key,))
        same_findings(audit(path, mark=mark), audit(path))
