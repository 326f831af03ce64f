"""Tariffs, mirroring OCPI 2.2.1 (module Tariffs), with integer prices.

Theory of operation (DESIGN.md, "Tariffs"):

- A `Tariff` is a currency and an ordered list of `TariffElement`s; each element has
  price components (ENERGY per kWh, FLAT per session, TIME per hour charging,
  PARKING_TIME per hour plugged in but idle) and optional restrictions. As in OCPI, for
  each dimension the *first* element that has a component of that dimension and whose
  restrictions all hold prices that moment; with none, that dimension is free.
- Prices are integers in thousandths of the currency's minor unit (`PRICE_SCALE`):
  0.12 EUR/kWh is 12 cents/kWh is `price=12_000`. Step sizes are in Wh (ENERGY) and
  seconds (TIME, PARKING_TIME), as in OCPI. Prices are what the driver pays (a
  neighbour is not a VAT-registered operator), so there is no VAT field.
- Restrictions use OCPI's names where the unit allows (`start_time`, `end_time`,
  `day_of_week`, `min/max_duration` in seconds) and integer units elsewhere
  (`min/max_wh` for OCPI's kWh, `min/max_power_w` for kW; current in A is not used: a
  home wallbox's power is what the meter sees). Lower bounds are inclusive, upper bounds
  exclusive. `start_time`/`end_time` are local wall time in the charger's zone; an
  end before the start wraps past midnight (23:00-07:00 off-peak); day_of_week is
  checked against the local date at that moment.
- `min_price` / `max_price` (minor units) bound a session's total, as in OCPI.
"""

from __future__ import annotations

import re
from enum import StrEnum

from ._clock import parse_hhmm
from ._record import Record, record, require, require_range, require_size

PRICE_SCALE = 1000  # prices are in 1/1000 of the currency's minor unit
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "ISK", "CLP", "VND", "UGX", "XAF", "XOF"})  # ISO 4217 exponent 0
_CURRENCY = re.compile(r"[A-Z]{3}")
_MAX_PRICE = 10**12  # 10 million major units per kWh/hour: far above any real tariff


class DayOfWeek(StrEnum):
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"

    @classmethod
    def of_weekday(cls, weekday: int) -> DayOfWeek:
        """From Python's `date.weekday()` (Monday is 0)."""
        return _WEEK[weekday]


_WEEK = tuple(DayOfWeek)


class Dimension(StrEnum):
    ENERGY = "ENERGY"
    FLAT = "FLAT"
    TIME = "TIME"
    PARKING_TIME = "PARKING_TIME"


def minor_digits(currency: str) -> int:
    """Digits of the currency's minor unit (ISO 4217 exponent): 2 for EUR, 0 for JPY."""
    return 0 if currency in _ZERO_DECIMAL else 2


def format_amount(minor: int, currency: str) -> str:
    """Minor units as a decimal string in major units: 389 EUR -> "3.89"."""
    digits = minor_digits(currency)
    if not digits:
        return str(minor)
    sign, value = ("-" if minor < 0 else ""), abs(minor)
    return f"{sign}{value // 10**digits}.{value % 10**digits:0{digits}d}"


def require_days(name: str, days: tuple[DayOfWeek, ...]) -> None:
    require(len(set(days)) == len(days), f"{name} lists a day twice")


@record
class PriceComponent(Record):
    """One price of a tariff element (OCPI PriceComponent)."""

    type: Dimension
    price: int  # PRICE_SCALE units of the minor unit, per kWh / per hour / per session
    step_size: int = 1  # Wh for ENERGY, seconds for TIME and PARKING_TIME; 1 for FLAT

    def _validate(self) -> None:
        require_range("price", self.price, 0, _MAX_PRICE)
        require_range("step_size", self.step_size, 1, 86_400)


@record
class TariffRestrictions(Record):
    """When a tariff element applies (OCPI TariffRestrictions); a bound that is null does not restrict."""

    start_time: str | None = None  # local "HH:MM", inclusive; after end_time: the span wraps past midnight
    end_time: str | None = None  # local "HH:MM", exclusive
    day_of_week: tuple[DayOfWeek, ...] = ()  # local days it applies on; empty: every day
    min_wh: int | None = None  # Wh delivered in the session so far, inclusive
    max_wh: int | None = None  # Wh delivered in the session so far, exclusive
    min_power_w: int | None = None  # W of the interval being priced, inclusive
    max_power_w: int | None = None  # W of the interval being priced, exclusive
    min_duration: int | None = None  # seconds since the session started, inclusive
    max_duration: int | None = None  # seconds since the session started, exclusive

    def _validate(self) -> None:
        for name in ("start_time", "end_time"):
            if (value := getattr(self, name)) is not None:
                parse_hhmm(value)
        require_days("day_of_week", self.day_of_week)
        for low, high in (
            ("min_wh", "max_wh"),
            ("min_power_w", "max_power_w"),
            ("min_duration", "max_duration"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            for name, value in ((low, lo), (high, hi)):
                if value is not None:
                    require_range(name, value, 0)
            require(lo is None or hi is None or lo < hi, f"{low} must be below {high}")

    @property
    def wall_minutes(self) -> frozenset[int]:
        """Minutes of day at which this restriction's truth can change (for _clock.boundaries)."""
        times = {parse_hhmm(t) for t in (self.start_time, self.end_time) if t is not None}
        if times or self.day_of_week:
            times.add(0)  # a lone end_time holds from midnight, a lone start_time until it
        return frozenset(times)


@record
class TariffElement(Record):
    """Prices and when they apply (OCPI TariffElement): the first element whose restrictions
    hold prices a dimension."""

    price_components: tuple[PriceComponent, ...]  # 1 to 4, at most one per dimension
    restrictions: TariffRestrictions | None = None

    def _validate(self) -> None:
        require_size("price_components", self.price_components, 1, 4)
        kinds = [c.type for c in self.price_components]
        require(len(set(kinds)) == len(kinds), "an element has at most one component per dimension")


@record
class Tariff(Record):
    """What a charger costs (OCPI 2.2.1 Tariff): frozen into every booking."""

    currency: str  # ISO 4217, three capital letters
    elements: tuple[TariffElement, ...]  # 1 to 32, in order of precedence
    min_price: int | None = None  # minor units: a session costs at least this
    max_price: int | None = None  # minor units: and at most this

    def _validate(self) -> None:
        require(_CURRENCY.fullmatch(self.currency) is not None, "currency is an ISO 4217 code like EUR")
        require_size("elements", self.elements, 1, 32)
        for name in ("min_price", "max_price"):
            if (value := getattr(self, name)) is not None:
                require_range(name, value, 0, _MAX_PRICE)
        if self.min_price is not None and self.max_price is not None:
            require(self.min_price <= self.max_price, "min_price must not exceed max_price")

    def period(self, element: int) -> str:
        """The hours a price line of `element` falls in, as people name them: its
        restriction's "23:00-07:00", "other hours" for an element without one, "" for
        an adjustment line (element -1)."""
        if not 0 <= element < len(self.elements):
            return ""
        hours = self.elements[element].restrictions
        return f"{hours.start_time}-{hours.end_time}" if hours and hours.start_time else "other hours"

    @property
    def wall_minutes(self) -> frozenset[int]:
        found: set[int] = set()
        for element in self.elements:
            if element.restrictions is not None:
                found |= element.restrictions.wall_minutes
        return frozenset(found)
