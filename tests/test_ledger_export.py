"""Export: balances.csv equals the audit's balances; one honest OCPI CDR per counted settlement."""

import contextlib
import csv
import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattshare import protocol as p
from wattshare.ledger import AuditReport, Entry, EntryKind, LedgerStore, SettlementClaim, audit
from wattshare.ledger._export import BALANCES_HEADER, ExportSummary, cdr, export, write_balances
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600  # 22:00 in Berlin, 21:00 UTC
DAY = EPOCH + 86_400 + 10 * 3600
ADJUSTMENTS = {p.LineKind.MIN_PRICE, p.LineKind.MAX_PRICE, p.LineKind.SPEND_CAP}
COSTS = ("total_fixed_cost", "total_energy_cost", "total_time_cost", "total_parking_cost")


def utc(t):
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def claim_of(session):
    return SettlementClaim(booking=session.booking, receipts=session.receipts, settlement=session.settlement)


@pytest.fixture
def ledger(tmp_path):
    """Charter, deposits, and three settled sessions: plain, capped by the spend cap, parked."""
    world = SampleWorld(seed=5)
    sessions = {
        "plain": world.session(world.hosts[0], world.drivers[0], NIGHT),
        "capped": world.session(world.hosts[1], world.drivers[1], DAY, spend_cap=300),
        "parked": world.session(world.hosts[0], world.drivers[1], NIGHT + 2 * 86_400, power_w=0),
    }
    entries = [world.charter_entry(), world.money(world.drivers[0], 20_000, EPOCH + 1),
               world.money(world.drivers[1], 20_000, EPOCH + 2)]
    entries += [world.settlement_entry(s) for s in sessions.values()]
    path = tmp_path / "l.db"
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    store.ingest([e.encode() for e in entries])
    store.close()
    report = audit(path)
    assert report.ok, report.violations
    return path, report, world, sessions


@pytest.fixture
def exported(ledger, tmp_path):
    path, report, world, sessions = ledger
    before = hashlib.sha256(path.read_bytes()).digest()
    summary = export(path, report, tmp_path / "out" / "nested")
    assert hashlib.sha256(path.read_bytes()).digest() == before, "export must not change the ledger"
    cdrs = {name: json.loads((summary.out_dir / "cdrs" / f"{s.booking.id.hex()}.json").read_text())
            for name, s in sessions.items()}
    return summary, report, world, sessions, cdrs


def read_balances(out_dir):
    with open(out_dir / "balances.csv", newline="") as file:
        reader = csv.reader(file)
        return next(reader), list(reader)


def test_balances_csv_equals_the_audit_report(exported):
    summary, report, _, _, _ = exported
    header, rows = read_balances(summary.out_dir)
    assert header == ["member", "currency", "balance", "credit_limit", "balance_major"]
    expected = {(p.peer_id(m), c): (b, report.credit_limits[m]) for (m, c), b in report.balances.items()}
    assert {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows} == expected
    assert len(rows) == len(expected) == summary.balances_rows == 4  # two drivers, two hosts
    assert [(r[0], r[1]) for r in rows] == sorted(expected)
    assert all(r[4] == f"{Decimal(int(r[2])).scaleb(-2):.2f}" for r in rows)


def test_balance_major_uses_the_currency_digits(tmp_path):
    alice, bob = bytes(32), bytes([1]) * 32
    report = AuditReport(path="x", coop=bytes(32),
                         balances={(bob, "EUR"): 389, (alice, "JPY"): 1500, (alice, "EUR"): -5, (bob, "SEK"): 120_000},
                         credit_limits={alice: 5_000, bob: 0})
    assert write_balances(report, tmp_path / "balances.csv") == 4
    header, rows = read_balances(tmp_path)
    assert tuple(header) == BALANCES_HEADER
    a, b = p.peer_id(alice), p.peer_id(bob)
    assert sorted(rows) == rows
    assert {tuple(r) for r in rows} == {
        (b, "EUR", "389", "0", "3.89"),
        (a, "JPY", "1500", "5000", "1500"),
        (a, "EUR", "-5", "5000", "-0.05"),
        (b, "SEK", "120000", "0", "1200.00"),
    }


