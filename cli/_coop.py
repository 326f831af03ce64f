"""`wattshare coop ...`: a community co-op's keys, money on the ledger, and its node.

A co-op home holds three keys: the co-op's own (it signs the charter, and admits each
member with its own credit limit), a treasurer's (deposits, withdrawals,
adjustments) and a witness's (checkpoints). The node's `CoopOffice` writes those
entries: in the running co-op node when there is one (through its admin socket, so its
ledger stays the one writer of its file), else straight into the home's ledger. These
commands parse, call it and print.
"""

from __future__ import annotations

from typing import Any

import click
import trio

from wattshare.ledger import LedgerStore
from wattshare.node import CHECKPOINT_EVERY, CoopOffice, Node, NodeError, witness_feeds

from ._args import announce_addresses, listen_address
from ._charger import amount
from ._daemon import ask, configure_logging, daemon, refuse_a_second_daemon, run_trio, show_status
from ._errors import fail
from ._home import Home, clock_from_env, member_key
from ._view import Context, emit, money, pass_context
from .web import AppOptions, app_options, start_app
from .web import _coop as coop_view


@click.group("coop")
def coop_group() -> None:
    """Run a co-op: keys, deposits and withdrawals, the bootstrap and auditing node.

    \b
    Example:
      wattshare coop init --name "Kollwitzkiez Energy" --credit-limit 50
      wattshare coop node run
      wattshare coop deposit 12D3KooW... 40 --reference "transfer 2026-11-27"
    """


@coop_group.command("init")
@click.option("--name", required=True, help="The co-op's name.")
@click.option("--currency", default="EUR", show_default=True, help="ISO 4217 code the co-op keeps.")
@click.option("--credit-limit", default="50", show_default=True,
              help="How far a member may go below zero, unless `coop admit` names another limit.")
@click.option("--listen", default="/ip4/0.0.0.0/tcp/4001", show_default=True, callback=listen_address,
              help="libp2p listen address: members bootstrap here, so keep the port fixed.")
@click.option("--announce", multiple=True, callback=announce_addresses,
              help="A public address peers reach this node at (repeatable), e.g. /ip4/203.0.113.7/tcp/4001: "
                   "for a node on a public IP or behind a port forward; without it the node tells its own addresses.")
@click.option("--force", is_flag=True, help="Replace an existing co-op in this home.")
@pass_context
def init(ctx: Context, name: str, currency: str, credit_limit: str, listen: str, announce: tuple[str, ...],
         force: bool) -> None:
    """Create the co-op's keys, its config and its ledger with the signed charter.

    \b
    Example:
      wattshare coop init --name "Kollwitzkiez Energy" --credit-limit 50
      wattshare coop init --name "Kollwitzkiez Energy" --announce /ip4/203.0.113.7/tcp/4001
    """
    limit = amount(credit_limit, currency, "--credit-limit")
    coop = ctx.home.create(force)
    treasurer, witness = (ctx.home.new_key(name) for name in ("treasurer.key", "witness.key"))
    ctx.home.write_config({"node": {"listen": listen, "announce": list(announce), "bootstrap": [], "coop": coop.peer_id},
                           "coop": {"name": name, "currency": currency}})
    ctx.home.ledger_file.unlink(missing_ok=True)
    ledger = ctx.home.ledger()
    CoopOffice(ledger, coop, treasurer, witness).found(name, currency, limit, int(clock_from_env()()))
    ledger.close()
    emit(ctx, {"coop": coop.peer_id, "treasurer": treasurer.peer_id, "witness": witness.peer_id},
         f"co-op [bold]{name}[/] is {coop.peer_id}\nmembers join with: --coop {coop.peer_id}\n"
         "admit each with: wattshare coop admit PEER_ID\nstart its node with: wattshare coop node run")


def _office(home: Home, ledger: LedgerStore) -> CoopOffice:
    return CoopOffice(ledger, home.identity(), home.identity("treasurer.key"), home.identity("witness.key"))


