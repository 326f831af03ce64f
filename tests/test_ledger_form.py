"""The ledger's stored form of a settlement: the receipt chain packed, rebuilt exactly."""

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


def test_a_settlement_claim_packs_its_receipts_and_rebuilds_the_same_signed_receipts(session):
    wire = p.decode_cbor(claim_of(session).encode())
    assert sorted(wire) == ["booking", "readings", "settlement"]
    assert len(wire["readings"]) == 76 * len(session.receipts)  # t, energy_wh and the signature of each
    rebuilt = SettlementClaim.decode(claim_of(session).encode())  # every receipt signature verified
    assert [r.encode() for r in rebuilt.receipts] == [r.encode() for r in session.receipts]
    assert rebuilt.settlement.message.last_receipt == rebuilt.receipts[-1].digest
    assert rebuilt == claim_of(session)


def test_only_the_bookings_own_chain_of_receipts_can_be_claimed(world, session):
    receipts = session.receipts
    other = world.session(world.hosts[0], world.drivers[1], NIGHT + 86_400)
    by_driver = p.sign(world.drivers[0], receipts[1].message)
    for wrong in [receipts[1:], (receipts[0], receipts[2]), (receipts[0], by_driver), other.receipts[:2]]:
        with pytest.raises(p.InvalidValue, match="chain"):
            SettlementClaim(booking=session.booking, receipts=tuple(wrong), settlement=session.settlement)


@pytest.mark.parametrize("cut", [1, 75, 76 + 3])
def test_packed_readings_that_are_not_whole_receipts_are_malformed(tmp_path, world, session, cut):
    wire = p.decode_cbor(claim_of(session).encode())
    wire["readings"] = wire["readings"][:-cut]
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    store.ingest([world.charter_entry().encode()])
    with pytest.raises(EntryRefused) as caught:
        store.ingest([raw_entry(world, p.encode_cbor(wire))])
    assert caught.value.rule is Rule.MALFORMED and "packed receipts" in caught.value.detail
    assert store.sizes() == {world.coop.public_key: 1}


def test_a_changed_packed_signature_breaks_the_chain_or_the_signature(tmp_path, world, session):
    wire = p.decode_cbor(claim_of(session).encode())
    readings = bytearray(wire["readings"])
    readings[76 * 3 + 12] ^= 1  # receipt 3's signature
    wire["readings"] = bytes(readings)
    body = p.encode_cbor(wire)
    with pytest.raises(p.SignatureError):  # read on its own, every receipt signature is checked
        SettlementClaim.decode(body)
    store = LedgerStore(tmp_path / "l.db", world.coop.public_key, clock=world.clock)
    store.ingest([world.charter_entry().encode()])
    with pytest.raises(EntryRefused) as caught:  # in the host's own entry: its digests no longer chain
        store.ingest([raw_entry(world, body)])
    assert caught.value.rule is Rule.BROKEN_SESSION and caught.value.author == world.hosts[0].public_key
