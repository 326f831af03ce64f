"""Tests of wattshare.protocol._geo: geohash, haversine and circle covering.

The covering tests check both directions against an independent exact reference
(`_nearest_m`, the closed-form distance from a point to a cell rectangle on the sphere):
no cell with a point inside the radius is missing (the search's 100% recall depends on
it), and no cell without one is included.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wattshare.protocol._geo import (
    EARTH_RADIUS_M,
    bounds,
    covering_cells,
    decode,
    distance_m,
    encode,
    is_valid,
)

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
TOLERANCE_M = 0.05  # the module's 1 cm margin plus rounding

lats = st.floats(-90, 90, allow_nan=False)
lons = st.floats(-180, 180, allow_nan=False)
precisions = st.integers(1, 12)


def _reference_encode(lat: float, lon: float, precision: int) -> str:
    """The textbook character-at-a-time geohash encoder."""
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    chars, bit, value, even = [], 0, 0, True
    while len(chars) < precision:
        interval, coordinate = (lon_range, lon) if even else (lat_range, lat)
        mid = (interval[0] + interval[1]) / 2
        value <<= 1
        if coordinate >= mid:
            value |= 1
            interval[0] = mid
        else:
            interval[1] = mid
        even = not even
        bit += 1
        if bit == 5:
            chars.append(BASE32[value])
            bit, value = 0, 0
    return "".join(chars)


def _destination(lat: float, lon: float, bearing_deg: float, dist_m: float):
    """The point `dist_m` from (lat, lon) along the initial bearing (spherical)."""
    phi1, lam1 = math.radians(lat), math.radians(lon)
    theta, delta = math.radians(bearing_deg), dist_m / EARTH_RADIUS_M
    sin_phi2 = math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(
        delta
    ) * math.cos(theta)
    phi2 = math.asin(max(-1.0, min(1.0, sin_phi2)))
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * sin_phi2,
    )
    lon2 = (math.degrees(lam2) + 180.0) % 360.0 - 180.0
    return math.degrees(phi2), lon2


def _nearest_m(lat: float, lon: float, cell: str) -> float:
    """Exact distance from (lat, lon) to the nearest point of the cell's rectangle.

    Outside the cell the nearest point lies on an edge. On a parallel the distance grows
    with the longitude offset, so the candidates are the edge's ends and the centre's
    longitude. On a meridian the cosine of the distance is A cos(phi) + B sin(phi), so
    the candidates are the edge's ends and that sinusoid's maximum.
    """
    min_lat, min_lon, max_lat, max_lon = bounds(cell)
    offsets = [lon - 360.0, lon, lon + 360.0]
    if min_lat <= lat <= max_lat and any(min_lon <= x <= max_lon for x in offsets):
        return 0.0
    points = [(edge, x) for edge in (min_lat, max_lat) for x in (min_lon, max_lon)]
    inside = [x for x in offsets if min_lon <= x <= max_lon]
    points += [(edge, x) for edge in (min_lat, max_lat) for x in inside]
    for edge_lon in (min_lon, max_lon):
        phi0 = math.radians(lat)
        a = math.cos(phi0) * math.cos(math.radians(edge_lon - lon))
        peak = math.degrees(math.atan2(math.sin(phi0), a))
        if min_lat <= peak <= max_lat:
            points.append((peak, edge_lon))
    return min(distance_m(lat, lon, p_lat, p_lon) for p_lat, p_lon in points)


def _neighbours(cell: str) -> set[str]:
    """The up to 8 cells around `cell`, wrapping across the antimeridian."""
    min_lat, min_lon, max_lat, max_lon = bounds(cell)
    centre_lat, centre_lon = decode(cell)
    height, width = max_lat - min_lat, max_lon - min_lon
    found = set()
    for d_lat in (-1, 0, 1):
        for d_lon in (-1, 0, 1):
            lat = centre_lat + d_lat * height
            lon = (centre_lon + d_lon * width + 180.0) % 360.0 - 180.0
            if -90.0 <= lat <= 90.0:
                found.add(encode(lat, lon, len(cell)))
    return found - {cell}


def _assert_exact_cover(lat: float, lon: float, radius_m: float, precision: int):
    cover = covering_cells(lat, lon, radius_m, precision)
    assert encode(lat, lon, precision) in cover
    for cell in cover:
        assert _nearest_m(lat, lon, cell) <= radius_m + TOLERANCE_M, cell
    # The cells meeting a disc are connected, so a missing one would border the cover.
    for cell in set().union(*map(_neighbours, cover)) - cover:
        assert _nearest_m(lat, lon, cell) > radius_m, cell
    return cover


# -- geohash ------------------------------------------------------------------------


def test_known_vectors():
    assert encode(57.64911, 10.40744, 11) == "u4pruydqqvj"
    assert decode("ezs42") == pytest.approx((42.605, -5.603), abs=1e-3)
    assert bounds("s0000") == (0.0, 0.0, 0.0439453125, 0.0439453125)
    assert bounds("ezs42") == (42.5830078125, -5.625, 42.626953125, -5.5810546875)
    assert encode(0.0, 0.0, 1) == "s"  # lon >= 0, lat >= 0, then 3 lower halves
    assert encode(-90.0, -180.0, 6) == "000000"
    assert encode(90.0, 180.0, 5) == "zzzzz"
    assert bounds("7zzzz")[2:] == (0.0, 0.0)
    assert bounds("u") == (45.0, 0.0, 90.0, 45.0)
    assert decode("u4pruydqqvj") == pytest.approx((57.64911, 10.40744), abs=1e-5)


@settings(max_examples=300)
@given(lats, lons, precisions)
def test_round_trip_and_reference(lat, lon, precision):
    geohash = encode(lat, lon, precision)
    assert geohash == _reference_encode(lat, lon, precision)
    assert is_valid(geohash, precision)
    min_lat, min_lon, max_lat, max_lon = bounds(geohash)
    assert min_lat <= lat <= max_lat and min_lon <= lon <= max_lon
    centre_lat, centre_lon = decode(geohash)
    assert min_lat < centre_lat < max_lat and min_lon < centre_lon < max_lon
    assert encode(centre_lat, centre_lon, precision) == geohash
    assert encode(lat, lon, 1 + precision // 2) == geohash[: 1 + precision // 2]


def test_is_valid():
    assert is_valid("u4pru") and is_valid("u4pru", 5)
    assert not is_valid("u4pru", 6)
    assert not is_valid("") and not is_valid("a") and not is_valid("U4PRU")
    assert not is_valid("0" * 13) and not is_valid(None)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: decode("ezs4a"), "'a'"),
        (lambda: decode("EZS42"), "'E'"),
        (lambda: decode(""), "1 to 12"),
        (lambda: bounds("0" * 13), "1 to 12"),
        (lambda: encode(90.5, 0.0, 5), "latitude"),
        (lambda: encode(0.0, -180.5, 5), "longitude"),
        (lambda: encode(math.nan, 0.0, 5), "latitude"),
        (lambda: encode(0.0, 0.0, 0), "precision"),
        (lambda: encode(0.0, 0.0, 13), "precision"),
        (lambda: covering_cells(0.0, 0.0, -1.0), "radius"),
        (lambda: covering_cells(0.0, 0.0, 200_001.0), "radius"),
        (lambda: covering_cells(0.0, 0.0, math.nan), "radius"),
        (lambda: covering_cells(91.0, 0.0, 10.0), "latitude"),
        (lambda: covering_cells(0.0, 0.0, 10.0, 13), "precision"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- haversine ----------------------------------------------------------------------


def test_distance_known_answers():
    paris_london = distance_m(48.8566, 2.3522, 51.5074, -0.1278)
    assert paris_london == pytest.approx(343_500, abs=1000)
    assert distance_m(10.0, 20.0, 10.0, 20.0) == 0.0
    assert distance_m(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert distance_m(0.0, 179.5, 0.0, -179.5) == pytest.approx(distance_m(0, 0, 0, 1))


@given(lats, lons, lats, lons)
def test_distance_symmetric_and_bounded(lat1, lon1, lat2, lon2):
    there = distance_m(lat1, lon1, lat2, lon2)
    assert there == pytest.approx(distance_m(lat2, lon2, lat1, lon1), abs=1e-6)
    assert 0.0 <= there <= math.pi * EARTH_RADIUS_M + 1e-6


# -- covering -----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-85, 85),
    lons,
    st.floats(0, 50_000),
    st.sampled_from([4, 5, 6]),
    st.floats(0, 360),
)
def test_nearest_reference_agrees_with_sampling(lat, lon, offset_m, precision, bearing):
    """The exact reference is never beaten by, and matches, a dense edge sampling."""
    cell = encode(*_destination(lat, lon, bearing, offset_m), precision)
    min_lat, min_lon, max_lat, max_lon = bounds(cell)
    height, width = max_lat - min_lat, max_lon - min_lon
    steps = [i / 400 for i in range(401)]
    edge = [(min_lat + t * height, x) for t in steps for x in (min_lon, max_lon)]
    edge += [(y, min_lon + t * width) for t in steps for y in (min_lat, max_lat)]
    sampled = min(distance_m(lat, lon, y, x) for y, x in edge)
    nearest = _nearest_m(lat, lon, cell)
    assert nearest <= sampled + 1e-6
    if nearest > 0:
        assert sampled - nearest <= max(height, width) * 111_200 / 400


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-80, 80),
    lons,
    st.floats(0, 20_000),
    st.lists(st.tuples(st.floats(0, 360), st.floats(0, 1)), min_size=1, max_size=50),
)
@example(0.0, 179.99, 5_000.0, [(90.0, 1.0)])
@example(45.0, -180.0, 20_000.0, [(270.0, 1.0), (0.0, 1.0)])
@example(0.0, 0.0, 0.0, [(0.0, 0.0)])
def test_cover_is_exact_at_precision_5(lat, lon, radius_m, samples):
    cover = _assert_exact_cover(lat, lon, radius_m, 5)
    for bearing, fraction in samples:
        point = _destination(lat, lon, bearing, radius_m * math.sqrt(fraction))
        assert encode(*point, 5) in cover


@settings(max_examples=30, deadline=None)
@given(st.floats(-80, 80), lons, st.floats(0, 2_000), st.sampled_from([6, 7]))
def test_cover_is_exact_at_fine_precision(lat, lon, radius_m, precision):
    cover = _assert_exact_cover(lat, lon, radius_m, precision)
    for bearing in range(0, 360, 15):
        assert encode(*_destination(lat, lon, bearing, radius_m), precision) in cover


@settings(max_examples=30, deadline=None)
@given(
    st.one_of(st.floats(80, 90), st.floats(-90, -80)),
    lons,
    st.floats(0, 200_000),
    st.sampled_from([2, 3]),
)
@example(89.0, 0.0, 111_000.0, 3)
@example(-90.0, 0.0, 0.0, 3)
def test_cover_is_exact_near_the_poles(lat, lon, radius_m, precision):
    cover = _assert_exact_cover(lat, lon, radius_m, precision)
    for bearing in range(0, 360, 10):
        assert encode(*_destination(lat, lon, bearing, radius_m), precision) in cover


def test_circle_around_a_pole_covers_every_longitude():
    north = covering_cells(89.99, 10.0, 5_000)
    south = covering_cells(-89.98, -120.0, 5_000)
    for lon in (-180.0, -90.0, 0.0, 90.0, 179.99, 180.0):
        assert encode(89.99, lon, 5) in north
        assert encode(-89.99, lon, 5) in south
    top_row = {cell for cell in north if bounds(cell)[2] == 90.0}
    assert len(top_row) == 8192 < len(north)  # 5 km also reaches into the next row


def test_antimeridian():
    east = covering_cells(0.0, 179.99, 5_000)
    west = covering_cells(0.0, -179.99, 5_000)
    assert encode(0.0, -179.99, 5) in east and encode(0.0, 179.99, 5) in east
    assert encode(0.0, 179.99, 5) in west and encode(0.0, -179.99, 5) in west
    assert {bounds(cell)[1] for cell in east} >= {-180.0, 180.0 - 360.0 / 8192}


def test_radius_zero_is_the_own_cell():
    assert covering_cells(48.1372, 11.5756, 0) == {encode(48.1372, 11.5756, 5)}
    assert covering_cells(48.1372, 11.5756, 0, 7) == {encode(48.1372, 11.5756, 7)}
    corner = covering_cells(0.0, 0.0, 0)  # a point on four cells' common corner
    assert "s0000" in corner and len(corner) == 4


def test_small_radius_in_central_europe():
    lat, lon = 50.1109, 8.6821  # Frankfurt am Main
    cover = covering_cells(lat, lon, 2_000)
    assert 1 <= len(cover) <= 4 and encode(lat, lon, 5) in cover
    assert all(is_valid(cell, 5) for cell in cover)
