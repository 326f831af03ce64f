"""A host's charger as its config says it, turned into the signed ad's contents.

Theory of operation: `host init` stores what the host typed, in the units people use
(prices in the currency per kWh, power in kW, "23:00-07:00@0.12" for an off-peak
price), in `[charger]` of config.toml. `charger_ad` turns it into the protocol's
OCPI-shaped ChargerAd: ENERGY elements (the off-peak one restricted to its local
hours, the peak one unrestricted after it), an optional FLAT session fee, weekly
availability, booking terms; the exact coordinates stay in the config and only their
geohash-7 (about 150 m) goes into the ad. Availability is weekly: the bookable hours on
the chosen days. Every parser fails with one line saying what
a good value looks like.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from wattshare.node import AD_LIFETIME
from wattshare.protocol import (
    PRICE_SCALE,
    BookingTerms,
    ChargerAd,
    Connector,
    DayOfWeek,
    Dimension,
    InvalidValue,
    PriceComponent,
    Tariff,
    TariffElement,
    TariffRestrictions,
    WeeklyWindow,
    geo,
    minor_digits,
)

from ._errors import fail

CONNECTORS = {"type2": Connector.TYPE_2, "ccs2": Connector.CCS2, "chademo": Connector.CHADEMO,
              "j1772": Connector.J1772, "nacs": Connector.NACS, "gbt-ac": Connector.GBT_AC,
              "gbt-dc": Connector.GBT_DC, "schuko": Connector.SCHUKO}
TERMS = ("cancel_until_minutes", "cancel_fee", "noshow_timeout_minutes", "noshow_fee", "early_start_minutes",
         "dispute_window_minutes")


def amount(text: str, currency: str, what: str, scale: int = 1) -> int:
    """'2.50' (currency units) in minor units times `scale` (PRICE_SCALE for tariff prices)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        fail(f"{what} must be an amount like 0.12 ({currency}), not {text!r}")
    return int(value * 10 ** minor_digits(currency) * scale)


def hours(text: str, what: str) -> tuple[str, str]:
    """'23:00-07:00' as (start, end); the end may wrap past midnight."""
    start, _, end = text.partition("-")
    try:
        WeeklyWindow(days=tuple(DayOfWeek), start=start, end=end)
    except InvalidValue:
        fail(f"{what} must be local hours like 23:00-07:00, not {text!r}")
    return start, end


def days(text: str) -> list[str]:
    """'mon-fri', 'sat,sun' or 'mon-sun' as DayOfWeek values, in week order."""
    week = list(DayOfWeek)
    names = [day.value[:3].lower() for day in week]
    chosen: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in names or (last and last not in names):
            fail(f"--days must be days like mon-fri or sat,sun, not {text!r}")
        a, b = names.index(first), names.index(last or first)
        chosen.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return [week[i].value for i in sorted(chosen)]


def tariff(charger: dict[str, Any]) -> Tariff:
    currency = charger["currency"]
    elements = []
    flat = amount(charger.get("flat", "0"), currency, "--flat", PRICE_SCALE)
    if flat:
        elements.append(TariffElement(price_components=(PriceComponent(type=Dimension.FLAT, price=flat),)))
    if charger.get("off_peak"):
        window, _, price = charger["off_peak"].partition("@")
        start, end = hours(window, "--off-peak")
        elements.append(TariffElement(
            price_components=(PriceComponent(type=Dimension.ENERGY,
                                              price=amount(price, currency, "--off-peak price", PRICE_SCALE)),),
            restrictions=TariffRestrictions(start_time=start, end_time=end)))
    elements.append(TariffElement(price_components=(
        PriceComponent(type=Dimension.ENERGY, price=amount(charger["peak"], currency, "--peak", PRICE_SCALE)),)))
    return Tariff(currency=currency, elements=tuple(elements))


def charger_ad(charger: dict[str, Any], host: bytes, seq: int, now: float) -> ChargerAd:
    """The ad of the configured charger (see the module doc)."""
    start, end = hours(charger.get("hours", "00:00-00:00"), "--hours")
    try:
        return ChargerAd(
            host=host, charger_id=charger["id"], seq=seq, expires=int(now) + AD_LIFETIME,
            geohash=geo.encode(charger["lat"], charger["lon"], 7), country=charger.get("country", "DEU"),
            tz=charger["tz"],
            connector=CONNECTORS[charger["connector"]], max_power_w=round(charger["max_kw"] * 1000),
            tariff=tariff(charger), terms=BookingTerms(**{k: charger["terms"][k] for k in TERMS}),
            availability=(WeeklyWindow(days=tuple(DayOfWeek(d) for d in charger.get("days", list(DayOfWeek))),
                                       start=start, end=end),),
            notes=charger.get("notes", ""),
        )
    except (InvalidValue, KeyError) as error:
        fail(f"the [charger] section of config.toml is not usable ({error}); run `wattshare host init --force`")
