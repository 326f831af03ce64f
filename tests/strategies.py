"""Hypothesis strategies for every wire record, shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from wattshare import protocol as p

keys = st.binary(min_size=32, max_size=32)
digests = st.binary(min_size=32, max_size=32)
times = st.integers(min_value=0, max_value=2**40)
small = st.integers(min_value=0, max_value=10**6)
text = st.text(max_size=40)
days = st.lists(st.sampled_from(list(p.DayOfWeek)), unique=True).map(tuple)
hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
reasons = st.sampled_from(list(p.Reason))


@st.composite
def bounds(draw: st.DrawFn) -> tuple[int | None, int | None]:
    low = draw(st.none() | st.integers(0, 10**5))
    high = draw(st.none() | st.integers(0, 10**5))
    if low is not None and high is not None and low >= high:
        high = low + 1
    return low, high


@st.composite
def restrictions(draw: st.DrawFn) -> p.TariffRestrictions:
    min_wh, max_wh = draw(bounds())
    min_power_w, max_power_w = draw(bounds())
    min_duration, max_duration = draw(bounds())
    return p.TariffRestrictions(
        start_time=draw(st.none() | hhmm),
        end_time=draw(st.none() | hhmm),
        day_of_week=draw(days),
        min_wh=min_wh,
        max_wh=max_wh,
        min_power_w=min_power_w,
        max_power_w=max_power_w,
        min_duration=min_duration,
        max_duration=max_duration,
    )


components = st.builds(
    p.PriceComponent,
    type=st.sampled_from(list(p.Dimension)),
    price=st.integers(0, 10**6),
    step_size=st.integers(1, 3600),
)


@st.composite
def elements(draw: st.DrawFn, restrictions_strategy: st.SearchStrategy = restrictions()) -> p.TariffElement:
    parts = draw(st.lists(components, min_size=1, max_size=4, unique_by=lambda c: c.type))
    return p.TariffElement(
        price_components=tuple(parts), restrictions=draw(st.none() | restrictions_strategy)
    )


@st.composite
def tariffs(draw: st.DrawFn, element_strategy: st.SearchStrategy | None = None) -> p.Tariff:
    items = draw(st.lists(elements() if element_strategy is None else element_strategy, min_size=1, max_size=5))
    low = draw(st.none() | st.integers(0, 10**4))
    high = draw(st.none() | st.integers(0, 10**5))
    if low is not None and high is not None and low > high:
        low, high = high, low
    return p.Tariff(currency=draw(st.sampled_from(["EUR", "GBP", "SEK"])), elements=tuple(items), min_price=low, max_price=high)


terms = st.builds(
    p.BookingTerms,
    cancel_until_minutes=small,
    cancel_fee=small,
    noshow_timeout_minutes=small,
    noshow_fee=small,
    early_start_minutes=small,
    dispute_window_minutes=small,
)

geohashes7 = st.text(alphabet="0123456789bcdefghjkmnpqrstuvwxyz", min_size=7, max_size=7)
zones = st.sampled_from(["Europe/Berlin", "Europe/London", "America/New_York", "UTC", "Australia/Sydney"])


@st.composite
def windows(draw: st.DrawFn) -> p.WeeklyWindow:
    return p.WeeklyWindow(days=draw(days.filter(bool)), start=draw(hhmm), end=draw(hhmm))


@st.composite
def exceptions(draw: st.DrawFn) -> p.AvailabilityException:
    start = draw(times)
    return p.AvailabilityException(start=start, end=start + draw(st.integers(1, 10**6)), available=draw(st.booleans()))


def ads(host: st.SearchStrategy[bytes] = keys) -> st.SearchStrategy[p.ChargerAd]:
    return st.builds(
        p.ChargerAd,
        host=host,
        charger_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20),
        seq=small,
        expires=times,
        geohash=geohashes7,
        country=st.sampled_from(["DEU", "FRA", "NLD", "AUT"]),
        tz=zones,
        connector=st.sampled_from(list(p.Connector)),
        max_power_w=st.integers(1, 350_000),
        tariff=tariffs(),
        terms=terms,
        availability=st.lists(windows(), max_size=3).map(tuple),
        exceptions=st.lists(exceptions(), max_size=3).map(tuple),
        notes=text,
    )


@st.composite
def booking_requests(draw: st.DrawFn, driver: bytes | None = None) -> p.BookingRequest:
    start = draw(times)
    return p.BookingRequest(
        driver=driver if driver is not None else draw(keys),
        host=draw(keys),
        charger_id=draw(st.text(alphabet="abc123", min_size=1, max_size=10)),
        ad_seq=draw(small),
        tariff=draw(tariffs()),
        terms=draw(terms),
        tz=draw(zones),
        max_power_w=draw(st.integers(1, 1_000_000)),
        geohash=draw(geohashes7),
        country=draw(st.sampled_from(["DEU", "FRA"])),
        start=start,
        end=start + draw(st.integers(1, 24 * 3600)),
        spend_cap=draw(st.integers(1, 10**9)),
        nonce=draw(st.binary(min_size=16, max_size=16)),
        created=draw(times),
    )


price_lines = st.builds(
    p.PriceLine,
    kind=st.sampled_from(list(p.LineKind)),
    element=st.integers(-1, 31),
    quantity=small,
    amount=st.integers(0, 10**6),
)


@st.composite
def settlements(draw: st.DrawFn) -> p.Settlement:
    lines = tuple(draw(st.lists(price_lines, max_size=5)))
    return p.Settlement(
        booking_id=draw(digests),
        last_receipt=draw(digests),
        energy_wh=draw(small),
        amount=sum(line.amount for line in lines),
        currency="EUR",
        breakdown=lines,
        t=draw(times),
    )


@st.composite
def receipts(draw: st.DrawFn) -> p.MeterReceipt:
    seq = draw(small)
    return p.MeterReceipt(
        booking_id=draw(digests),
        seq=seq,
        t=draw(times),
        energy_wh=0 if seq == 0 else draw(small),
        prev=p.GENESIS if seq == 0 else draw(digests),
    )


def message_strategies(author: bytes) -> dict[type[p.Message], st.SearchStrategy[p.Message]]:
    """A strategy per registered message type; messages that name an author get `author`."""
    at = {"booking_id": digests, "t": times}
    return {
        p.ChargerAd: ads(host=st.just(author)),
        p.BookingRequest: booking_requests(driver=author),
        p.BookingConfirmation: st.builds(
            p.BookingConfirmation, booking_id=digests, access_digest=digests, confirmed=times
        ),
        p.BookingRejection: st.builds(p.BookingRejection, booking_id=digests, reason=reasons, detail=text),
        p.Cancel: st.builds(p.Cancel, detail=text, **at),
        p.NoShow: st.builds(p.NoShow, **at),
        p.StartRequest: st.builds(p.StartRequest, **at),
        p.StopRequest: st.builds(p.StopRequest, **at),
        p.MeterReceipt: receipts(),
        p.Settlement: settlements(),
        p.SettlementAck: st.builds(p.SettlementAck, settlement=digests, **at),
        p.Dispute: st.builds(p.Dispute, settlement=digests, reason=reasons, detail=text, **at),
    }


def messages(author: bytes) -> st.SearchStrategy[p.Message]:
    return st.one_of(*message_strategies(author).values())
