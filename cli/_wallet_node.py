"""A wallet command's node: short-lived, and how commands name bookings.

Each wallet command runs a short-lived node (`_daemon.short_lived`): it joins the
bootstrap peers, pulls the ledger and runs its job through `_wallet_jobs.wallet_job`
(as the `wallet run` daemon's app does). Bookings, sessions and the last search's
ads stay in the wallet's `node.db`, so every command can name a booking by the first
characters of its id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from wattshare.node import Node

from ._daemon import refuse_a_second_daemon, run_trio, short_lived
from ._home import clock_from_env, member_key
from ._view import Context
from ._wallet_jobs import wallet_job


def wallet_node(ctx: Context, daemon: bool = False, sync_interval: float = 30.0) -> Node:
    """This wallet's node: a command's short-lived one, or (`daemon`) `wallet run`'s,
    which also hears the ledger's gossip and answers the admin socket."""
    config = ctx.home.config()["node"]
    return Node(ctx.home.identity(), listen=config["listen"], state=ctx.home.state, ledger=ctx.home.ledger(),
                clock=clock_from_env(), gossip=daemon, admin=ctx.home.admin if daemon else None,
                sync_interval=sync_interval, full=config.get("full", False))


def with_node(ctx: Context, job: Callable[[Node], Awaitable[Any]]) -> Any:
    """Run `job` on a short-lived wallet node (see the module doc); not beside a running
    `wallet run`, whose node has the same key and files."""
    refuse_a_second_daemon(ctx.home)
    node = wallet_node(ctx)
    config = ctx.home.config()["node"]

    async def main() -> Any:
        async with short_lived(node, config["bootstrap"]) as live:
            return await wallet_job(live, member_key(config["coop"]), job)

    return run_trio(main)


async def nothing(node: Node) -> None:
    """A job that only joins, pulls and asks again (`wallet_job` does the rest)."""
    return None
