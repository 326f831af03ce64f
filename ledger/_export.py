"""Export a ledger file for accountants and roaming tools: balances as CSV, sessions as OCPI CDRs.

`export(path, report, out_dir)` writes, for the ledger at `path` and its `audit` report:

- `balances.csv`: the report's recomputed balances, one row per (member, currency),
  members as peer ids, amounts in minor units plus `balance_major` in major units
  (ISO 4217 digits, `protocol.minor_digits`), sorted by member, then currency.
- `cdrs/<booking id hex>.json`: one OCPI 2.2.1 CDR (module cdrs) per settlement entry
  that is not frozen (a forked feed counts for nothing), read from the file opened
  read-only and decoded as audit decodes it.

Decisions:
- A neighbour is no registered CPO: CDRs and tariffs are issued as country "XX", party
  "WSH". Ids are whole booking ids (64 hex digits) and peer ids (52 characters), longer
  than OCPI's 36/39-character ids: shortened ids could collide.
- The exact address is never exported: it and the access code exist only sealed to the
  driver in the host's confirmation, of which nothing is copied. The location reads
  "withheld", country "XXX", coordinates 0,0; the connector is a home wallbox's
  (Type 2 cable, AC 3-phase), as the booking does not name one.
- Amounts are what the driver pays; a neighbour charges no VAT: `excl_vat` only.
  Dimension costs are the settlement's breakdown lines; MIN_PRICE, MAX_PRICE and
  SPEND_CAP adjustments have no OCPI dimension: `remark` lists them (and then the
  dimension costs do not add up to `total_cost`).
- A charging period per receipt interval: ENERGY (kWh) and TIME (hours) if energy grew,
  else PARKING_TIME. As in OCPI, `total_time` is the whole session, parking included.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from wattshare.protocol import (
    PRICE_SCALE,
    BookingRequest,
    Connector,
    LineKind,
    MeterReceipt,
    TariffRestrictions,
    format_amount,
    geo,
    minor_digits,
    peer_id,
)

from ._audit import open_readonly
from ._entry import EntryKind, SettlementClaim
from ._findings import AuditReport
from ._rules import decode_entry, entry_body

COUNTRY_CODE = "XX"
PARTY_ID = "WSH"
BALANCES_HEADER = ("member", "currency", "balance", "credit_limit", "balance_major")
_COST_FIELDS = {LineKind.FLAT: "total_fixed_cost", LineKind.ENERGY: "total_energy_cost",
                LineKind.TIME: "total_time_cost", LineKind.PARKING_TIME: "total_parking_cost"}


@dataclass(frozen=True)
class ExportSummary:
    out_dir: Path
    balances_rows: int
    cdrs: int


def export(path: Path | str, report: AuditReport, out_dir: Path | str) -> ExportSummary:
    """Write balances.csv and cdrs/*.json into `out_dir` (created; see the module doc)."""
    out_dir = Path(out_dir)
    cdr_dir = out_dir / "cdrs"
    cdr_dir.mkdir(parents=True, exist_ok=True)
    rows = write_balances(report, out_dir / "balances.csv")
    count = 0
    for claim in settlement_claims(Path(path)):
        with open(cdr_dir / f"{claim.booking.id.hex()}.json", "w", encoding="utf-8") as file:
            json.dump(cdr(claim), file, indent=2, sort_keys=True)
        count += 1
    return ExportSummary(out_dir, rows, count)


def write_balances(report: AuditReport, target: Path) -> int:
    """Write the balances CSV; returns its number of data rows."""
    rows = sorted(
        (peer_id(member), currency, balance, report.credit_limits.get(member, 0))
        for (member, currency), balance in report.balances.items()
    )
    with open(target, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(BALANCES_HEADER)
        writer.writerows((*row, format_amount(row[2], row[1])) for row in rows)
    return len(rows)


def settlement_claims(path: Path) -> Iterator[SettlementClaim]:
    """The settlement claims of the ledger file's entries that are not frozen, by feed."""
    conn = open_readonly(path)
    try:
        envelopes = conn.execute(
            "SELECT unpacked(envelope) FROM entries WHERE kind = ? AND frozen = 0 ORDER BY author, seq",
            [EntryKind.SETTLEMENT.value],
        ).fetchall()
    finally:
        conn.close()
    for (envelope,) in envelopes:
        yield entry_body(decode_entry(envelope))


def cdr(claim: SettlementClaim) -> dict[str, Any]:
    """The OCPI 2.2.1 CDR of one settled session."""
    request = claim.booking.request.message
    settlement = claim.settlement.message
    receipts = [signed.message for signed in claim.receipts]
    currency = settlement.currency
    booking_id = claim.booking.id.hex()
    driver = peer_id(request.driver)
    costs = dict.fromkeys(_COST_FIELDS.values(), 0)
    adjustments = []
    for line in settlement.breakdown:
        if line.kind in _COST_FIELDS:
            costs[_COST_FIELDS[line.kind]] += line.amount
        else:
            adjustments.append(f"{line.kind.value} {format_amount(line.amount, currency)} {currency}")
    intervals = list(pairwise(receipts))
    record: dict[str, Any] = {
        "country_code": COUNTRY_CODE, "party_id": PARTY_ID, "id": booking_id,
        "start_date_time": _datetime(receipts[0].t),
        "end_date_time": _datetime(receipts[-1].t),
        "cdr_token": {"country_code": COUNTRY_CODE, "party_id": PARTY_ID, "uid": driver,
                      "type": "APP_USER", "contract_id": driver},
        "auth_method": "COMMAND",
        "cdr_location": _location(request),
        "currency": currency,
        "tariffs": [_tariff(booking_id, request)],
        "charging_periods": [_period(a, b) for a, b in intervals],
        "total_cost": _price(settlement.amount, currency),
        **{name: _price(amount, currency) for name, amount in costs.items()},
        "total_energy": _number(settlement.energy_wh, 1000),  # Wh since the session start
        "total_time": _hours(receipts[-1].t - receipts[0].t),
        "total_parking_time": _hours(sum(b.t - a.t for a, b in intervals if b.energy_wh == a.energy_wh)),
        "last_updated": _datetime(settlement.t),
    }
    if adjustments:
        record["remark"] = "Total adjusted by " + "; ".join(adjustments)
    return record


def _location(request: BookingRequest) -> dict[str, Any]:
    """Where the charger is, as public as its ad: the centre of its geohash-7 cell (about
    150 m across) and its country; the street address is withheld (it is only ever sealed
    to a booked driver)."""
    lat, lon = geo.decode(request.geohash)
    return {
        "id": peer_id(request.host), "address": "withheld", "city": "withheld", "country": request.country,
        "coordinates": {"latitude": f"{lat:.6f}", "longitude": f"{lon:.6f}"},
        "evse_uid": request.charger_id, "evse_id": request.charger_id, "connector_id": "1",
        "connector_standard": Connector.TYPE_2.value, "connector_format": "CABLE", "connector_power_type": "AC_3_PHASE",
    }


def _tariff(tariff_id: str, request: BookingRequest) -> dict[str, Any]:
    """The booked tariff as an OCPI Tariff: prices per kWh / hour / session in major units."""
    tariff = request.tariff
    price_unit = PRICE_SCALE * 10 ** minor_digits(tariff.currency)
    elements: list[dict[str, Any]] = []
    for element in tariff.elements:
        components = [{"type": c.type.value, "price": _number(c.price, price_unit), "step_size": c.step_size}
                      for c in element.price_components]
        elements.append({"price_components": components})
        if element.restrictions is not None and (restrictions := _restrictions(element.restrictions)):
            elements[-1]["restrictions"] = restrictions
    window = f"{_datetime(request.start)} to {_datetime(request.end)}"
    record: dict[str, Any] = {
        "country_code": COUNTRY_CODE, "party_id": PARTY_ID, "id": tariff_id, "currency": tariff.currency,
        "elements": elements,
        "tariff_alt_text": [{"language": "en", "text":
                             f"Booked for {window}; start_time and end_time are local time in {request.tz}."}],
        "last_updated": _datetime(request.created),
    }
    for name in ("min_price", "max_price"):
        if (limit := getattr(tariff, name)) is not None:
            record[name] = _price(limit, tariff.currency)
    return record


def _restrictions(restrictions: TariffRestrictions) -> dict[str, Any]:
    """OCPI restrictions: energy in kWh and power in kW instead of Wh and W; unset ones omitted."""
    converted: dict[str, Any] = {
        "start_time": restrictions.start_time, "end_time": restrictions.end_time,
        "day_of_week": [day.value for day in restrictions.day_of_week] or None,
        "min_duration": restrictions.min_duration, "max_duration": restrictions.max_duration,
    }
    for ours, theirs in (("min_wh", "min_kwh"), ("max_wh", "max_kwh"),
                         ("min_power_w", "min_power"), ("max_power_w", "max_power")):
        value = getattr(restrictions, ours)
        converted[theirs] = None if value is None else _number(value, 1000)
    return {name: value for name, value in converted.items() if value is not None}


def _period(a: MeterReceipt, b: MeterReceipt) -> dict[str, Any]:
    gained = b.energy_wh - a.energy_wh
    return {
        "start_date_time": _datetime(a.t),
        "dimensions": [
            {"type": "ENERGY", "volume": _number(gained, 1000)},
            {"type": "TIME" if gained else "PARKING_TIME", "volume": _hours(b.t - a.t)},
        ],
    }


def _price(minor: int, currency: str) -> dict[str, Any]:
    return {"excl_vat": _number(minor, 10 ** minor_digits(currency))}


def _number(value: int, divisor: int) -> float:
    """value / divisor as a JSON number, computed in decimal (exact for powers of ten)."""
    return float(Decimal(value) / divisor)


def _hours(seconds: int) -> float:
    return round(seconds / 3600, 4)


def _datetime(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
