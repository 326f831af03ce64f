"""The ledger's stored form of a settlement: the host's messages packed, rebuilt exactly."""

import pytest

from wattshare import protocol as p
from wattshare.ledger import Entry, EntryKind, EntryRefused, LedgerStore, Rule, SettlementClaim
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600


@pytest.fixture
def world():
    return SampleWorld(seed=17)


@pytest.fixture
def session(world):
    return world.session(world.hosts[0], world.drivers[0], NIGHT)


def claim_of(session):
    return SettlementClaim(booking=session.booking, receipts=session.receipts, settlement=session.settlement)


def raw_entry(world, body: bytes):
    """The host's first entry, with a body as given (bytes no honest encoder would write)."""
    host = world.hosts[0]
    return p.sign(host, Entry(author=host.public_key, seq=0, prev=p.GENESIS, t=NIGHT + 86_400,
                              kind=EntryKind.SETTLEMENT, body=body)).encode()


def test_a_settlement_claim_packs_the_hosts_messages_and_rebuilds_the_same_signed_ones(session):
    wire = p.decode_cbor(claim_of(session).encode())
    assert list(wire) == ["request", "readings", "settlement", "confirmation"]
    assert len(wire["readings"]) == 72 * len(session.receipts)  # t, energy_wh and the signature of each
    assert len(wire["confirmation"]) == 104 and sorted(wire["settlement"]) == ["amount", "breakdown", "sig", "t"]
    assert wire["request"] == session.booking.request.to_wire()  # the driver's request, verbatim
    rebuilt = SettlementClaim.decode(claim_of(session).encode())  # every signature verified
    assert [r.encode() for r in rebuilt.receipts] == [r.encode() for r in session.receipts]
    assert rebuilt.booking.confirmation.encode() == session.booking.confirmation.encode()
    assert rebuilt.settlement.encode() == session.settlement.encode()
    assert rebuilt == claim_of(session)


def test_only_what_the_packed_form_can_say_can_be_claimed(world, session):
    receipts, host = session.receipts, world.hosts[0]
    other = world.session(world.hosts[0], world.drivers[1], NIGHT + 86_400)
    by_driver = p.sign(world.drivers[0], receipts[1].message)
    for wrong in [receipts[1:], (receipts[0], receipts[2]), (receipts[0], by_driver), other.receipts[:2]]:
        with pytest.raises(p.InvalidValue, match="chain"):
            SettlementClaim(booking=session.booking, receipts=tuple(wrong), settlement=session.settlement)
    closes = session.settlement.message
    for change in [{"last_receipt": receipts[-2].digest}, {"energy_wh": closes.energy_wh + 1},
                   {"booking_id": other.booking.id}, {"currency": "SEK"}]:
        with pytest.raises(p.InvalidValue, match="settlement does not close"):
            SettlementClaim(booking=session.booking, receipts=receipts,
                            settlement=p.sign(host, closes.replace(**change)))


@pytest.mark.parametrize("cut", [1, 71, 72 + 3])
def test_packed_readings_that_are_not_whole_receipts_are_malformed(tmp_path, world, session, cut):
    wire = p.decode_cbor(claim_of(session).encode())
    wire["readings"] = wire["readings"][:-cut]
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    store.ingest([world.charter_entry().encode()])
    with pytest.raises(EntryRefused) as caught:
        store.ingest([raw_entry(world, p.encode_cbor(wire))])
    assert caught.value.rule is Rule.MALFORMED and "packed receipts" in caught.value.detail
    assert store.sizes() == {world.coop.public_key: 1}


def test_inside_a_hosts_entry_its_own_signatures_are_bound_by_the_entry_the_drivers_are_verified(tmp_path, world,
                                                                                                 session):
    """A packed receipt signature is the host's, inside the host's signed entry (vouched
    for, as embedded receipts always were): changed, it is still the host's claim, but no
    longer the settlement the driver holds, so the driver's answer would name another.
    The driver's own signature, on the request, is always verified."""
    wire = p.decode_cbor(claim_of(session).encode())
    readings = bytearray(wire["readings"])
    readings[72 * 3 + 12] ^= 1  # receipt 3's signature
    changed = p.encode_cbor(wire | {"readings": bytes(readings)})
    with pytest.raises(p.SignatureError):  # read on its own, every signature is checked
        SettlementClaim.decode(changed)
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=lambda: NIGHT + 10 * 86_400)
    store.ingest([world.charter_entry().encode()])
    request = dict(wire["request"], sig=bytes(64))
    with pytest.raises(EntryRefused) as caught:
        store.ingest([raw_entry(world, p.encode_cbor(wire | {"request": request}))])
    assert caught.value.rule is Rule.SIGNATURE and store.sizes() == {world.coop.public_key: 1}
    store.ingest([raw_entry(world, changed)])
    stored = store.host_claim(session.booking.id)
    assert stored.settlement.message.last_receipt != session.settlement.message.last_receipt
    assert stored.settlement.digest != session.settlement.digest


def test_a_ledger_file_of_the_older_format_is_refused_with_what_to_do(tmp_path, world):
    import sqlite3

    from wattshare.ledger import StoreError

    path = tmp_path / "l.db"
    LedgerStore(path, world.coop.public_key).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (16384,)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", [bytes([2])])
    with pytest.raises(StoreError, match="older wattshare .ledger format 2; this one reads format 3."):
        LedgerStore(path, world.coop.public_key)


def test_a_large_envelope_is_stored_deflated_with_the_files_dictionary_and_read_back_exactly(tmp_path, world, session):
    import sqlite3
    import zlib

    from wattshare.ledger import Envelopes, audit

    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    charter = world.charter_entry()
    entry = world.settlement_entry(session)
    store.ingest([charter.encode(), entry.encode()])
    assert store.entries(world.hosts[0].public_key, 0, 1) == [entry.encode()]
    store.close()
    with sqlite3.connect(tmp_path / "l.db") as conn:
        stored = conn.execute("SELECT envelope FROM entries WHERE kind = 'settlement'").fetchone()[0]
        dictionary = conn.execute("SELECT value FROM meta WHERE key = 'dictionary'").fetchone()[0]
        assert stored[0] == 0 and len(stored) < 0.8 * len(entry.encode())
        assert b"booking_id" in dictionary and b"settlement" in dictionary
        assert Envelopes(dictionary).unpack(stored) == entry.encode()
        bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
        conn.execute("UPDATE entries SET envelope = ? WHERE kind = 'settlement'",
                     [b"\0" + bomb.compress(bytes(10 * 2**20)) + bomb.flush()])  # 10 MiB of zeros, 10 KB stored
    report = audit(tmp_path / "l.db")  # the bomb is not inflated past the entry cap: a malformed entry, named
    host = world.hosts[0].public_key
    assert [(v.rule, v.author, v.seq) for v in report.violations[:2]] == [(Rule.MALFORMED, host, 0)] * 2
    assert {v.rule for v in report.violations[2:]} == {Rule.BALANCE_MISMATCH}
