"""Charger ads: weekly availability in local time, exceptions, DST; signed by their host."""

import pytest
from fixtures import HOST, at, make_ad

from wattshare import protocol as p

WEEKDAYS = tuple(p.DayOfWeek)[:5]


def overnight(days=tuple(p.DayOfWeek), start="22:00", end="07:00", exceptions=()):
    return make_ad(availability=(p.WeeklyWindow(days=days, start=start, end=end),), exceptions=exceptions)


@pytest.mark.parametrize(
    "start, end, expected",
    [
        ("2026-11-27T22:00", "2026-11-28T07:00", True),  # the whole night
        ("2026-11-27T23:00", "2026-11-28T06:00", True),
        ("2026-11-28T01:00", "2026-11-28T03:00", True),  # after midnight: last night's window
        ("2026-11-27T21:00", "2026-11-27T23:00", False),  # starts before opening
        ("2026-11-28T06:00", "2026-11-28T08:00", False),  # runs past closing
        ("2026-11-27T22:00", "2026-11-28T23:00", False),  # spans the closed day
    ],
)
def test_overnight_window(start, end, expected):
    assert overnight().is_available(at(start), at(end)) is expected


def test_weekday_nights_end_on_the_next_morning():
    ad = overnight(days=WEEKDAYS)
    assert ad.is_available(at("2026-11-27T22:00"), at("2026-11-28T07:00"))  # Friday night
    assert not ad.is_available(at("2026-11-28T22:00"), at("2026-11-29T07:00"))  # Saturday night


def test_whole_day_window():
    ad = overnight(start="00:00", end="00:00")
    assert ad.is_available(at("2026-11-27T00:00"), at("2026-11-28T00:00"))
    assert ad.is_available(at("2026-11-27T12:00"), at("2026-11-28T12:00"))  # two adjacent days join


def test_exceptions_add_and_remove_time():
    extra = p.AvailabilityException(start=at("2026-11-27T18:00"), end=at("2026-11-27T22:00"), available=True)
    holiday = p.AvailabilityException(start=at("2026-12-24T12:00"), end=at("2026-12-26T12:00"), available=False)
    ad = overnight(exceptions=(extra, holiday))
    assert ad.is_available(at("2026-11-27T19:00"), at("2026-11-27T23:00"))  # extra evening joins the night
    assert not ad.is_available(at("2026-11-26T19:00"), at("2026-11-26T23:00"))  # not on other days
    assert not ad.is_available(at("2026-12-24T22:00"), at("2026-12-25T07:00"))  # removed
    assert ad.is_available(at("2026-12-26T22:00"), at("2026-12-27T07:00"))


def test_night_across_dst_fall_back():
    # 22:00 -> 07:00 local is 10 real hours on 2026-10-24/25 in Berlin
    start, end = at("2026-10-24T22:00"), at("2026-10-25T07:00")
    assert end - start == 10 * 3600
    assert overnight().is_available(start, end)
    assert not overnight().is_available(start, end + 60)


def test_no_windows_means_never():
    assert not make_ad(availability=()).is_available(at("2026-11-27T22:00"), at("2026-11-27T23:00"))


def test_empty_window_is_a_local_error():
    with pytest.raises(p.InvalidValue):
        overnight().is_available(10, 10)


@pytest.mark.parametrize("bad", [{"start": "24:00"}, {"end": "7:00"}, {"days": ()}, {"days": (p.DayOfWeek.MONDAY,) * 2}])
def test_invalid_weekly_windows(bad):
    fields = {"days": WEEKDAYS, "start": "22:00", "end": "07:00", **bad}
    with pytest.raises(p.InvalidValue):
        p.WeeklyWindow(**fields)


def test_ad_identity_and_key():
    ad = make_ad()
    signed = p.sign(HOST, ad)
    assert p.Signed.decode(signed.encode(), p.ChargerAd).message.key == (HOST.public_key, "driveway")
    assert p.Connector.TYPE_2.label == "Type 2" and p.Connector("DOMESTIC_F").label == "Schuko"
