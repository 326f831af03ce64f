"""Replication and the ledger's invariants under random appends, forks, replays and syncs."""

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from wattshare import protocol as p
from wattshare.ledger import (
    Batch,
    CoopCharter,
    EntryKind,
    EntryRefused,
    FeedHead,
    Have,
    Hold,
    Interest,
    LedgerStore,
    Replicator,
    Rule,
    Want,
    audit,
    pull,
    sync,
)
from wattshare.ledger._replication import MAX_LIES
from wattshare.testing import EPOCH, SampleWorld


def snapshot(store):
    return store.sizes(), {k: v for k, v in store.state.balances.items() if v}, sorted(store.frauds())


def test_two_stores_converge_by_sync(tmp_path):
    world = SampleWorld(seed=1)
    a = LedgerStore(tmp_path / "a.db", world.coop.public_key, clock=world.clock)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    a.ingest([*(e.encode() for e in world.founding()), world.money(world.drivers[0], 9000, EPOCH).encode()])
    session = world.session(world.hosts[0], world.drivers[0], EPOCH + 22 * 3600)
    b.ingest([world.settlement_entry(session).encode()])
    assert sync(Replicator(a), Replicator(b)) == (1, 8)  # the charter, six admissions and the deposit
    assert snapshot(a) == snapshot(b)
    assert sync(Replicator(a), Replicator(b)) == (0, 0)  # nothing left to move


def test_sync_messages_survive_the_wire(tmp_path):
    world = SampleWorld(seed=2)
    a = LedgerStore(tmp_path / "a.db", world.coop.public_key, clock=world.clock)
    charter = CoopCharter(name="Co-op", currency="EUR", credit_limit=100,
                          treasurers=(world.treasurer.public_key,), witnesses=())
    a.append(world.coop, [(EntryKind.COOP, charter)], t=EPOCH)
    have = Have.decode(Replicator(a).have().encode())
    assert have.heads and have.heads[0].message.size == 1
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    rb = Replicator(b)
    want = Want.decode(rb.want(have).encode())
    for batch in Replicator(a).serve(want):
        rb.accept(Batch.decode(batch.encode()))
    assert snapshot(a) == snapshot(b)
    assert [h.message for h in b.heads()] == [h.message for h in a.heads()]


def test_a_light_member_asks_to_hear_only_of_its_feeds_and_still_gets_all_it_needs(tmp_path):
    """A light driver's Have names the feeds it wants (the co-op's, the treasurers', its
    own, the hosts its holds name); the full side's Have to it lists no others, so the
    other hosts' and drivers' sizes and signed heads never travel; and one sync still
    brings the host its own feed names, which it learns of only from that feed."""
    world = SampleWorld(seed=4, hosts=5, drivers=5)
    full = LedgerStore(tmp_path / "full.db", world.coop.public_key, clock=world.clock)
    driver, host = world.drivers[0], world.hosts[0]
    full.ingest([e.encode() for e in world.founding()] + [world.money(d, 9000, EPOCH).encode() for d in world.drivers])
    for h, d in zip(world.hosts, world.drivers, strict=True):
        session = world.session(h, d, EPOCH + 22 * 3600)
        full.ingest([world.entry(d, EntryKind.HOLD, Hold(request=session.booking.request), EPOCH + 3600).encode(),
                     world.settlement_entry(session).encode(), world.ack_entry(session).encode()])
    for member in [world.coop, world.treasurer, *world.hosts, *world.drivers]:  # each member's signed head
        feed = full.state.feeds[member.public_key]
        full.ingest_head(p.sign(member, FeedHead(author=member.public_key, size=feed.size, root=feed.log.root(),
                                                 t=EPOCH + 86_400)))
    light = LedgerStore(tmp_path / "light.db", world.coop.public_key, clock=world.clock)
    mine = Replicator(light, Interest(light, driver.public_key))

    asked = mine.have()
    assert asked.only == tuple(sorted({world.coop.public_key, driver.public_key}))  # all it knows to want, empty
    told = Replicator(full).have(asked.only)
    assert {f.author for f in told.sizes} == set(asked.only) and {h.message.author for h in told.heads} <= set(asked.only)
    assert len(told.encode()) * 4 < len(Replicator(full).have().encode())

    sync(mine, Replicator(full))  # its own feed names host 0 (its hold): wanted, and pulled in the same sync
    assert set(light.sizes()) == {world.coop.public_key, world.treasurer.public_key, driver.public_key,
                                  host.public_key}
    assert light.balance(driver.public_key, "EUR") == full.balance(driver.public_key, "EUR")
    assert Replicator(full).have().only is None  # a full side asks to hear of everything


