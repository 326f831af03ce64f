"""The charger advertisement: what a host publishes, and when its charger is bookable.

Theory of operation (DESIGN.md, "Charger advertisement and search"):

- A `ChargerAd` is signed by its host (`AUTHOR = "host"`). A newer `seq` replaces an
  older ad for the same (host, charger_id); past `expires` it is dropped.
- Location is a geohash of precision 7 (about 150 m): the exact address is never in
  an ad; it travels only sealed to a driver inside a booking confirmation.
- Connectors use OCPI's ConnectorType values, so an ad can be turned into an OCPI
  Location without a lookup table.
- Availability is weekly windows in the charger's local time (an end at or before the
  start wraps past midnight: 22:00-07:00 is overnight; 00:00-00:00 is the whole day)
  plus dated exceptions in UTC seconds that add (`available=True`) or remove time;
  removals win. `is_available` says whether a whole booking window is covered.
- `BookingTerms` mirror the booking terms of OCPI 2.3 (cancel_until_minutes,
  noshow_timeout, noshow_fee) plus what a neighbour's wallbox needs: a late-cancel
  fee, how early a start may come, and how long a driver may dispute a settlement.
  Money is in minor units of the tariff's currency.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from . import _clock, _geo
from ._record import KEY_SIZE, Message, Record, message, record, require, require_range, require_size
from ._tariff import DayOfWeek, Tariff, require_days

AD_MAX_LIFETIME = 7 * 24 * 3600  # an ad must be re-signed at least weekly
GEOHASH_PRECISION = 7


class Connector(StrEnum):
    """OCPI 2.2.1 / 2.3 ConnectorType values of the connectors home chargers have."""

    TYPE_2 = "IEC_62196_T2"
    CCS2 = "IEC_62196_T2_COMBO"
    CHADEMO = "CHADEMO"
    J1772 = "IEC_62196_T1"
    NACS = "SAE_J3400"
    GBT_AC = "GBT_AC"
    GBT_DC = "GBT_DC"
    SCHUKO = "DOMESTIC_F"

    @property
    def label(self) -> str:
        """The name drivers know it by."""
        return _CONNECTOR_LABELS[self]


_CONNECTOR_LABELS = {
    Connector.TYPE_2: "Type 2",
    Connector.CCS2: "CCS2",
    Connector.CHADEMO: "CHAdeMO",
    Connector.J1772: "J1772",
    Connector.NACS: "NACS",
    Connector.GBT_AC: "GB/T AC",
    Connector.GBT_DC: "GB/T DC",
    Connector.SCHUKO: "Schuko",
}


@record
class WeeklyWindow(Record):
    days: tuple[DayOfWeek, ...]
    start: str  # local "HH:MM"
    end: str  # local "HH:MM"; at or before start: ends the next day

    def _validate(self) -> None:
        require_size("days", self.days, 1, 7)
        require_days("days", self.days)
        _clock.parse_hhmm(self.start)
        _clock.parse_hhmm(self.end)


@record
class AvailabilityException(Record):
    start: int  # UTC seconds
    end: int
    available: bool  # True adds time (an extra evening), False removes it (holiday)

    def _validate(self) -> None:
        require_range("start", self.start, 0)
        require(self.end > self.start, "an exception must end after it starts")


@record
class BookingTerms(Record):
    cancel_until_minutes: int = 60  # free cancellation until this long before the start
    cancel_fee: int = 0  # minor units, charged for a later cancellation
    noshow_timeout_minutes: int = 30  # no start this long after the window opens: no-show
    noshow_fee: int = 0  # minor units
    early_start_minutes: int = 5  # a start this much before the window is still accepted
    dispute_window_minutes: int = 7 * 24 * 60  # a host-only settlement can be disputed this long

    def _validate(self) -> None:
        for name in (
            "cancel_until_minutes",
            "cancel_fee",
            "noshow_timeout_minutes",
            "noshow_fee",
            "early_start_minutes",
            "dispute_window_minutes",
        ):
            require_range(name, getattr(self, name), 0, 10**9)

    def cancel_fee_at(self, start: int, t: int) -> int:
        """What a driver's cancel at `t` owes for a window starting at `start`: nothing
        until `cancel_until_minutes` before it, `cancel_fee` after."""
        return self.cancel_fee if t > start - self.cancel_until_minutes * 60 else 0

    def opening(self, start: int) -> int:
        """When charging may start for a window starting at `start`: the early-start grace before it."""
        return start - self.early_start_minutes * 60


def is_country(code: str) -> bool:
    """The shape of an ISO 3166-1 alpha-3 code: three capital letters."""
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


@message("charger_ad")
class ChargerAd(Message):
    AUTHOR = "host"

    host: bytes
    charger_id: str
    seq: int
    expires: int  # UTC seconds
    geohash: str  # precision 7: about 150 m; never the exact address
    country: str  # ISO 3166-1 alpha-3, as OCPI locations give it
    tz: str  # IANA zone of the charger: tariff and availability are in its local time
    connector: Connector
    max_power_w: int
    tariff: Tariff
    terms: BookingTerms
    availability: tuple[WeeklyWindow, ...]
    exceptions: tuple[AvailabilityException, ...] = ()
    notes: str = ""

    def _validate(self) -> None:
        require_size("host", self.host, KEY_SIZE, KEY_SIZE)
        require_size("charger_id", self.charger_id, 1, 64)
        require(self.charger_id.isprintable(), "charger_id must be printable")
        require_range("seq", self.seq, 0)
        require_range("expires", self.expires, 0)
        require(_geo.is_valid(self.geohash, GEOHASH_PRECISION), "geohash must be a precision-7 geohash")
        require(is_country(self.country), "country must be an ISO 3166-1 alpha-3 code (three capital letters)")
        _clock.zone(self.tz)
        require_range("max_power_w", self.max_power_w, 1, 1_000_000)
        require_size("availability", self.availability, 0, 64)
        require_size("exceptions", self.exceptions, 0, 256)
        require_size("notes", self.notes, 0, 500)

    @property
    def key(self) -> tuple[bytes, str]:
        """What a newer seq replaces: one ad per (host, charger)."""
        return (self.host, self.charger_id)

    def is_available(self, start: int, end: int) -> bool:
        """True if the whole window [start, end) is inside this charger's availability."""
        require(end > start, "a window must end after it starts")
        zone = _clock.zone(self.tz)
        spans = [(x.start, x.end) for x in self.exceptions if x.available]
        first = _clock.local_time(zone, start).date() - dt.timedelta(days=1)
        last = _clock.local_time(zone, end).date()
        day = first
        while day <= last:
            weekday = DayOfWeek.of_weekday(day.weekday())
            for window in self.availability:
                if weekday in window.days:
                    open_minute = _clock.parse_hhmm(window.start)
                    close_minute = _clock.parse_hhmm(window.end)
                    close_day = day if close_minute > open_minute else day + dt.timedelta(days=1)
                    spans.append(
                        (
                            _clock.local_instant(zone, day, open_minute),
                            _clock.local_instant(zone, close_day, close_minute),
                        )
                    )
            day += dt.timedelta(days=1)
        if any(x.start < end and start < x.end for x in self.exceptions if not x.available):
            return False
        covered = start
        for span_start, span_end in sorted(spans):
            if span_start > covered:
                break
            covered = max(covered, span_end)
            if covered >= end:
                return True
        return False
