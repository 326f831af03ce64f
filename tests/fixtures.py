"""Fixed identities and a ready-made ad and booking for tests of the protocol and beyond."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import trio

from wattshare import protocol as p
from wattshare.node import Clock, OcppEndpoint, causes

HOST = p.Identity(bytes([1]) * 32)
DRIVER = p.Identity(bytes([2]) * 32)
STRANGER = p.Identity(bytes([3]) * 32)
TZ = "Europe/Berlin"
EVERY_DAY = tuple(p.DayOfWeek)


def at(local: str, tz: str = TZ) -> int:
    """UTC seconds of a local ISO time, e.g. at("2026-11-27T23:00")."""
    return int(dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp())


WALLBOX_PASSWORD = "wallbox-password-for-tests"


def ocpp_endpoint(*chargers: str, port: int = 0) -> OcppEndpoint:
    """A host's OCPP endpoint on 127.0.0.1 where each named charger logs in with WALLBOX_PASSWORD."""
    return OcppEndpoint({charger: WALLBOX_PASSWORD for charger in chargers or ("driveway",)}, port=port)


def pinned_clock(local: str = "2026-11-28T12:00", speed: float = 1.0) -> Clock:
    """A node clock that reads `local` (Europe/Berlin) now and runs `speed` times real
    time from there, whatever the machine's date: tests of real nodes book windows
    relative to it, so they pass on any day (issue "Real time")."""
    return Clock(speed=speed, origin=at(local))


class ManualTime:
    """A real-time source that moves only when the test says so: rate limits and
    misconduct scoring refill by it (`Conduct(now=...)`), so a test of them never
    depends on how fast the machine runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def off_peak_tariff(off_peak: int = 12_000, peak: int = 30_000, flat: int = 0) -> p.Tariff:
    """ENERGY at `off_peak` 23:00-07:00, else `peak` (prices per kWh in PRICE_SCALE units)."""
    elements = [
        p.TariffElement(
            price_components=(p.PriceComponent(type=p.Dimension.ENERGY, price=off_peak),),
            restrictions=p.TariffRestrictions(start_time="23:00", end_time="07:00"),
        ),
        p.TariffElement(price_components=(p.PriceComponent(type=p.Dimension.ENERGY, price=peak),)),
    ]
    if flat:
        elements.insert(0, p.TariffElement(price_components=(p.PriceComponent(type=p.Dimension.FLAT, price=flat),)))
    return p.Tariff(currency="EUR", elements=tuple(elements))


TERMS = p.BookingTerms(
    cancel_until_minutes=60, cancel_fee=200, noshow_timeout_minutes=30, noshow_fee=300, early_start_minutes=5,
    dispute_window_minutes=24 * 60,
)


def make_ad(**changes) -> p.ChargerAd:
    ad = p.ChargerAd(
        host=HOST.public_key,
        charger_id="driveway",
        seq=1,
        expires=at("2026-12-31T00:00"),
        geohash="u33dc0r",
        country="DEU",
        tz=TZ,
        connector=p.Connector.TYPE_2,
        max_power_w=11_000,
        tariff=off_peak_tariff(),
        terms=TERMS,
        availability=(p.WeeklyWindow(days=EVERY_DAY, start="22:00", end="07:00"),),
    )
    return ad.replace(**changes) if changes else ad


def make_request(ad: p.ChargerAd | None = None, *, start: str = "2026-11-27T22:00", hours: int = 9,
                 spend_cap: int = 5_000, nonce: bytes = bytes(16)) -> p.Signed[p.BookingRequest]:
    ad = ad or make_ad()
    begin = at(start)
    request = p.BookingRequest(
        driver=DRIVER.public_key, host=ad.host, charger_id=ad.charger_id, ad_seq=ad.seq, tariff=ad.tariff,
        terms=ad.terms, tz=ad.tz, max_power_w=ad.max_power_w, geohash=ad.geohash, country=ad.country, start=begin,
        end=begin + hours * 3600, spend_cap=spend_cap,
        nonce=nonce,
        created=begin - 86_400,
    )
    return p.sign(DRIVER, request)


SEALED_ACCESS = p.seal_access(DRIVER.public_key, p.AccessInfo(address="12 Acacia Avenue", code="4711"))


def confirm(request: p.Signed[p.BookingRequest]) -> p.Signed[p.BookingConfirmation]:
    return p.sign(HOST, p.BookingConfirmation(booking_id=request.digest, access_digest=p.access_digest(SEALED_ACCESS),
                                              confirmed=request.message.created + 1))


def make_booking(**request_args) -> p.Booking:
    request = make_request(**request_args)
    return p.Booking(request=request, confirmation=confirm(request))


def shared_value_bomb(levels: int = 9, width: int = 10) -> bytes:
    """A "billion laughs" in CBOR value sharing (tags 28/29): a few hundred bytes that
    stand for width**levels items once expanded."""
    out = bytearray([0x98, levels + 1, 0xD8, 0x1C, 0x81, 0x01])  # [shareable([1]), ...]
    for level in range(1, levels + 1):
        out += bytes([0xD8, 0x1C, 0x80 + width]) + bytes([0xD8, 0x1D, level - 1]) * width
    return bytes(out)


def run_bounded(scenario, seconds: float = 60):
    """Run an async scenario under trio with one deadline, opened outside every host
    context (LIBP2P-NOTES: a timeout inside the stack that holds them breaks shutdown)."""

    async def main():
        with trio.fail_after(seconds):
            return await scenario()

    try:
        return trio.run(main)
    except BaseExceptionGroup as group:  # py-libp2p's nurseries nest the cause too deep for pytest to print
        raise AssertionError("the scenario failed: " + "; ".join(map(repr, causes(group)))) from group


def error_lines(records: list[logging.LogRecord]) -> list[str]:
    """The ERROR records of libp2p or wattshare among `records` (a caplog's), one line each."""
    return [f"{r.name}: {r.getMessage()}".splitlines()[0] for r in records
            if r.levelno >= logging.ERROR and r.name.split(".")[0] in ("libp2p", "wattshare")]
