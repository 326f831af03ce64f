"""What every command shares: its context (home, --debug, --json) and its output.

Theory of operation: each command is decorated with `pass_context`, which adds
`--json` and hands it a `Context`; it then calls `emit(ctx, data, human)` once: the
data as JSON for scripts, or the human form (text or a rich table) for people.
Amounts are shown in the currency's units, energy in kWh, times in the local time
of the machine the command runs on.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from wattshare.protocol import LineKind, PriceLine, Settlement, Tariff, format_amount

from ._home import Home

console = Console()


@dataclass
class Context:
    home: Home
    debug: bool = False
    json: bool = False


def pass_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the Context and a `--json` option."""

    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")
    @click.pass_obj
    @functools.wraps(command)
    def wrapper(ctx: Context, as_json: bool, *args: Any, **kwargs: Any) -> Any:
        ctx.json = as_json
        return command(ctx, *args, **kwargs)

    return wrapper


def emit(ctx: Context, data: Any, human: Any) -> None:
    if ctx.json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(human)


def local_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t).astimezone().strftime("%a %d %b %H:%M")


def iso_local(t: float) -> str:
    """A time as ISO 8601 with the local offset (for --json)."""
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="minutes")


def distance(metres: int) -> str:
    """A distance as precise as the public location allows (it comes rounded to 100 m)."""
    return f"~{metres / 1000:.1f} km" if metres >= 1000 else f"~{metres} m"


DELIVERED_NOTE = "* all the window allows at the charger's power, less than you asked for"


def delivered(wh: int, full: bool) -> str:
    """The energy a price is for, starred when the window allows no more (`DELIVERED_NOTE`)."""
    return f"{wh / 1000:.1f} kWh" + ("" if full else "*")


def kwh(wh: int) -> str:
    return f"{wh / 1000:,.2f} kWh"


def money(minor: int, currency: str) -> str:
    return f"{format_amount(minor, currency)} {currency}"


def booking_table(rows: list[dict], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("booking", "charger", "from", "to", "cap", "state"):
        table.add_column(column, justify="right" if column == "cap" else "left")
    for row in rows:
        table.add_row(row["booking"][:12], row["charger"], local_time(row["start"]), local_time(row["end"]),
                      money(row["spend_cap"], row["currency"]), row["state"])
    return table


def settlement_table(settlement: Settlement, tariff: Tariff, title: str) -> Table:
    """A settlement's lines, each named by its tariff period (23:00-07:00, other hours)."""
    table = Table(title=title, title_justify="left")
    for column in ("line", "quantity", "amount"):
        table.add_column(column, justify="left" if column == "line" else "right")
    for line in settlement.breakdown:
        when = tariff.period(line.element)
        table.add_row(f"{line.kind.lower().replace('_', ' ')} {when}".rstrip(), _quantity(line),
                      money(line.amount, settlement.currency))
    table.add_row("[bold]total", kwh(settlement.energy_wh), f"[bold]{money(settlement.amount, settlement.currency)}")
    return table


def _quantity(line: PriceLine) -> str:
    if line.kind is LineKind.ENERGY:
        return kwh(line.quantity)
    if line.kind in (LineKind.TIME, LineKind.PARKING_TIME):
        return f"{line.quantity / 3600:.2f} h"
    return str(line.quantity) if line.kind is LineKind.FLAT else ""
