"""`wattshare wallet ...`: a neighbour finds, books, charges, pays and checks receipts.

The group, `init`, `balance` and `run` (the wallet's daemon and its app) live here; finding and booking in `_wallet_find`,
charging and paying in `_wallet_charge`, the commands' short-lived node in `_wallet_node`.
"""

from __future__ import annotations

import click
import trio

from wattshare.node import Node

from ._args import bootstrap_addresses, full_option, listen_address
from ._daemon import configure_logging, daemon, refuse_a_second_daemon, run_trio
from ._home import member_key
from ._view import Context, emit, money, pass_context
from ._wallet_charge import dispute, receipts, start, stop, watch
from ._wallet_find import book, bookings, cancel, find
from ._wallet_jobs import wallet_job
from ._wallet_node import nothing, wallet_node, with_node
from .web import AppOptions, app_options, start_app
from .web import _neighbour as neighbour_view
from .web._live import Live, Watchers


@click.group("wallet")
def wallet_group() -> None:
    """Charge at a neighbour's: find, book, start, watch, stop, pay, check receipts.

    \b
    Example:
      wattshare wallet init --coop 12D3KooW... --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
      wattshare wallet find --near 52.5365,13.4175 --radius 2km --from 23:00 --to 06:00
      wattshare wallet book 1 --from 23:00 --to 06:00 --cap 20
    """


@wallet_group.command("init")
@click.option("--coop", required=True, help="Your co-op's peer id.")
@click.option("--bootstrap", multiple=True, required=True, callback=bootstrap_addresses,
              help="A co-op node's full /p2p/ address (repeatable).")
@click.option("--listen", default="/ip4/0.0.0.0/tcp/0", show_default=True, callback=listen_address,
              help="libp2p listen address.")
@click.option("--currency", default="EUR", show_default=True, help="The currency you pay in.")
@full_option
@click.option("--force", is_flag=True, help="Replace an existing key and config in this home.")
@pass_context
def init(ctx: Context, coop: str, bootstrap: tuple[str, ...], listen: str, currency: str, full: bool,
         force: bool) -> None:
    """Create this wallet's key and config.

    \b
    Example:
      wattshare wallet init --coop 12D3KooW... --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW...
    """
    identity = ctx.home.create(force)
    ctx.home.write_config({"node": {"listen": listen, "bootstrap": list(bootstrap), "coop": coop, "full": full},
                           "wallet": {"currency": currency}})
    emit(ctx, {"peer_id": identity.peer_id, "home": str(ctx.home.path)},
         f"wallet [bold]{identity.peer_id}[/] ready in {ctx.home.path}\n"
         "ask your co-op's treasurer to record your deposit, then: wattshare wallet find --help")


@wallet_group.command("balance")
@pass_context
def balance(ctx: Context) -> None:
    """Show your balance and credit limit, from the ledger (pulled from the network first).

    \b
    Example:
      wattshare wallet balance
    """

    async def job(node: Node) -> dict:
        return node.balance()

    data = with_node(ctx, job)
    lines = [money(v, c) for c, v in sorted(data["balances"].items())] or [money(0, data["currency"] or "EUR")]
    limit = money(data["credit_limit"], data["currency"]) if data["currency"] else "none (not admitted yet)"
    emit(ctx, data, f"balance of {data['member']}: {', '.join(lines)}; credit limit {limit}")


@wallet_group.command("run")
@click.option("--sync-interval", type=click.FloatRange(0.5), default=30.0, show_default=True,
              help="Seconds between pulls of the ledger from connected peers (anti-entropy).")
@app_options
@pass_context
def run(ctx: Context, sync_interval: float, app: AppOptions) -> None:
    """Run this wallet's node in the foreground with its web app (find, book, charge live,
    receipts, balance) until Ctrl-C or SIGTERM. While it runs, use the app: the other
    wallet commands wait for it to stop.

    \b
    Examples:
      wattshare wallet run                        # the app at http://127.0.0.1:8470
      wattshare wallet run --ui 0.0.0.0:8470      # and on your phone, on the home Wi-Fi
    """
    refuse_a_second_daemon(ctx.home)
    configure_logging(ctx.debug)
    config = ctx.home.config()
    node = wallet_node(ctx, daemon=True, sync_interval=sync_interval)
    coop = member_key(config["node"]["coop"])

    def views(nursery: trio.Nursery, watchers: Watchers) -> dict:
        live = Live(node, coop, nursery)
        return {"neighbour": neighbour_view.routes(node, coop, config["wallet"]["currency"], live, watchers)}

    async def started(node: Node, nursery: trio.Nursery) -> None:
        await start_app(nursery, node, ctx.home, app, views)
        nursery.start_soon(wallet_job, node, coop, nothing)  # answers and claims that came while it was away

    run_trio(daemon, node, config["node"]["bootstrap"], started)


for command in (find, book, bookings, cancel, start, watch, stop, receipts, dispute):
    wallet_group.add_command(command)
