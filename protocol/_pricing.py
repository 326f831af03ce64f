"""Pricing: a pure function of (tariff, meter readings, time zone), the same for all.

Theory of operation (DESIGN.md, "Tariffs"; OCPI 2.2.1 tariff semantics):

1. Readings are (t, cumulative energy_wh) with t strictly increasing and energy never
   decreasing; the first is the session start. Between two readings power is taken as
   constant (energy grows linearly). An interval with energy is *charging* (TIME), one
   without is *parking* (PARKING_TIME).
2. Each interval is cut wherever a restriction's truth could change: local wall-clock
   times named by the tariff, local midnight (day_of_week), DST transitions, the
   instants the session's energy crosses a min/max_wh bound, and the instants its
   duration crosses a min/max_duration bound. Within a piece every restriction has one
   value, checked at the piece's midpoint; quantities are split exactly (Fractions).
   When the tariff's restrictions read only the wall clock (no energy, duration or
   power bound), every piece between the same two wall-clock cuts has the same truth,
   so its pricing element is looked up once per such span, not once per reading.
3. For each dimension the first element with that dimension whose restrictions hold
   prices the piece. FLAT is priced once, by the element that holds at the start.
4. Step size (OCPI): a dimension's total quantity is rounded *up* to a multiple of the
   step size of the element that priced it last; the extra is billed at that element.
5. **Rounding rule**: each breakdown line's exact amount (a rational number of minor
   units) is rounded to the nearest minor unit, halves up; the total is the sum of the
   rounded lines, so the breakdown always adds up. Line quantities are shown rounded
   the same way. Then `min_price` / `max_price` and finally the driver's spend cap add
   adjustment lines, so a capped total never exceeds the cap.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from itertools import pairwise
from typing import Protocol

from . import _clock
from ._record import Record, record, require
from ._tariff import PRICE_SCALE, DayOfWeek, Dimension, Tariff, TariffRestrictions


class LineKind(StrEnum):
    ENERGY = "ENERGY"
    FLAT = "FLAT"
    TIME = "TIME"
    PARKING_TIME = "PARKING_TIME"
    MIN_PRICE = "MIN_PRICE"  # raised to the tariff's min_price
    MAX_PRICE = "MAX_PRICE"  # lowered to the tariff's max_price
    SPEND_CAP = "SPEND_CAP"  # lowered to the driver's spend cap


@record
class PriceLine(Record):
    kind: LineKind
    element: int  # index of the pricing tariff element; -1 for adjustment lines
    quantity: int  # Wh (ENERGY), s (TIME, PARKING_TIME), 1 (FLAT), 0 (adjustments)
    amount: int  # minor units; negative only for MAX_PRICE and SPEND_CAP lines


@record
class Price(Record):
    currency: str
    total: int  # minor units
    lines: tuple[PriceLine, ...]

    def _validate(self) -> None:
        require(self.total == sum(line.amount for line in self.lines), "lines must add up to total")
        require(self.total >= 0, "a price is never negative")


class Reading(Protocol):
    """What pricing needs of a meter receipt."""

    @property
    def t(self) -> int: ...

    @property
    def energy_wh(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A bare reading, for estimates (a signed MeterReceipt is one too)."""

    t: int
    energy_wh: int = 0


@dataclass(frozen=True, slots=True)
class _Moment:
    """What restrictions look at, at one instant (energy and power stay 0 when no
    restriction of the tariff looks at them)."""

    local_minute: int
    day: DayOfWeek
    energy_wh: int | Fraction
    duration: int | Fraction
    power_w: int | Fraction


_UNIT = {  # divisor turning quantity x price into minor units
    Dimension.ENERGY: 1000 * PRICE_SCALE,  # Wh x (per kWh)
    Dimension.TIME: 3600 * PRICE_SCALE,  # s x (per hour)
    Dimension.PARKING_TIME: 3600 * PRICE_SCALE,
    Dimension.FLAT: PRICE_SCALE,
}
_ORDER = (Dimension.FLAT, Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME)


def _in_range(value: int | Fraction, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value < high)


def _holds(r: TariffRestrictions | None, at: _Moment) -> bool:
    if r is None:
        return True
    if r.day_of_week and at.day not in r.day_of_week:
        return False
    start = _clock.parse_hhmm(r.start_time) if r.start_time is not None else None
    end = _clock.parse_hhmm(r.end_time) if r.end_time is not None else None
    minute = at.local_minute
    if start is not None and end is not None and start > end:  # wraps past midnight
        if not (minute >= start or minute < end):
            return False
    elif not ((start is None or minute >= start) and (end is None or minute < end)):
        return False
    return (
        _in_range(at.energy_wh, r.min_wh, r.max_wh)
        and _in_range(at.power_w, r.min_power_w, r.max_power_w)
        and _in_range(at.duration, r.min_duration, r.max_duration)
    )


_Candidates = dict[Dimension, list[tuple[int, TariffRestrictions | None]]]


def _candidates(tariff: Tariff) -> _Candidates:
    """Per dimension, the elements that price it, in tariff order (built once per pricing)."""
    out: _Candidates = {dimension: [] for dimension in Dimension}
    for index, element in enumerate(tariff.elements):
        for component in element.price_components:
            out[component.type].append((index, element.restrictions))
    return out


def _pricing_element(candidates: _Candidates, dimension: Dimension, at: _Moment) -> int | None:
    return next((index for index, restrictions in candidates[dimension] if _holds(restrictions, at)), None)


def _component_price(tariff: Tariff, dimension: Dimension, index: int) -> tuple[int, int]:
    component = next(c for c in tariff.elements[index].price_components if c.type is dimension)
    return component.price, component.step_size