def test_a_full_node_pulling_since_its_last_pull_is_told_only_what_changed(tmp_path):
    """A full node's Have to a peer that sends back the mark of its last pull lists only
    the feeds that changed after it (sizes and signed heads), and that is enough to stay
    converged; a mark this opening of the store did not give, or a garbled one, is told
    everything; an oversize mark is refused on the wire."""
    world = SampleWorld(seed=5, hosts=5, drivers=5)
    full = LedgerStore(tmp_path / "full.db", world.coop.public_key, clock=world.clock)
    full.ingest([e.encode() for e in world.founding()] + [world.money(d, 9000, EPOCH).encode() for d in world.drivers])
    for h, d in zip(world.hosts, world.drivers, strict=True):
        session = world.session(h, d, EPOCH + 22 * 3600)
        full.ingest([world.settlement_entry(session).encode(), world.ack_entry(session).encode()])
    for member in [world.coop, world.treasurer, *world.hosts, *world.drivers]:
        feed = full.state.feeds[member.public_key]
        full.ingest_head(p.sign(member, FeedHead(author=member.public_key, size=feed.size, root=feed.log.root(),
                                                 t=EPOCH + 86_400)))
    replica = LedgerStore(tmp_path / "replica.db", world.coop.public_key, clock=world.clock)
    everything = Replicator(full).have()
    added, mark = pull(Replicator(replica), Replicator(full))
    assert added == sum(f.size for f in everything.sizes) and snapshot(replica) == snapshot(full)

    quiet = Replicator(full).have(None, mark)
    assert (quiet.sizes, quiet.heads) == ((), ())  # nothing changed since
    session = world.session(world.hosts[2], world.drivers[2], EPOCH + 2 * 86_400 + 22 * 3600)
    full.ingest([world.settlement_entry(session).encode()])
    news = Replicator(full).have(None, mark)
    assert [f.author for f in news.sizes] == [world.hosts[2].public_key]  # and its head, the one feed told of
    assert [h.message.author for h in news.heads] == [world.hosts[2].public_key]
    assert len(news.encode()) * 10 < len(everything.encode())
    assert pull(Replicator(replica), Replicator(full), mark)[0] == 1 and snapshot(replica) == snapshot(full)

    whole = {f.author for f in Replicator(full).have().sizes}
    later = full.mark()
    for garbled in (later[:8] + (2**63).to_bytes(8, "big"), later[:15], bytes(16)):
        assert {f.author for f in Replicator(full).have(None, garbled).sizes} == whole
    full.close()
    reopened = LedgerStore(tmp_path / "full.db", world.coop.public_key, clock=world.clock)
    assert {f.author for f in Replicator(reopened).have(None, later).sizes} == whole  # another opening's mark
    wire = Replicator(reopened).have().to_wire() | {"since": bytes(33)}
    with pytest.raises(p.DecodeError) as oversize:
        Have.decode(p.encode_cbor(wire))
    assert oversize.value.reason is p.Reason.MALFORMED


def test_divergent_branches_meet_as_a_fork(tmp_path):
    world = SampleWorld(seed=3)
    a = LedgerStore(tmp_path / "a.db", world.coop.public_key, clock=world.clock)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    charter = world.charter_entry()
    d0 = world.money(world.drivers[0], 100, EPOCH + 1)
    d1 = world.money(world.drivers[0], 100, EPOCH + 2)
    d2 = world.money(world.drivers[0], 100, EPOCH + 3)
    other = p.sign(world.treasurer, d1.message.replace(t=EPOCH + 99))  # a second history from seq 1
    a.ingest([charter.encode(), d0.encode(), d1.encode(), d2.encode()])
    b.ingest([charter.encode(), d0.encode(), other.encode()])
    sync(Replicator(a), Replicator(b))
    assert snapshot(a) == snapshot(b)
    assert a.state.feeds[world.treasurer.public_key].frozen and len(a.frauds()) == 1


