"""Members' accounts in witness checkpoints (`ledger/_accounts.py`, `_light.py`): what a
witness signs, how audit recomputes it at any cut, the proofs a light member checks, and
the credit a light host computes from one."""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattshare import protocol as p
from wattshare.ledger import (
    AccountProof,
    CutWalker,
    EntryKind,
    EntryRefused,
    Hold,
    LedgerStore,
    Release,
    Rule,
    account_root,
    accounts_of,
    audit,
    check_entry,
    keep,
    light_credit,
    members_at,
    prove,
    sign_checkpoint,
)
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600
LATER = NIGHT + 30 * 86_400  # the ledgers' clock: after every entry below
CUT = NIGHT + 3 * 86_400  # when the witness signs: the third booking's hold has not lapsed


class Neighbourhood:
    """A driver with three bookings before the witness's checkpoint (one settled and
    acked, one released, one open), and past it a new hold, a deposit and the open
    booking's settlement; `entries()` in the order they were written."""

    def __init__(self) -> None:
        world = self.world = SampleWorld(seed=73)
        self.driver = world.drivers[0]
        self.before = [*world.founding(credit_limit=5_000), world.money(self.driver, 3_000, EPOCH + 10)]
        sessions = self.sessions = [world.session(world.hosts[i % 3], self.driver, NIGHT + 86_400 * i, spend_cap=2_000)
                                    for i in range(4)]
        self.before += [world.entry(self.driver, EntryKind.HOLD, Hold(request=s.booking.request), EPOCH + 60 + i)
                        for i, s in enumerate(sessions[:3])]
        rejection = p.sign(world.hosts[1], p.BookingRejection(booking_id=sessions[1].booking.id,
                                                              reason=p.Reason.SLOT_TAKEN))
        self.before += [world.settlement_entry(sessions[0]), world.ack_entry(sessions[0]),
                        world.entry(self.driver, EntryKind.RELEASE, Release(request=sessions[1].booking.request,
                                                                            rejection=rejection), EPOCH + 120)]
        self.after = [world.entry(self.driver, EntryKind.HOLD, Hold(request=sessions[3].booking.request), CUT + 60),
                      world.money(self.driver, 1_000, CUT + 120), world.settlement_entry(sessions[2])]

    def store(self, path: Path, entries) -> LedgerStore:
        store = LedgerStore(path, self.world.coop.public_key, clock=lambda: LATER)
        store.ingest([e.encode() for e in entries])
        return store


@pytest.fixture
def town(tmp_path):
    town = Neighbourhood()
    full = town.store(tmp_path / "coop.db", town.before)
    sign_checkpoint(full, town.world.witness, town.world.charter, CUT)
    full.ingest([e.encode() for e in town.after])
    return town, full


def test_a_witness_signs_every_members_account_and_audit_recomputes_it(town):
    town, full = town
    driver = town.driver.public_key
    account = prove(full, driver).account
    paid = town.sessions[0].settlement.message.amount
    assert (account.balance, account.held) == (3_000 - paid, 2_000)  # the third booking's hold is open at the cut
    assert account.size == 5  # three holds, the ack and the release
    assert {prove(full, i.public_key).account.member for i in town.world.hosts + town.world.drivers} \
        == {i.public_key for i in town.world.hosts + town.world.drivers}  # members without a feed are in it too
    report = audit(full.path)
    assert report.ok and report.checkpoints == 1


def test_a_witness_lying_about_one_balance_is_named_by_audit(tmp_path):
    town = Neighbourhood()
    store = town.store(tmp_path / "l.db", town.before)
    honest = town.world.checkpoint_body(store, CUT)
    accounts = accounts_of(store.state, CUT)
    lie = [a.replace(balance=a.balance + 1) if a.member == town.driver.public_key else a for a in accounts]
    store.ingest([town.world.entry(town.world.witness, EntryKind.CHECKPOINT,
                                   honest.replace(accounts=account_root(lie)), CUT).encode()])
    violations = audit(store.path).violations
    assert [(v.rule, v.author) for v in violations] == [(Rule.HEAD_MISMATCH, town.world.witness.public_key)]
    assert "accounts" in violations[0].detail


def test_a_proof_is_checked_against_the_signed_root_and_the_coops_charter(town):
    town, full = town
    proof = prove(full, town.driver.public_key)
    checked, body = proof.verify(town.world.coop.public_key)
    assert checked.author == town.world.witness.public_key
    assert body.count == full.db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] > proof.index
    for forged in (proof.replace(account=proof.account.replace(balance=proof.account.balance + 10_000)),
                   proof.replace(index=proof.index + 1),
                   proof.replace(path=proof.path[:-1])):
        with pytest.raises(EntryRefused) as caught:
            forged.verify(town.world.coop.public_key)
        assert caught.value.rule is Rule.HEAD_MISMATCH
    with pytest.raises(EntryRefused) as caught:
        proof.verify(p.Identity.generate().public_key)  # another co-op's ledger
    assert caught.value.rule is Rule.UNTRUSTED_COOP
    with pytest.raises(p.DecodeError):
        AccountProof.decode(proof.encode()[:-3])