def _via_daemon(ctx: Context, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
    """Through the running co-op node (the one writer of its ledger), else into the file."""
    if ctx.home.admin.exists():
        return ask(ctx.home, {"cmd": cmd, **request})
    ledger = ctx.home.ledger()
    try:
        return _office(ctx.home, ledger).commands(clock_from_env())[cmd](request)
    except NodeError as error:
        fail(str(error))
    finally:
        ledger.close()


def _money(ctx: Context, request: dict[str, Any]) -> None:
    currency = ctx.home.config()["coop"]["currency"]
    request["amount"] = amount(request["amount"], currency, "AMOUNT")
    if request["amount"] <= 0:
        fail("AMOUNT must be above zero")
    data = _via_daemon(ctx, "money", request)
    emit(ctx, data, f"{data['kind']} of {money(data['amount'], data['currency'])} recorded (treasurer seq {data['seq']})")


@coop_group.command("deposit")
@click.argument("member")
@click.argument("amount_text", metavar="AMOUNT")
@click.option("--reference", default="", help="e.g. the bank transfer's reference.")
@pass_context
def deposit(ctx: Context, member: str, amount_text: str, reference: str) -> None:
    """Record money a MEMBER (peer id) paid in, in the currency's units.

    \b
    Example:
      wattshare coop deposit 12D3KooW... 40 --reference "SEPA 2026-11-27"
    """
    member_key(member)
    _money(ctx, {"kind": "deposit", "member": member, "amount": amount_text, "reference": reference})


@coop_group.command("withdraw")
@click.argument("member")
@click.argument("amount_text", metavar="AMOUNT")
@click.option("--reference", default="")
@pass_context
def withdraw(ctx: Context, member: str, amount_text: str, reference: str) -> None:
    """Record money paid out to a MEMBER (a host cashing in its earnings).

    \b
    Example:
      wattshare coop withdraw 12D3KooW... 25 --reference "SEPA out 2026-11-30"
    """
    member_key(member)
    _money(ctx, {"kind": "withdrawal", "member": member, "amount": amount_text, "reference": reference})


@coop_group.command("reverse")
@click.argument("seq", type=click.IntRange(0))
@pass_context
def reverse(ctx: Context, seq: int) -> None:
    """Undo the treasurer's money entry SEQ (a deposit to the wrong member, say) with its
    opposite; both stay on the append-only ledger, the new one naming SEQ.

    \b
    Example:
      wattshare coop reverse 7      # the seq `coop deposit` printed
    """
    data = _via_daemon(ctx, "reverse", {"seq": seq})
    emit(ctx, data, f"treasurer entry {data['reversed']} reversed by a {data['kind']} (treasurer seq {data['seq']})")


@coop_group.command("admit")
@click.argument("member")
@click.option("--credit-limit", "limit_text", help="How far MEMBER may go below zero (default: the charter's).")
@pass_context
def admit(ctx: Context, member: str, limit_text: str | None) -> None:
    """Admit a MEMBER (peer id), or change its credit limit, with an entry on the co-op's feed.

    Only members' ledger feeds are replicated, and only members get credit or deposits:
    admit every host and neighbour (they print their peer id with `host init` and
    `wallet init`).

    \b
    Examples:
      wattshare coop admit 12D3KooW...
      wattshare coop admit 12D3KooW... --credit-limit 50
    """
    member_key(member)
    currency = ctx.home.config()["coop"]["currency"]
    limit = None if limit_text is None else amount(limit_text, currency, "--credit-limit")
    data = _via_daemon(ctx, "admit", {"member": member, "limit": limit})
    emit(ctx, data, f"admitted {member[:16]}… with a credit limit of {money(data['credit_limit'], data['currency'])}")


@coop_group.command("adjust")
@click.argument("booking")
@click.argument("payer")
@click.argument("payee")
@click.argument("amount_text", metavar="AMOUNT")
@click.option("--note", default="", help="How the dispute was resolved.")
@pass_context
def adjust(ctx: Context, booking: str, payer: str, payee: str, amount_text: str, note: str) -> None:
    """Resolve a dispute about BOOKING (its id in hex): move AMOUNT from PAYER to PAYEE.

    \b
    Example:
      wattshare coop adjust 3fa9...e1 12D3KooWhost... 12D3KooWdriver... 0.50 --note "peak hour overcharged"
    """
    if len(booking) != 64:
        fail("BOOKING must be the booking's full id (64 hex digits), as the dispute entry shows it")
    member_key(payer), member_key(payee)
    _money(ctx, {"kind": "adjustment", "booking": booking, "payer": payer, "payee": payee, "amount": amount_text,
                 "note": note})


@coop_group.command("status")
@pass_context
def status(ctx: Context) -> None:
    """Show the running co-op node: peer id, addresses, peers, ledger entries.

    \b
    Example:
      wattshare coop status --json
    """
    show_status(ctx)


@coop_group.group("node")
def node_group() -> None:
    """The co-op's node.

    \b
    Example:
      wattshare coop node run
    """


@node_group.command("run")
@click.option("--sync-interval", type=click.FloatRange(0.5), default=5.0, show_default=True,
              help="Seconds between pulls of the ledger from connected peers (anti-entropy).")
@click.option("--checkpoint-every", type=click.IntRange(1), default=CHECKPOINT_EVERY // 60, show_default=True,
              help="Minutes (of the node's clock) between the witness's checkpoints, when feeds moved.")
@app_options
@pass_context
def node_run(ctx: Context, sync_interval: float, checkpoint_every: int, app: AppOptions) -> None:
    """Run the co-op node: bootstrap and relay for members, full replication, periodic
    checkpoints, and the co-op's web app (audit, members, deposits, checkpoints).

    \b
    Example:
      wattshare coop node run
    """
    refuse_a_second_daemon(ctx.home)
    configure_logging(ctx.debug)
    config = ctx.home.config()
    ledger = ctx.home.ledger()
    clock = clock_from_env()
    node = Node(ctx.home.identity(), listen=config["node"]["listen"], announce=config["node"].get("announce", []),
                relay=True, state=ctx.home.state, ledger=ledger, admin=ctx.home.admin, clock=clock,
                sync_interval=sync_interval,
                admin_commands=_office(ctx.home, ledger).commands(clock))

    async def witness(node: Node, nursery: trio.Nursery) -> None:
        nursery.start_soon(witness_feeds, ledger, ctx.home.identity("witness.key"),
                           member_key(config["node"]["coop"]), clock, checkpoint_every * 60)
        await start_app(nursery, node, ctx.home, app, lambda _, __: {
            "coop": coop_view.routes(node, node.admin_commands)})

    run_trio(daemon, node, config["node"]["bootstrap"], witness)