def test_one_cdr_per_settlement(exported):
    summary, _, _, sessions, _ = exported
    assert isinstance(summary, ExportSummary) and summary.cdrs == 3
    files = {f.name for f in (summary.out_dir / "cdrs").iterdir()}
    assert files == {f"{s.booking.id.hex()}.json" for s in sessions.values()}


def test_cdr_of_a_plain_session(exported):
    _, _, world, sessions, cdrs = exported
    session, record = sessions["plain"], cdrs["plain"]
    settlement, receipts = session.settlement.message, [r.message for r in session.receipts]
    assert not any(line.kind in ADJUSTMENTS for line in settlement.breakdown)
    assert record["id"] == session.booking.id.hex()
    assert (record["country_code"], record["party_id"], record["currency"]) == ("XX", "WSH", "EUR")
    assert record["total_cost"] == {"excl_vat": settlement.amount / 100} and settlement.amount > 0
    assert record["total_energy"] == receipts[-1].energy_wh / 1000 == 21.6
    assert sum(record[name]["excl_vat"] for name in COSTS) == pytest.approx(record["total_cost"]["excl_vat"])
    assert "remark" not in record
    assert len(record["charging_periods"]) == len(receipts) - 1 == 12
    assert (record["start_date_time"], record["end_date_time"]) == ("2026-11-18T21:00:00Z", "2026-11-19T00:00:00Z")
    assert (record["start_date_time"], record["end_date_time"]) == (utc(receipts[0].t), utc(receipts[-1].t))
    assert record["last_updated"] == utc(settlement.t)
    assert (record["total_time"], record["total_parking_time"]) == (3.0, 0.0)
    assert [period["start_date_time"] for period in record["charging_periods"]] == [utc(r.t) for r in receipts[:-1]]
    assert record["charging_periods"][0]["dimensions"] == [{"type": "ENERGY", "volume": 1.8},
                                                           {"type": "TIME", "volume": 0.25}]
    driver, host = p.peer_id(world.drivers[0].public_key), p.peer_id(world.hosts[0].public_key)
    assert record["cdr_token"] == {"country_code": "XX", "party_id": "WSH", "uid": driver,
                                   "type": "APP_USER", "contract_id": driver}
    assert record["cdr_location"]["id"] == host and record["cdr_location"]["evse_uid"] == "driveway"
    # where it is, as public as the ad: the cell's centre and the host's country (issue 19, item 7)
    lat, lon = p.geo.decode(session.booking.request.message.geohash)
    assert record["cdr_location"]["country"] == "DEU" and record["cdr_location"]["coordinates"] == {
        "latitude": f"{lat:.6f}", "longitude": f"{lon:.6f}"} and 52.5 < lat < 52.6


