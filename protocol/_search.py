"""Charger search, sans-IO: which signed ads answer a driver's query, and in what order.

Theory of operation (DESIGN.md, "Charger advertisement and search"): the node finds
hosts through the DHT and fetches their signed ads; everything after the fetch is here.

- An ad counts only if the peer that served it signed it (`served_by`), it has not
  expired, and it is the newest seq for its (host, charger) among those seen.
- A `Query` is a point and radius, a time window, and filters: connector, minimum
  power, and a price cap for the energy the driver wants. The ad's geohash-7 cell
  centre stands for the charger (the exact address is never published), so distance
  is accurate to about 100 m.
- The price estimate charges the wanted energy at the charger's full power from the
  window's start (or for the whole window if it cannot deliver that much), read every
  15 minutes, priced by the same `price` as settlements.
- Results are ranked by distance, then estimated price, then host key (stable order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import _geo
from ._ad import ChargerAd, Connector
from ._envelope import Signed
from ._pricing import MeterReading, price
from ._record import Record, record, require, require_range

ESTIMATE_STEP = 900


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
    distance_m: float
    estimate: int  # minor units of the ad's currency for the query's energy and window
    energy_wh: int  # what the estimate covers (less than asked if the window is too short)


def estimate(ad: ChargerAd, start: int, end: int, energy_wh: int) -> tuple[int, int]:
    """(price, energy delivered) for charging `energy_wh` at full power from `start`."""
    readings = [MeterReading(start, 0)]
    t, delivered = start, 0
    while delivered < energy_wh and t < end:
        step = min(ESTIMATE_STEP, end - t)
        delivered = min(energy_wh, delivered + ad.max_power_w * step // 3600)
        t += step
        readings.append(MeterReading(t, delivered))
    return price(ad.tariff, readings, ad.tz).total, delivered


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
        cost, delivered = estimate(ad, query.start, query.end, query.energy_wh)
        if query.max_price is not None and cost > query.max_price:
            continue
        results.append(Result(signed, distance, cost, delivered))
    results.sort(key=lambda r: (round(r.distance_m), r.estimate, r.ad.message.host))
    return results
