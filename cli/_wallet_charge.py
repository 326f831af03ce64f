"""`wattshare wallet start | watch | stop | receipts | dispute`: a neighbour charges and pays."""

from __future__ import annotations

import json
import signal
from collections.abc import Awaitable, Callable

import click
import trio
from rich.console import Group
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from wattshare.node import Charging, Node, SessionLost, causes
from wattshare.protocol import Booking, RemoteProtocolError

from . import _wallet_jobs as jobs
from ._errors import fail
from ._view import Context, console, emit, kwh, local_time, money, pass_context, settlement_table
from ._wallet_jobs import EXIT_REFUSED
from ._wallet_node import wallet_node, with_node

EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C


def _still_charging(ref: str) -> str:
    return f"it may still be charging: `wattshare wallet watch {ref}` or `wattshare wallet stop {ref}`"


async def _interruptible(run: Callable[[], Awaitable[Charging]]) -> Charging | None:
    """`run()`, or None once Ctrl-C comes: SIGINT is received here, so no task of the
    node's can catch it on the way (trio raises it in whichever task runs)."""
    result: list[Charging] = []
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        try:
            async with trio.open_nursery() as nursery:
                async def follow() -> None:
                    result.append(await run())
                    nursery.cancel_scope.cancel()

                nursery.start_soon(follow)
                async for _ in interrupts:
                    nursery.cancel_scope.cancel()
                    break
        except BaseExceptionGroup as group:  # the one error of `run`, as itself
            if len(found := causes(group)) != 1:
                raise
            raise found[0] from None
    return result[0] if result else None


def _charge(ctx: Context, ref: str, stop_now: bool, attach: bool = False) -> None:
    """Follow a session with a live bar on a terminal, else a line per receipt (JSON lines
    on stderr with --json); Ctrl-C leaves it running at the host. `attach`: only one that
    runs already."""
    live = console.is_terminal and not ctx.json
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[cost]}"),
                  console=console, disable=not live) as bar:
        task = bar.add_task("starting", total=1, cost="")
        shown = [0]  # receipts told of so far, when not live

        async def job(node: Node) -> tuple[Charging, Booking]:
            chosen = jobs.booking_named(node, ref)
            r = chosen.request.message
            stop = trio.Event()
            if stop_now:
                stop.set()

            def show(charging: Charging) -> None:
                cost = f"{money(charging.cost, r.tariff.currency)} of {money(r.spend_cap, r.tariff.currency)}"
                bar.update(task, total=r.spend_cap, completed=charging.cost,
                           description=f"{kwh(charging.energy_wh)} charged", cost=cost)
                receipts = charging.machine.receipts
                if not live and len(receipts) > shown[0]:  # a line per new receipt (one for a replayed batch)
                    last = receipts[-1].message
                    if ctx.json:
                        click.echo(json.dumps({"seq": last.seq, "t": last.t, "energy_wh": last.energy_wh,
                                               "cost": charging.cost}), err=True)
                    else:
                        click.echo(f"{local_time(last.t)}  {kwh(last.energy_wh)}  {cost}")
                    shown[0] = len(receipts)

            try:
                charging = await _interruptible(lambda: node.charge(chosen, stop=stop, on_update=show, attach=attach))
                if charging is not None:
                    return charging, chosen
            except RemoteProtocolError as refused:
                fail(f"the host refused ({refused.reason}): {refused.message}", EXIT_REFUSED)
            except SessionLost as lost:
                fail(f"{lost}: {_still_charging(ref)}", EXIT_REFUSED)
            bar.stop()
            fail(f"left the live view; {_still_charging(ref)}", EXIT_INTERRUPTED)

        try:
            ended = with_node(ctx, job)  # (the charging, its booking)
        except KeyboardInterrupt:  # before the live view began
            bar.stop()
            fail(f"left the live view; {_still_charging(ref)}", EXIT_INTERRUPTED)
    data = jobs.charged(*ended)
    emit(ctx, data, f"settled: {kwh(data['energy_wh'])} for {money(data['amount'], data['currency'])}; "
                    f"you {data['answer']}")


def _session_command(name: str, help_text: str, *, stop_now: bool = False, attach: bool = False) -> click.Command:
    """`wallet start | watch | stop BOOKING`: one live view, three ways in."""

    @click.command(name, help=help_text)
    @click.argument("booking")
    @pass_context
    def command(ctx: Context, booking: str) -> None:
        _charge(ctx, booking, stop_now=stop_now, attach=attach)

    return command


start = _session_command("start", """Start charging on a booking and watch it live until it settles.

    \b
    Example:
      wattshare wallet start 3fa9c2e1b0d4
    """)
watch = _session_command("watch", """Watch a running session live (energy, cost against your cap) until it settles;
    it never starts one.

    \b
    Example:
      wattshare wallet watch 3fa9c2
    """, attach=True)
stop = _session_command("stop", """Stop charging now; shows the settlement and acks it if it checks out.

    \b
    Example:
      wattshare wallet stop 3fa9c2
    """, stop_now=True)


@click.command("receipts")
@click.argument("booking")
@pass_context
def receipts(ctx: Context, booking: str) -> None:
    """List a session's signed metering receipts and its settlement.

    \b
    Example:
      wattshare wallet receipts 3fa9c2 --json
    """
    node = wallet_node(ctx)
    chosen = jobs.booking_named(node, booking)
    data = jobs.receipts(node, chosen)
    table = Table(title=f"Receipts of {chosen.id.hex()[:12]}", title_justify="left")
    for column in ("seq", "time", "energy"):
        table.add_column(column, justify="right")
    for r in data["receipts"]:
        table.add_row(str(r["seq"]), local_time(r["t"]), kwh(r["energy_wh"]))
    session = node.store.session(chosen.id)
    settled = [] if session is None or session.settlement is None else [
        settlement_table(session.settlement.message, chosen.request.message.tariff, "Settlement, by tariff period")]
    emit(ctx, data, Group(table, *settled))


@click.command("dispute")
@click.argument("booking")
@click.option("--reason", type=click.Choice(["mispriced", "over_cap", "broken_chain", "wrong_booking", "bad_time"]),
              default="mispriced", show_default=True, help="bad_time: a fee for a cancel or no-show that was not late.")
@click.option("--detail", default="", help="What is wrong, in a line.")
@pass_context
def dispute(ctx: Context, booking: str, reason: str, detail: str) -> None:
    """Dispute a settlement, or a cancel or no-show fee, on the ledger (within the booking
    terms' dispute window); your co-op resolves it.

    \b
    Examples:
      wattshare wallet dispute 3fa9c2 --reason mispriced --detail "charged peak after 23:00"
      wattshare wallet dispute 3fa9c2 --reason bad_time --detail "I was at the charger at 23:05"
    """

    async def job(node: Node) -> dict:
        return jobs.dispute(node, jobs.booking_named(node, booking), reason, detail)

    data = with_node(ctx, job)
    emit(ctx, data, f"disputed {data['booking'][:12]} ({data['reason']}); your co-op will see it on the ledger")
