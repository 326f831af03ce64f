"""`wattshare app ...`: the node's web app, from the terminal: where it is, and pairing a device."""

from __future__ import annotations

import json

import click

from ._errors import fail
from ._view import Context, emit, pass_context
from .web import pair_anew


@click.group("app")
def app_group() -> None:
    """The web app your node serves (started by `host run`, `wallet run` or `coop node run`).

    \b
    Example:
      wattshare app url
      wattshare app pair
    """


@app_group.command("url")
@pass_context
def url(ctx: Context) -> None:
    """Print where this home's app is (as its node printed it when it started).

    \b
    Example:
      wattshare app url
    """
    try:
        data = json.loads((ctx.home.path / "app.json").read_text())
    except (OSError, ValueError):
        fail(f"no app has run in {ctx.home.path} yet: start its node (`wattshare wallet run`, `host run` or "
             "`coop node run`)")
    emit(ctx, data, data["url"])


@app_group.command("pair")
@pass_context
def pair(ctx: Context) -> None:
    """Make a new pairing link (and QR code) for a phone or computer on your home network;
    devices paired before must pair again.

    \b
    Example:
      wattshare app pair
    """
    pair_anew(ctx.home, click.echo)
