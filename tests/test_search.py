"""Search over fetched ads: who signed and served it, expiry, seq, filters, estimates, ranking."""

import pytest
from fixtures import STRANGER, at, make_ad, off_peak_tariff

from wattshare import protocol as p
from wattshare.protocol import geo

CENTRE = (52.520000, 13.405000)  # Berlin, Alexanderplatz
NOW = at("2026-11-27T12:00")
TONIGHT = (at("2026-11-27T23:00"), at("2026-11-28T06:00"))


def host(i):
    return p.Identity(bytes([40 + i]) * 32)


def ad_at(identity, north_m, **changes):
    lat = CENTRE[0] + north_m / 111_195
    return p.sign(identity, make_ad(host=identity.public_key, geohash=geo.encode(lat, CENTRE[1], 7), **changes))


def query(**changes):
    fields = dict(lat_e6=int(CENTRE[0] * 1e6), lon_e6=int(CENTRE[1] * 1e6), radius_m=2000,
                  start=TONIGHT[0], end=TONIGHT[1])
    fields.update(changes)
    return p.Query(**fields)


def served(*signed_ads):
    return [(s.signer, s) for s in signed_ads]


def test_finds_exactly_the_ads_within_the_radius_nearest_first():
    ads = [ad_at(host(i), d) for i, d in enumerate([1500, 300, 2600, 1900, 5000])]
    results = p.search(query(), served(*ads), NOW)
    assert [r.ad.signer for r in results] == [host(1).public_key, host(0).public_key, host(3).public_key]
    for r in results:
        lat, lon = geo.decode(r.ad.message.geohash)
        assert r.distance_m == pytest.approx(geo.distance_m(*CENTRE, lat, lon))


def test_an_ad_served_by_another_peer_than_its_signer_is_dropped():
    honest = ad_at(host(0), 100)
    assert p.search(query(), [(STRANGER.public_key, honest)], NOW) == []


def test_expired_ads_are_dropped_and_newer_seq_replaces_older():
    old = ad_at(host(0), 100, seq=1)
    new = ad_at(host(0), 100, seq=2, notes="now with a longer cable")
    results = p.search(query(), served(new, old), NOW)
    assert [r.ad.message.seq for r in results] == [2]
    expired = ad_at(host(1), 100, expires=NOW - 1)
    assert p.search(query(), served(expired), NOW) == []


def test_filters_connector_power_availability_and_price():
    ad = ad_at(host(0), 100)
    assert p.search(query(connector=p.Connector.CCS2), served(ad), NOW) == []
    assert p.search(query(min_power_w=22_000), served(ad), NOW) == []
    assert p.search(query(start=at("2026-11-27T12:00"), end=at("2026-11-27T14:00")), served(ad), NOW) == []
    [result] = p.search(query(), served(ad), NOW)
    assert p.search(query(max_price=result.estimate - 1), served(ad), NOW) == []
    assert p.search(query(max_price=result.estimate), served(ad), NOW) == [result]


def test_estimate_uses_the_tariff_and_full_power():
    # 20 kWh at 11 kW from 23:00: all off-peak at 0.12/kWh -> 2.40
    [result] = p.search(query(), served(ad_at(host(0), 100)), NOW)
    assert (result.estimate, result.energy_wh) == (240, 20_000)
    # a 1-hour window only delivers 11 kWh, 22:00-23:00 peak at 0.30 -> 3.30
    start = at("2026-11-27T22:00")
    priced, delivered = p.estimate(make_ad(), start, start + 3600, 20_000)
    assert (priced.total, delivered) == (330, 11_000)


def test_equal_distance_ranks_by_price():
    cheap = ad_at(host(0), 500)
    dear = ad_at(host(1), 500, tariff=make_ad().tariff.replace(elements=make_ad().tariff.elements[1:]))
    results = p.search(query(), served(dear, cheap), NOW)
    assert [r.ad.signer for r in results] == [host(0).public_key, host(1).public_key]


@pytest.mark.parametrize("bad", [{"radius_m": -1}, {"end": TONIGHT[0]}, {"lat_e6": 91_000_000}, {"energy_wh": 0}])
def test_invalid_queries(bad):
    with pytest.raises(p.InvalidValue):
        query(**bad)


def test_a_charger_the_window_is_too_short_for_is_ranked_by_its_price_per_kwh_not_its_total():
    """Issue 19, item 1: in an hour a 7.4 kW charger delivers less than an 11 kW one, so its
    total looks cheaper even at a higher price per kWh; it must not win on that."""
    start = at("2026-11-27T22:00")
    slow = ad_at(host(0), 500, max_power_w=7_400)  # 0.30 per kWh before 23:00
    fast = ad_at(host(1), 500, max_power_w=11_000, tariff=off_peak_tariff(off_peak=29_000, peak=29_000))
    results = p.search(query(start=start, end=start + 3600), served(slow, fast), NOW)
    assert [(r.ad.signer, r.energy_wh, r.full) for r in results] == [
        (host(1).public_key, 11_000, False), (host(0).public_key, 7_400, False)]
    assert results[0].estimate > results[1].estimate and results[0].per_kwh == 29 < results[1].per_kwh == 30
    [full] = p.search(query(start=start, end=start + 3 * 3600), served(fast), NOW)
    assert (full.energy_wh, full.full) == (20_000, True)
    capped = p.search(query(start=start, end=start + 3600, max_price=20 * 30 - 1), served(slow), NOW)
    assert capped == []  # the cap is for the energy asked for, at the price per kWh it would cost


def test_distances_are_shown_only_as_precise_as_the_public_cell():
    [near] = p.search(query(), served(ad_at(host(0), 19)), NOW)
    [far] = p.search(query(), served(ad_at(host(1), 1_234)), NOW)
    assert near.shown_distance_m == 100  # never "19 m": the charger is somewhere in a 150 m cell
    assert far.shown_distance_m % 100 == 0 and abs(far.shown_distance_m - far.distance_m) <= 50


def test_an_estimate_across_off_peak_shows_each_period_as_a_line():
    # 20 kWh at 11 kW from 22:30: 5.5 kWh at the peak 0.30, then 14.5 kWh off-peak at 0.12
    start = at("2026-11-27T22:30")
    priced, delivered = p.estimate(make_ad(), start, start + 4 * 3600, 20_000)
    tariff = make_ad().tariff
    lines = {(tariff.period(line.element), line.quantity, line.amount) for line in priced.lines}
    assert delivered == 20_000
    assert lines == {("other hours", 5_500, 165), ("23:00-07:00", 14_500, 174)}
    assert priced.total == 339
    assert tariff.period(-1) == tariff.period(len(tariff.elements)) == ""  # adjustment lines name no period