def test_a_bad_batch_from_a_peer_is_refused_and_sync_can_resume(tmp_path):
    world = SampleWorld(seed=4)
    a = LedgerStore(tmp_path / "a.db", world.coop.public_key, clock=world.clock)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    a.ingest([world.charter_entry().encode()] + [world.money(world.drivers[0], 1, EPOCH + i).encode() for i in range(10)])
    b.ingest([world.charter.encode()])  # the charter naming the members whose feeds it wants
    rb = Replicator(b, batch_size=4)
    batches = list(Replicator(a, batch_size=4).serve(rb.want(Replicator(a).have())))
    rb.accept(batches[0])
    tampered = bytearray(batches[1].entries[0])
    tampered[-3] ^= 1
    with pytest.raises(EntryRefused):
        rb.accept(Batch(entries=(bytes(tampered),) + batches[1].entries[1:]))
    assert b.sizes() == {world.coop.public_key: 1, world.treasurer.public_key: 4}  # the first batch of four
    sync(Replicator(a), Replicator(b))  # the next sync resumes where the good batches ended
    assert snapshot(a) == snapshot(b)


def test_a_lying_members_entry_is_kept_as_evidence_and_the_other_feeds_still_arrive(tmp_path):
    world = SampleWorld(seed=5)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    night = EPOCH + 22 * 3600
    honest = world.session(world.hosts[0], world.drivers[0], night)
    lying = [world.session(world.hosts[1], world.drivers[1], night + day * 86_400) for day in (1, 2)]
    good = [*world.founding(), world.settlement_entry(honest)]
    lies = [world.overclaim_entry(lying[0], 75), world.settlement_entry(lying[1])]  # the 2nd rests on the lie
    batch = Batch(entries=tuple(e.encode() for e in lies + good))
    for _ in range(2):  # a peer serving the lie again adds nothing new
        report = Replicator(b).accept(batch)
        assert [(r.rule, r.author, r.seq) for r in report.refused] == [(Rule.MISPRICED, world.hosts[1].public_key, 0)]
    assert b.sizes() == {world.coop.public_key: 7, world.hosts[0].public_key: 1}
    assert b.evidence() == [lies[0].encode()]
    b.close()
    violations = audit(tmp_path / "b.db").violations
    assert [(v.rule, v.author, v.seq) for v in violations] == [(Rule.MISPRICED, world.hosts[1].public_key, 0)]


def test_a_batch_with_more_lies_than_it_is_worth_checking_is_refused_whole(tmp_path):
    world = SampleWorld(seed=7, hosts=MAX_LIES + 1, drivers=1)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    lies = [world.overclaim_entry(world.session(host, world.drivers[0], EPOCH + day * 86_400), 10)
            for day, host in enumerate(world.hosts)]
    with pytest.raises(EntryRefused):
        Replicator(b).accept(Batch(entries=tuple(e.encode() for e in [world.charter_entry(), *lies])))
    assert b.sizes() == {} and len(b.evidence()) == MAX_LIES  # each lie checked is kept; nothing else stored


def test_the_evidence_table_cannot_frame_anyone(tmp_path):
    world = SampleWorld(seed=6)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    honest = world.settlement_entry(world.session(world.hosts[0], world.drivers[0], EPOCH + 22 * 3600))
    assert b.keep_evidence(honest.encode()) is None  # breaks no rule: not kept
    forged = bytearray(world.overclaim_entry(world.session(world.hosts[1], world.drivers[1], EPOCH), 10).encode())
    forged[-3] ^= 1
    assert b.keep_evidence(bytes(forged)) is None  # its signature fails: it proves nothing of its author
    assert b.evidence() == []
    b.db.execute("INSERT INTO refused VALUES (?, ?, 0, 'mispriced', ?, 0)", [b"x" * 32, world.hosts[0].public_key,
                                                                           honest.encode()])
    b.close()
    assert [(v.rule, v.author) for v in audit(tmp_path / "b.db").violations] == [(Rule.MALFORMED, None)]


