"""The local web app each long-running node serves (DESIGN.md, "Apps"): the neighbour's,
the host's and the co-op's views over the same node API as the `wattshare` command.

`_server` serves it (hypercorn and Starlette on the node's own trio run); `_gate`
decides who may use it; `_api` is the boundary every route passes; `_neighbour`,
`_host` and `_coop` are the views; `_live` pushes live sessions to the page; `static/`
is the page itself. `app_options` gives a daemon its `--ui`, `--no-ui` and `--tiles`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
import trio

from wattshare.node import Node

from .._home import Home
from ._server import DEFAULT_UI, AppOptions, Views, pair_anew, serve_app, split

__all__ = ["AppOptions", "app_options", "pair_anew", "start_app"]


def app_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a daemon command the app's options, as one `app: AppOptions` argument."""

    @click.option("--ui", "ui_address", default=DEFAULT_UI, show_default=True,
                  help="Where the web app listens. Loopback: this machine only. An address on your home network "
                       "(or 0.0.0.0:8470) opens it to paired devices there, over HTTPS.")
    @click.option("--no-ui", is_flag=True, help="Serve no web app.")
    @click.option("--tiles", default="", metavar="URL",
                  help="Map tiles to draw under the app's map, e.g. https://tile.example.org/{z}/{x}/{y}.png "
                       "(default: none, and no request leaves the node; the map draws the neighbourhood "
                       "from its own data).")
    @functools.wraps(command)
    def wrapper(*args: Any, ui_address: str, no_ui: bool, tiles: str, **kwargs: Any) -> Any:
        if not no_ui:
            split(ui_address)
        if tiles and (not tiles.startswith(("https://", "http://")) or not all(k in tiles for k in ("{z}", "{x}", "{y}"))):
            raise click.BadParameter("a tile URL is like https://tile.example.org/{z}/{x}/{y}.png", param_hint="--tiles")
        return command(*args, app=AppOptions(None if no_ui else ui_address, tiles), **kwargs)

    return wrapper


async def start_app(nursery: trio.Nursery, node: Node, home: Home, options: AppOptions, views: Views) -> None:
    """Serve the app in `nursery` unless `--no-ui` said not to."""
    if options.address is not None:
        await nursery.start(serve_app, node, home, options, views)