def test_cdr_carries_the_booked_tariff(exported):
    _, _, _, _, cdrs = exported
    (tariff,) = cdrs["plain"]["tariffs"]
    off_peak, day = tariff["elements"]
    assert off_peak["price_components"] == [{"type": "ENERGY", "price": 0.12, "step_size": 1}]
    assert off_peak["restrictions"] == {"start_time": "23:00", "end_time": "07:00",
                                        "day_of_week": [d.value for d in p.DayOfWeek]}
    assert day == {"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}
    assert tariff["currency"] == "EUR" and tariff["last_updated"] == utc(NIGHT - 3600)
    assert "Europe/Berlin" in tariff["tariff_alt_text"][0]["text"]


def test_spend_cap_is_a_remark_not_a_dimension(exported):
    _, _, _, sessions, cdrs = exported
    record, lines = cdrs["capped"], sessions["capped"].settlement.message.breakdown
    assert [line.kind for line in lines if line.kind in ADJUSTMENTS] == [p.LineKind.SPEND_CAP]
    assert record["total_cost"] == {"excl_vat": 3.0}
    cap = next(line.amount for line in lines if line.kind is p.LineKind.SPEND_CAP)
    assert record["remark"] == f"Total adjusted by SPEND_CAP {p.format_amount(cap, 'EUR')} EUR"
    assert sum(record[name]["excl_vat"] for name in COSTS) == pytest.approx(3.0 - cap / 100)


def test_idle_session_is_parking_time(exported):
    _, _, _, _, cdrs = exported
    record = cdrs["parked"]
    types = {d["type"] for period in record["charging_periods"] for d in period["dimensions"]}
    assert types == {"ENERGY", "PARKING_TIME"}
    assert (record["total_energy"], record["total_time"], record["total_parking_time"]) == (0.0, 3.0, 3.0)
    assert record["total_cost"] == {"excl_vat": 0.0}


def test_access_info_never_leaks(exported, ledger):
    summary, _, world, sessions, _ = exported
    store = LedgerStore(ledger[0], world.coop.public_key, clock=world.clock)
    entries = [envelope for author in store.sizes() for envelope in store.entries(author, 0, store.sizes()[author])]
    assert len(entries) >= len(sessions)

    def blobs(value):
        if isinstance(value, bytes):
            yield value
            with contextlib.suppress(p.DecodeError):
                yield from blobs(p.decode_cbor(value))  # envelopes and bodies nest as bytes
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from blobs(item)
        elif isinstance(value, dict):
            for item in value.values():
                yield from blobs(item)

    for driver in world.drivers:  # a driver's key, stolen years later, opens nothing on the ledger
        for envelope in entries:
            for blob in blobs(envelope):
                with pytest.raises(p.DecodeError):
                    p.open_access(driver, blob)
    for name, session in sessions.items():
        text = (summary.out_dir / "cdrs" / f"{session.booking.id.hex()}.json").read_text()
        for secret in ("12 Acacia Avenue", "Acacia", "4711"):
            assert secret not in text, f"{secret!r} leaked into the {name} CDR"
    assert "4711" not in (summary.out_dir / "balances.csv").read_text()


def test_dimension_costs_and_tariff_conversion():
    world = SampleWorld(seed=6)
    world.tariff = p.Tariff(currency="EUR", min_price=100, elements=(
        p.TariffElement(
            price_components=(p.PriceComponent(type=p.Dimension.FLAT, price=100_000),
                              p.PriceComponent(type=p.Dimension.ENERGY, price=25_000, step_size=100),
                              p.PriceComponent(type=p.Dimension.TIME, price=120_000, step_size=60)),
            restrictions=p.TariffRestrictions(max_wh=50_000, min_power_w=3_700, max_power_w=11_000,
                                              max_duration=86_400),
        ),
        p.TariffElement(price_components=(p.PriceComponent(type=p.Dimension.PARKING_TIME, price=600_000),),
                        restrictions=p.TariffRestrictions(min_wh=1_000, min_duration=600)),
    ))
    record = cdr(claim_of(world.session(world.hosts[0], world.drivers[0], DAY)))
    # 1.00 flat + 21.6 kWh x 0.25 + 3 h x 1.20
    assert {name: record[name]["excl_vat"] for name in COSTS} == {
        "total_fixed_cost": 1.0, "total_energy_cost": 5.4, "total_time_cost": 3.6, "total_parking_cost": 0.0}
    assert record["total_cost"] == {"excl_vat": 10.0}
    first, second = record["tariffs"][0]["elements"]
    assert first["price_components"] == [{"type": "FLAT", "price": 1.0, "step_size": 1},
                                         {"type": "ENERGY", "price": 0.25, "step_size": 100},
                                         {"type": "TIME", "price": 1.2, "step_size": 60}]
    assert first["restrictions"] == {"max_kwh": 50.0, "min_power": 3.7, "max_power": 11.0, "max_duration": 86_400}
    assert second == {"price_components": [{"type": "PARKING_TIME", "price": 6.0, "step_size": 1}],
                      "restrictions": {"min_kwh": 1.0, "min_duration": 600}}
    assert record["tariffs"][0]["min_price"] == {"excl_vat": 1.0} and "max_price" not in record["tariffs"][0]


def test_zero_decimal_currency():
    world = SampleWorld(seed=7)
    world.tariff = p.Tariff(currency="JPY", elements=(
        p.TariffElement(price_components=(p.PriceComponent(type=p.Dimension.ENERGY, price=30_000),)),))
    session = world.session(world.hosts[0], world.drivers[0], DAY)
    record = cdr(claim_of(session))
    assert session.settlement.message.amount == 648  # 21.6 kWh x 30 JPY
    assert record["total_cost"] == {"excl_vat": 648} and record["currency"] == "JPY"
    assert record["tariffs"][0]["elements"][0]["price_components"][0]["price"] == 30


def test_frozen_feeds_are_not_exported(tmp_path):
    world = SampleWorld(seed=8)
    honest = world.session(world.hosts[0], world.drivers[0], NIGHT)
    first = world.session(world.hosts[1], world.drivers[1], NIGHT)
    second = world.session(world.hosts[1], world.drivers[1], DAY)
    forker = world.hosts[1]
    fork = p.sign(forker, Entry(author=forker.public_key, seq=0, prev=p.GENESIS, t=second.settlement.message.t,
                                kind=EntryKind.SETTLEMENT, body=claim_of(second).encode()))
    entries = [world.charter_entry(), world.money(world.drivers[0], 20_000, EPOCH + 1),
               world.settlement_entry(honest), world.settlement_entry(first), fork]
    path = tmp_path / "l.db"
    store = LedgerStore(path, world.coop.public_key, clock=world.clock)
    store.ingest([e.encode() for e in entries])
    store.close()
    with sqlite3.connect(path) as conn:
        frozen = conn.execute("SELECT COUNT(*) FROM entries WHERE frozen = 1 AND kind = 'settlement'").fetchone()
    assert frozen == (1,)  # the precondition: the forker's stored settlement is frozen
    summary = export(path, audit(path), tmp_path / "out")
    assert summary.cdrs == 1
    assert [f.name for f in (tmp_path / "out" / "cdrs").iterdir()] == [f"{honest.booking.id.hex()}.json"]


@settings(max_examples=20)
@given(hours=st.integers(1, 8), power_w=st.integers(0, 22_000), start=st.integers(0, 7 * 86_400 // 900),
       spend_cap=st.integers(1, 5_000))
def test_cdr_adds_up(hours, power_w, start, spend_cap):
    world = SampleWorld(seed=9)
    session = world.session(world.hosts[0], world.drivers[0], EPOCH + start * 900, hours=hours, power_w=power_w,
                            spend_cap=spend_cap)
    record, settlement = cdr(claim_of(session)), session.settlement.message
    periods = record["charging_periods"]
    assert len(periods) == len(session.receipts) - 1
    volumes = [d for period in periods for d in period["dimensions"]]
    assert sum(d["volume"] for d in volumes if d["type"] == "ENERGY") == pytest.approx(record["total_energy"])
    assert sum(d["volume"] for d in volumes if d["type"] != "ENERGY") == pytest.approx(record["total_time"])
    assert record["total_time"] == hours
    adjusted = sum(line.amount for line in settlement.breakdown if line.kind in ADJUSTMENTS)
    assert sum(record[name]["excl_vat"] for name in COSTS) + adjusted / 100 == pytest.approx(settlement.amount / 100)
    assert ("remark" in record) == any(line.kind in ADJUSTMENTS for line in settlement.breakdown)