class LedgerMachine(RuleBasedStateMachine):
    """Two stores, members writing to their home store, forks, replays and syncs."""

    @initialize(seed=st.integers(0, 2**16))
    def setup(self, seed):
        self.dir = Path(tempfile.mkdtemp())
        self.world = SampleWorld(seed=seed, hosts=2, drivers=2)
        coop = self.world.coop.public_key
        self.stores = [LedgerStore(self.dir / name, coop, clock=self.world.clock) for name in ("a.db", "b.db")]
        self.marks = [None, None]  # per store: the other's mark from its last pull of it
        self.home = {}
        self.seen: list[bytes] = []
        self.sessions = []
        self.t = EPOCH
        for entry in self.world.founding():
            self.write(self.world.coop, entry)

    def teardown(self):
        for store in getattr(self, "stores", []):
            store.close()
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir)

    def write(self, author, signed):
        store = self.stores[self.home.setdefault(author.public_key, len(self.home) % 2)]
        store.ingest([signed.encode()])
        self.seen.append(signed.encode())

    @rule(driver=st.integers(0, 1), amount=st.integers(1, 5000))
    def deposit(self, driver, amount):
        self.t += 60
        self.write(self.world.treasurer, self.world.money(self.world.drivers[driver], amount, self.t))

    @rule(host=st.integers(0, 1), driver=st.integers(0, 1), hours=st.integers(1, 4))
    def charge(self, host, driver, hours):
        self.t += 24 * 3600
        session = self.world.session(self.world.hosts[host], self.world.drivers[driver], self.t, hours=hours)
        self.sessions.append(session)
        self.write(self.world.hosts[host], self.world.settlement_entry(session))

    @precondition(lambda self: self.sessions)
    @rule(data=st.data())
    def second_settlement_is_refused(self, data):
        session = data.draw(st.sampled_from(self.sessions))
        host = next(h for h in self.world.hosts if h.public_key == session.booking.request.message.host)
        store = self.stores[self.home[host.public_key]]
        before = snapshot(store)
        entry = self.world.settlement_entry(session)
        if store.state.feeds[host.public_key].frozen:  # the host forked: nothing of it counts
            assert store.ingest([entry.encode()]).ignored == 1
        else:
            with pytest.raises(EntryRefused):
                store.ingest([entry.encode()])
        feed = store.state.feeds[host.public_key]
        self.world._tips[host.public_key] = (feed.size, feed.tip, feed.last_t)
        assert snapshot(store) == before

    @precondition(lambda self: self.seen)
    @rule(data=st.data(), which=st.integers(0, 1))
    def replay(self, data, which):
        store = self.stores[which]
        envelope = data.draw(st.sampled_from(self.seen))
        before = snapshot(store)
        try:
            report = store.ingest([envelope])
        except EntryRefused:  # not in order for this store: refused, and nothing changes
            assert snapshot(store) == before
            return
        if not report.added and not report.forks:  # held already, or a frozen feed's: a no-op
            assert snapshot(store) == before

    @rule(data=st.data(), which=st.integers(0, 1))
    def fork(self, data, which):
        author = data.draw(st.sampled_from([self.world.treasurer, *self.world.hosts]))
        store = self.stores[which]
        feed = store.state.feeds.get(author.public_key)
        if feed is None or not feed.size:
            return
        seq = data.draw(st.integers(0, feed.size - 1))
        ours = store.entries(author.public_key, seq, seq + 1)[0]
        original = p.Signed.decode(ours).message
        twin = p.sign(author, original.replace(t=original.t + 1))
        other = self.stores[1 - which]
        try:
            other.ingest([twin.encode()])  # the other store may take the other branch
        except EntryRefused:
            store.ingest([twin.encode()])  # ...or this one gets the fraud proof directly
        self.seen.append(twin.encode())

    @rule(shuffle=st.randoms())
    def full_sync(self, shuffle):
        a, b = self.stores
        if shuffle.random() < 0.5:
            a, b = b, a
        sync(Replicator(a), Replicator(b))
        assert snapshot(a) == snapshot(b)

    @rule(shuffle=st.randoms())
    def marked_pulls(self, shuffle):
        """Each store pulls the other telling only what changed since its last pull, as
        nodes do: that alone converges them, whatever forks, replays and syncs came between."""
        order = [0, 1] if shuffle.random() < 0.5 else [1, 0]
        for which in order:
            puller, server = self.stores[which], self.stores[1 - which]
            _, self.marks[which] = pull(Replicator(puller), Replicator(server), self.marks[which])
        assert snapshot(self.stores[0]) == snapshot(self.stores[1])

    @invariant()
    def conservation(self):
        for store in getattr(self, "stores", []):
            assert store.state.conserved()

    @invariant()
    def no_accepted_fork_and_one_settlement_per_booking(self):
        for store in getattr(self, "stores", []):
            assert not store.db.execute(
                "SELECT author, seq FROM entries WHERE frozen = 0 GROUP BY author, seq HAVING COUNT(*) > 1"
            ).fetchall()
            assert not store.db.execute(
                "SELECT booking_id FROM entries WHERE frozen = 0 AND booking_id IS NOT NULL "
                "GROUP BY booking_id HAVING COUNT(*) > 1"
            ).fetchall()


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)


