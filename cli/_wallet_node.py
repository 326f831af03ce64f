"""A wallet command's node: short-lived, and how commands name bookings.

Each wallet command runs a short-lived node (`_daemon.short_lived`): it joins the
bootstrap peers, pulls the ledger, asks the hosts of bookings whose answer was lost
again, does its job and, if it signed a ledger entry (a hold, an ack or a dispute),
pushes it to the co-op's node before leaving. Bookings, sessions and the last search's
ads stay in the wallet's `node.db`, so every command can name a booking by the first
characters of its id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from wattshare.node import Node
from wattshare.protocol import Booking

from ._daemon import log, run_trio, short_lived
from ._errors import fail
from ._home import clock_from_env, member_key
from ._view import Context

EXIT_REFUSED = 1  # the host or the ledger said no


def wallet_node(ctx: Context) -> Node:
    config = ctx.home.config()["node"]
    return Node(ctx.home.identity(), listen=config["listen"], state=ctx.home.state, ledger=ctx.home.ledger(),
                clock=clock_from_env(), gossip=False)


def with_node(ctx: Context, job: Callable[[Node], Awaitable[Any]]) -> Any:
    """Run `job` on a short-lived wallet node (see the module doc)."""
    node = wallet_node(ctx)
    bootstrap = ctx.home.config()["node"]["bootstrap"]
    me, coop = node.identity.public_key, member_key(ctx.home.config()["node"]["coop"])

    async def main() -> Any:
        async with short_lived(node, bootstrap) as live:
            before = live.ledger.sizes().get(me, 0)
            for booking_id in await live.ask_again_pending():
                log.warning("booking %s: its host's answer has not reached this wallet yet; the next wallet "
                            "command asks again", booking_id.hex()[:12])
            for booking_id in live.catch_up_bookings():
                log.warning("booking %s was settled at the host while this wallet was away: "
                            "`wattshare wallet watch %s` checks and answers it", booking_id.hex()[:12],
                            booking_id.hex()[:12])
            result = await job(live)
            if live.ledger.sizes().get(me, 0) > before and not await live.push_feed(coop):
                log.warning("the co-op's node did not take your new ledger entries yet; "
                            "your next wallet command will offer them again")
            return result

    return run_trio(main)


async def nothing(node: Node) -> None:
    """A job that only joins, pulls and asks again (`with_node` does the rest)."""
    return None


def booking_named(node: Node, ref: str) -> Booking:
    rows = [r for r in node.store.bookings() if r["booking_id"].hex().startswith(ref.lower())]
    if len(rows) != 1:
        fail(f"{len(rows) or 'no'} booking(s) start with {ref!r}; see `wattshare wallet bookings`")
    booking = node.store.booking(rows[0]["booking_id"])
    if booking is None:
        fail(f"booking {ref!r} was not confirmed ({rows[0]['state']})")
    return booking