def _round(quantity: int | Fraction, multiplier: int = 1, divisor: int = 1) -> int:
    """quantity x multiplier / divisor, rounded to the nearest integer, halves up (exact)."""
    top, bottom = quantity.numerator * multiplier, quantity.denominator * divisor
    return (2 * top + bottom) // (2 * bottom)


def _thresholds(tariff: Tariff) -> tuple[set[int], set[int]]:
    energy: set[int] = set()
    duration: set[int] = set()
    for element in tariff.elements:
        if (r := element.restrictions) is not None:
            energy.update(v for v in (r.min_wh, r.max_wh) if v is not None)
            duration.update(v for v in (r.min_duration, r.max_duration) if v is not None)
    return energy, duration


def price(tariff: Tariff, readings: Iterable[Reading], tz: str, *, cap: int | None = None) -> Price:
    """Price a session's readings under `tariff` in zone `tz` (see the module doc)."""
    zone = _clock.zone(tz)
    points = [(r.t, r.energy_wh) for r in readings]
    require(len(points) >= 1, "pricing needs at least the session's start reading")
    for (t0, e0), (t1, e1) in pairwise(points):
        require(t1 > t0, "reading times must strictly increase")
        require(e1 >= e0, "cumulative energy must never decrease")
    start_t, start_e = points[0]
    wall_minutes = tariff.wall_minutes
    energy_marks, duration_marks = _thresholds(tariff)
    exact_mid = bool(energy_marks or duration_marks)  # restrictions that read energy or duration at the midpoint
    uses_power = any(e.restrictions and (e.restrictions.min_power_w, e.restrictions.max_power_w) != (None, None)
                     for e in tariff.elements)

    def moment(t: int | Fraction, energy: int | Fraction, power: int | Fraction) -> _Moment:
        local = _clock.local_time(zone, math.floor(t))
        return _Moment(
            local_minute=local.hour * 60 + local.minute,
            day=DayOfWeek.of_weekday(local.weekday()),
            energy_wh=energy,
            duration=t - start_t,
            power_w=power,
        )

    quantities: dict[tuple[Dimension, int], int | Fraction] = defaultdict(int)
    last_element: dict[Dimension, int] = {}
    first_power: int | Fraction = 0
    if len(points) > 1 and uses_power:
        (t0, e0), (t1, e1) = points[0], points[1]
        first_power = Fraction((e1 - e0) * 3600, t1 - t0)
    candidates = _candidates(tariff)
    flat = _pricing_element(candidates, Dimension.FLAT, moment(start_t, 0, first_power))
    if flat is not None:
        quantities[(Dimension.FLAT, flat)] = 1

    wall_cuts = _clock.boundaries(zone, start_t, points[-1][0], wall_minutes) if wall_minutes else []
    wall_only = not (exact_mid or uses_power)  # restrictions read the wall clock only (see `chosen`)
    chosen: dict[tuple[int, Dimension], int | None] = {}  # (wall span, dimension) -> element, if wall_only
    for (t0, e0), (t1, e1) in pairwise(points):
        span, gained = t1 - t0, e1 - e0
        power = Fraction(gained * 3600, span) if uses_power else 0
        done = e0 - start_e  # energy delivered before this interval
        inside: set[int | Fraction] = set(wall_cuts[bisect_right(wall_cuts, t0) : bisect_left(wall_cuts, t1)])
        if exact_mid:
            inside.update(
                t0 + Fraction((mark - done) * span, gained) for mark in energy_marks if done < mark < done + gained
            )
            inside.update(start_t + mark for mark in duration_marks if t0 < start_t + mark < t1)
        time_dimension = Dimension.TIME if gained else Dimension.PARKING_TIME
        for a, b in pairwise(sorted({t0, t1, *inside})) if inside else ((t0, t1),):
            whole = a == t0 and b == t1
            mid = Fraction(a + b, 2) if exact_mid else (a + b) // 2  # only wall time is read: a floor will do
            energy_at = done + Fraction(gained * (mid - t0), span) if energy_marks else 0
            at = None
            wall_span = bisect_right(wall_cuts, a)
            for dimension, quantity in (
                (Dimension.ENERGY, gained if whole else Fraction(gained * (b - a), span)),
                (time_dimension, b - a),
            ):
                if quantity == 0:
                    continue
                if not wall_only or (wall_span, dimension) not in chosen:
                    at = at or moment(mid, energy_at, power)
                    chosen[(wall_span, dimension)] = _pricing_element(candidates, dimension, at)
                index = chosen[(wall_span, dimension)]
                if index is not None:
                    quantities[(dimension, index)] += quantity
                    last_element[dimension] = index

    for dimension, index in last_element.items():
        total = sum(q for (d, _), q in quantities.items() if d is dimension)
        step = _component_price(tariff, dimension, index)[1]
        quantities[(dimension, index)] += -(-total // step) * step - total  # exact ceiling

    lines = []
    for dimension, index in sorted(quantities, key=lambda k: (_ORDER.index(k[0]), k[1])):
        quantity = quantities[(dimension, index)]
        unit_price = _component_price(tariff, dimension, index)[0]
        amount = _round(quantity, unit_price, _UNIT[dimension])
        lines.append(PriceLine(kind=LineKind(dimension), element=index, quantity=_round(quantity), amount=amount))
    total = sum(line.amount for line in lines)
    for kind, limit, below in (
        (LineKind.MIN_PRICE, tariff.min_price, True),
        (LineKind.MAX_PRICE, tariff.max_price, False),
        (LineKind.SPEND_CAP, cap, False),
    ):
        if limit is not None and (total < limit if below else total > limit):
            lines.append(PriceLine(kind=kind, element=-1, quantity=0, amount=limit - total))
            total = limit
    return Price(currency=tariff.currency, total=total, lines=tuple(lines))
