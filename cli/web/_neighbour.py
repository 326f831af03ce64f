"""The neighbour's view of the app (`wattshare wallet run`): find, book, charge live, pay, dispute.

Each route reads its fields and runs one wallet job (`_wallet_jobs`, as the `wattshare
wallet` commands do) on the daemon's node; live sessions are `_live.Live`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from wattshare.node import Node
from wattshare.protocol import Booking

from .. import _wallet_jobs as jobs
from .._charger import CONNECTORS
from .._errors import fail
from ._api import body, endpoint, number, text, whole
from ._live import Live, Watchers

LATEST = 2**40  # a time far past any window: bounds the numbers a request may carry
REASONS = ("mispriced", "over_cap", "broken_chain", "wrong_booking", "bad_time")


def routes(node: Node, coop: bytes, currency: str, live: Live, watchers: Watchers) -> list[Route]:
    """The neighbour's API (see the module doc)."""

    async def run(job: Callable[[Node], Awaitable[Any]]) -> Any:
        return await jobs.wallet_job(node, coop, job)

    def named(request: Request) -> Booking:
        return jobs.booking_named(node, request.path_params["booking"])

    def with_live(row: dict[str, Any]) -> dict[str, Any]:
        followed = live.followed.get(bytes.fromhex(row["booking"]))
        return row | {"live": followed.snapshot["state"] if followed else None}

    @endpoint
    async def balance(_: Request) -> dict[str, Any]:
        return node.balance() | {"history": jobs.history(node)}

    @endpoint
    async def find(request: Request) -> list[dict[str, Any]]:
        data = await body(request)
        connector = text(data, "connector", "", 20)
        if connector and connector not in CONNECTORS:
            fail(f"connector must be one of {', '.join(sorted(CONNECTORS))}")
        query = jobs.make_query(number(data, "lat", -90, 90), number(data, "lon", -180, 180),
                                round(number(data, "radius_m", 100, 50_000, 2_000)), whole(data, "start", 0, LATEST),
                                whole(data, "end", 0, LATEST), number(data, "kwh", 1, 200, 20),
                                CONNECTORS.get(connector), number(data, "min_kw", 0, 350, 0),
                                text(data, "max_price", "", 20) or None, currency)
        return await run(lambda n: jobs.find(n, query))

    @endpoint
    async def book(request: Request) -> dict[str, Any]:
        data = await body(request)
        ref, start, end = text(data, "ad", limit=200), whole(data, "start", 0, LATEST), whole(data, "end", 0, LATEST)
        cap = text(data, "cap", limit=20)
        return await run(lambda n: jobs.book(n, jobs.found_ad(n, ref), start, end, cap))

    @endpoint
    async def bookings(_: Request) -> list[dict[str, Any]]:
        return [with_live(row) for row in reversed(node.store.listing())]

    @endpoint
    async def booking(request: Request) -> dict[str, Any]:
        chosen = named(request)
        access = node.access(chosen)
        followed = live.followed.get(chosen.id)
        row = next(row for row in node.store.listing() if row["booking"] == chosen.id.hex())
        return {"booking": with_live(row), "quote": jobs.cancel_quote(node, chosen),
                "access": {"address": access.address, "code": access.code, "instructions": access.instructions},
                "plug_in_from": chosen.request.message.terms.opening(chosen.request.message.start),
                "live": followed.snapshot if followed else None} | jobs.receipts(node, chosen)

    @endpoint
    async def cancel(request: Request) -> dict[str, Any]:
        chosen = named(request)
        return await run(lambda n: jobs.cancel(n, chosen))

    def session(stop_now: bool) -> Callable[[Request], Awaitable[Any]]:
        @endpoint
        async def act(request: Request) -> dict[str, Any]:
            attach = (await body(request)).get("attach") is True
            return live.follow(named(request), stop_now=stop_now, attach=attach)

        return act

    @endpoint
    async def watch(request: Request) -> Any:
        return watchers.stream(live.watch(named(request).id))

    @endpoint
    async def dispute(request: Request) -> dict[str, Any]:
        data = await body(request)
        reason, detail = text(data, "reason", "mispriced", 20), text(data, "detail", "", 300)
        if reason not in REASONS:
            fail(f"reason must be one of {', '.join(REASONS)}")
        chosen = named(request)

        async def job(n: Node) -> dict[str, Any]:
            return jobs.dispute(n, chosen, reason, detail)

        return await run(job)

    one = "/api/wallet/bookings/{booking:str}"
    return [
        Route("/api/wallet/balance", balance),
        Route("/api/wallet/find", find, methods=["POST"]),
        Route("/api/wallet/book", book, methods=["POST"]),
        Route("/api/wallet/bookings", bookings),
        Route(one, booking),
        Route(f"{one}/cancel", cancel, methods=["POST"]),
        Route(f"{one}/start", session(stop_now=False), methods=["POST"]),
        Route(f"{one}/stop", session(stop_now=True), methods=["POST"]),
        Route(f"{one}/live", watch),
        Route(f"{one}/dispute", dispute, methods=["POST"]),
    ]
