"""Charger search, sans-IO: which signed ads answer a driver's query, and in what order.

Theory of operation (DESIGN.md, "Charger advertisement and search"): the node finds
hosts through the DHT and fetches their signed ads; everything after the fetch is here.

- An ad counts only if the peer that served it signed it (`served_by`), it has not
  expired, and it is the newest seq for its (host, charger) among those seen.
- A `Query` is a point and radius, a time window, and filters: connector, minimum
  power, and a price cap for the energy the driver wants. The ad's geohash-7 cell
  centre stands for the charger (the exact address is never published), so a distance
  is good to `DISTANCE_STEP_M` at best: `shown_distance_m` rounds it to that.
- The price estimate charges the wanted energy at the charger's full power from the
  window's start, read every 15 minutes, priced by the same `price` as settlements. A
  charger the window is too short for is priced for what it can deliver in the whole
  window (`energy_wh` < `wanted_wh`: not `full`), so prices compare per kWh
  (`per_kwh`); a price cap applies to the energy asked for, so such a charger passes
  it only if its price per kWh would.
- Results are ranked nearest first at that precision, then by price per kWh delivered,
  then by host key (a stable order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from . import _geo
from ._ad import ChargerAd, Connector
from ._envelope import Signed
from ._pricing import MeterReading, Price, price
from ._record import Record, record, require, require_range

ESTIMATE_STEP = 900
DISTANCE_STEP_M = 100  # a geohash-7 cell is about 150 m across: finer is false precision


@record
class Query(Record):
    lat_e6: int  # microdegrees: integers on the wire
    lon_e6: int
    radius_m: int
    start: int
    end: int
    energy_wh: int = 20_000
    connector: Connector | None = None
    min_power_w: int = 0
    max_price: int | None = None  # minor units for `energy_wh` in the window

    def _validate(self) -> None:
        require_range("lat_e6", self.lat_e6, -90_000_000, 90_000_000)
        require_range("lon_e6", self.lon_e6, -180_000_000, 180_000_000)
        require_range("radius_m", self.radius_m, 0, 50_000)
        require(self.end > self.start, "a window must end after it starts")
        require_range("energy_wh", self.energy_wh, 1, 1_000_000)
        require_range("min_power_w", self.min_power_w, 0)

    @property
    def point(self) -> tuple[float, float]:
        return self.lat_e6 / 1e6, self.lon_e6 / 1e6


@dataclass(frozen=True, slots=True)
class Result:
    ad: Signed[ChargerAd]
    distance_m: float  # to the centre of the ad's public cell
    price: Price  # of `energy_wh` in the query's window, line by line (off-peak, peak, flat)
    energy_wh: int  # what the estimate covers: the energy asked for, or all the window allows
    wanted_wh: int  # the energy asked for

    @property
    def estimate(self) -> int:
        """Minor units of the ad's currency for `energy_wh` in the query's window."""
        return self.price.total

    @property
    def full(self) -> bool:
        """Can the charger deliver all the energy asked for in the window?"""
        return self.energy_wh >= self.wanted_wh

    @property
    def per_kwh(self) -> Fraction:
        """The estimate per kWh delivered, in minor units."""
        return Fraction(self.estimate * 1000, max(self.energy_wh, 1))

    @property
    def shown_distance_m(self) -> int:
        """The distance as the public location allows: rounded to `DISTANCE_STEP_M`, at least one step."""
        return max(DISTANCE_STEP_M, round(self.distance_m / DISTANCE_STEP_M) * DISTANCE_STEP_M)


def estimate(ad: ChargerAd, start: int, end: int, energy_wh: int) -> tuple[Price, int]:
    """(price, energy delivered) for charging `energy_wh` at full power from `start`."""
    readings = [MeterReading(start, 0)]
    t, delivered = start, 0
    while delivered < energy_wh and t < end:
        step = min(ESTIMATE_STEP, end - t)
        delivered = min(energy_wh, delivered + ad.max_power_w * step // 3600)
        t += step
        readings.append(MeterReading(t, delivered))
    return price(ad.tariff, readings, ad.tz), delivered


def forged(served_by: bytes, signed: Signed[ChargerAd]) -> bool:
    """An ad served by a peer other than the host it names and that signed it (DESIGN.md:
    the ad's signer must be the peer that serves it)."""
    return signed.signer != served_by or signed.message.host != served_by


def newest(ads: Iterable[tuple[bytes, Signed[ChargerAd]]], now: int) -> list[Signed[ChargerAd]]:
    """Ads signed by the peer that served them, unexpired, newest seq per (host, charger)."""
    best: dict[tuple[bytes, str], Signed[ChargerAd]] = {}
    for served_by, signed in ads:
        ad = signed.message
        if forged(served_by, signed) or ad.expires <= now:
            continue
        current = best.get(ad.key)
        if current is None or ad.seq > current.message.seq:
            best[ad.key] = signed
    return list(best.values())


def search(query: Query, ads: Iterable[tuple[bytes, Signed[ChargerAd]]], now: int) -> list[Result]:
    """The ads that answer `query`, best first (see the module doc)."""
    lat, lon = query.point
    results = []
    for signed in newest(ads, now):
        ad = signed.message
        cell_lat, cell_lon = _geo.decode(ad.geohash)
        distance = _geo.distance_m(lat, lon, cell_lat, cell_lon)
        if distance > query.radius_m:
            continue
        if query.connector is not None and ad.connector is not query.connector:
            continue
        if ad.max_power_w < query.min_power_w or not ad.is_available(query.start, query.end):
            continue
        result = Result(signed, distance, *estimate(ad, query.start, query.end, query.energy_wh), query.energy_wh)
        if query.max_price is not None and result.per_kwh * query.energy_wh > query.max_price * 1000:
            continue
        results.append(result)
    results.sort(key=lambda r: (r.shown_distance_m, r.per_kwh, r.ad.message.host))
    return results