def light_host(town, path):
    """Host 2's light ledger: the co-op's and its treasurer's feeds, the driver's and its
    own, nothing else."""
    world = town.world
    keys = {world.coop.public_key, world.treasurer.public_key, town.driver.public_key, world.hosts[2].public_key}
    return LedgerStore(path, world.coop.public_key, clock=lambda: LATER), keys


def test_a_light_hosts_credit_check_is_never_above_the_full_ledgers(town, tmp_path):
    town, full = town
    driver = town.driver.public_key
    light, keys = light_host(town, tmp_path / "light.db")
    light.ingest([e for author in keys for e in full.entries(author, 0, full.state.size(author))])
    assert light.state.size(town.world.hosts[0].public_key) == 0  # host 0's settlement is not held here
    paid, claimed = (town.sessions[i].settlement.message.amount for i in (0, 2))
    new_hold = light.state.hold(driver, town.sessions[3].booking.id)
    full_credit = full.state.available(driver, "EUR", NIGHT, before=new_hold[0])
    assert full_credit == 3_000 - paid + 1_000 - claimed + 5_000  # every other hold is claimed or released
    # with no checkpoint, from zero: every hold the light ledger holds no claim or release
    # of counts, the first booking's among them (host 0 claimed it: counted at most)
    assert light_credit(light, driver, "EUR", before=new_hold[0]) == 3_000 + 1_000 - claimed + 5_000 - 2_000
    proof = prove(full, driver)
    assert keep(light, proof) and prove(light, driver) == proof  # kept: a wallet shows its balance from it
    credit = light_credit(light, driver, "EUR", before=new_hold[0])
    # the account at the cut (3,000 - the first session, the third booking's hold open),
    # plus what the light ledger holds past it: the deposit and host 2's claim of that
    # third booking (whose hold still counts until the next checkpoint)
    assert credit == 3_000 - paid - 2_000 + 1_000 - claimed + 5_000 == full_credit - 2_000
    assert light_credit(light, driver, "EUR") == credit - 2_000  # the hold past the cut counts in full


def test_the_newest_proof_is_kept_and_frees_what_was_claimed(town, tmp_path):
    town, full = town
    driver = town.driver.public_key
    older = prove(full, driver)
    sign_checkpoint(full, town.world.witness, town.world.charter, LATER - 10)
    newer = prove(full, driver)
    light, keys = light_host(town, tmp_path / "light.db")
    light.ingest([e for author in keys for e in full.entries(author, 0, full.state.size(author))])
    assert keep(light, newer) and not keep(light, older) and prove(light, driver) == newer
    assert light_credit(light, driver, "EUR") == full.state.available(driver, "EUR", LATER)  # nothing past its cut


def test_the_members_of_an_earlier_cut_are_read_from_the_coops_feed(town, tmp_path):
    town, full = town
    coop = town.world.coop.public_key
    for size in range(1, full.state.size(coop) + 1):  # the charter, then one admission more each time
        early = LedgerStore(tmp_path / f"coop{size}.db", coop, clock=lambda: LATER)
        early.ingest(full.entries(coop, 0, size))
        assert members_at(full, size) == sorted(early.state.names())
        early.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_audits_accounts_at_any_cut_are_what_a_witness_holding_that_cut_signs(data):
    """The walker (audit's way, moving each feed's pointer back and forth) and the
    witness's state (a store holding exactly the cut) agree at every cut."""
    town = Neighbourhood()
    entries = town.before + town.after
    authors = sorted({e.message.author for e in entries})
    with tempfile.TemporaryDirectory() as tmp:
        full = town.store(Path(tmp) / "full.db", entries)
        facts = {a: [f for f in map(check_entry, full.entries(a, 0, full.state.size(a))) if CutWalker.counts(f)]
                 for a in authors}
        walker = CutWalker(facts, "EUR")
        for step in range(3):
            coop = town.world.coop.public_key
            sizes = {a: data.draw(st.integers(1 if a == coop else 0, full.state.size(a)), label=f"cut {step}")
                     for a in authors}  # the co-op's feed from its charter on: some members admitted, or all
            cut = LedgerStore(Path(tmp) / f"cut{step}.db", coop, clock=lambda: LATER)
            cut.ingest([e for a in authors for e in full.entries(a, 0, sizes[a])])
            at = data.draw(st.sampled_from([NIGHT, LATER]), label="time")
            roots = {a: full.state.feeds[a].log.root_at(n) for a, n in sizes.items() if n}
            walked = walker.leaves(members_at(cut, sizes[coop]), town.world.charter_body(5_000),
                                   {a: n for a, n in sizes.items() if n}, roots, at)
            assert walked == [account.leaf() for account in accounts_of(cut.state, at)]
            cut.close()
        full.close()