def test_a_have_of_one_head_repeated_is_refused_before_any_signature_is_checked(monkeypatch):
    from wattshare.ledger import FeedHead
    from wattshare.ledger._replication import MAX_HEADS
    from wattshare.protocol import _envelope, encode_cbor

    world = SampleWorld(seed=9)
    head = p.sign(world.coop, FeedHead(author=world.coop.public_key, size=1, root=bytes(32), t=EPOCH))
    verified = []
    real_verify_key = _envelope.verify_key
    monkeypatch.setattr(_envelope, "verify_key", lambda key: verified.append(key) or real_verify_key(key))

    def have(heads):
        return encode_cbor({"sizes": [], "heads": [h.to_wire() for h in heads], "forks": [], "only": None, "since": None,
                            "mark": None})

    with pytest.raises(p.DecodeError) as flood:  # the attack as found: one head 18,000 times in 4 MiB
        Have.decode(have([head] * 18_000), max_size=4 * 1024 * 1024)
    assert flood.value.reason is p.Reason.OVERSIZE and f"more than {MAX_HEADS}" in flood.value.message
    with pytest.raises(p.DecodeError) as repeated:  # within the cap, still one head twice
        Have.decode(have([head] * MAX_HEADS), max_size=4 * 1024 * 1024)
    assert repeated.value.reason is p.Reason.MALFORMED and "the same signed message twice" in repeated.value.message
    assert verified == []  # neither cost a single signature check
    assert Have.decode(have([head])).heads == (head,)
    assert len(verified) == 1


def test_stores_that_saw_different_forks_of_one_entry_converge_on_one_proof(tmp_path):
    world = SampleWorld(seed=8)
    a = LedgerStore(tmp_path / "a.db", world.coop.public_key, clock=world.clock)
    b = LedgerStore(tmp_path / "b.db", world.coop.public_key, clock=world.clock)
    charter = world.charter_entry().encode()
    deposit = world.money(world.drivers[0], 1, EPOCH)
    twins = [p.sign(world.treasurer, deposit.message.replace(t=deposit.message.t + i)).encode() for i in (1, 2)]
    for store, twin in ((a, twins[0]), (b, twins[1])):  # the treasurer signed three entries for seq 0
        store.ingest([charter, deposit.encode()])
        store.ingest([twin])
    assert a.frauds() != b.frauds()  # each saw another pair
    sync(Replicator(a), Replicator(b))
    assert a.frauds() == b.frauds() == [tuple(sorted([deposit.encode(), *twins])[:2])]
    assert snapshot(a) == snapshot(b)
