"""Local wall-clock helpers shared by tariffs and availability.

Theory of operation: the wire carries UTC Unix seconds; tariff restrictions and weekly
availability are written in the charger's local wall time ("23:00", "MONDAY") and its
IANA zone. Everything that mixes the two goes through here:

- `parse_hhmm` validates "HH:MM" (00:00..23:59; "24:00" is not a time) into minutes.
- `local_instant` maps a local date + minute of day to a UTC instant. A wall time that a
  DST change skips maps to the first instant after the gap; one it repeats maps to its
  first occurrence (zoneinfo `fold=0`), which is when a rule starting at that time
  first holds.
- `boundaries` lists the UTC instants inside an interval where the local wall clock
  reaches one of the given minutes of day, plus the DST transitions in it: between two
  consecutive boundaries, every wall-clock rule has one truth value.
- `wall_time` is the one reading of the machine's wall clock in the whole package
  (DESIGN.md, "Time"): domain code never calls it directly, but takes a clock (a
  callable returning UTC seconds) whose default this is; a node's accelerated or
  jumped `Clock` is built on it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import InvalidValue

_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_UTC = dt.UTC
MINUTES_PER_DAY = 24 * 60


def wall_time() -> float:
    """The machine's wall clock, UTC Unix seconds (see the module doc)."""
    return time.time()


@functools.cache
def parse_hhmm(text: str) -> int:
    """Minutes since local midnight of an "HH:MM" string."""
    match = _HHMM.fullmatch(text)
    if match is None:
        raise InvalidValue(f"{text!r} is not a time of day HH:MM (00:00 to 23:59)")
    return int(match[1]) * 60 + int(match[2])


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; InvalidValue if this machine does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)") from None


def local_time(tz: ZoneInfo, t: int) -> dt.datetime:
    """The local wall-clock datetime of Unix time `t` in `tz`."""
    return dt.datetime.fromtimestamp(t, tz)


@functools.lru_cache(maxsize=8192)
def local_instant(tz: ZoneInfo, day: dt.date, minute: int) -> int:
    """UTC Unix time when the local clock first shows `minute` on `day` (see module doc)."""
    naive = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute)
    guess = int(naive.replace(tzinfo=tz, fold=0).timestamp())
    if local_time(tz, guess).replace(tzinfo=None) == naive:
        return guess
    return _transition(tz, guess - 7200, guess)  # skipped by a DST gap: the gap's end


def _offset(tz: ZoneInfo, t: int) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(t, tz).utcoffset()


def _transition(tz: ZoneInfo, low: int, high: int) -> int:
    """First instant in (low, high] whose UTC offset differs from low's (bisection)."""
    before = _offset(tz, low)
    while high - low > 1:
        mid = (low + high) // 2
        if _offset(tz, mid) == before:
            low = mid
        else:
            high = mid
    return high


def boundaries(tz: ZoneInfo, start: int, end: int, minutes: frozenset[int]) -> list[int]:
    """Sorted UTC instants in (start, end) where local time hits `minutes`, or DST changes."""
    found: set[int] = set()
    if _offset(tz, start) != _offset(tz, end):
        low = start
        while low < end and _offset(tz, low) != _offset(tz, end):
            edge = _transition(tz, low, end)
            found.add(edge)
            low = edge
    first = local_time(tz, start).date() - dt.timedelta(days=1)
    last = local_time(tz, end).date() + dt.timedelta(days=1)
    day = first
    while day <= last:
        for minute in minutes:
            found.add(local_instant(tz, day, minute))
        day += dt.timedelta(days=1)
    return sorted(t for t in found if start < t < end)
