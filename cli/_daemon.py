"""Running a node from the command line: the daemons, short-lived nodes, the admin socket.

Theory of operation: `host run` and `coop node run` are `daemon`: the node runs in
the foreground, joins its bootstrap peers, logs one structured line per event
(`ts level logger message key=value ...`) and stops cleanly on SIGINT or SIGTERM.
Wallet commands use `short_lived`: a node that joins, pulls the ledger from the peers
it joined, does one job and leaves. The other commands talk to a running daemon over
its admin socket (`ask`), and say how to start it when it is not running.
"""

from __future__ import annotations

import errno
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from rich.console import Group
from rich.table import Table
from rich.text import Text

from wattshare.node import Node, admin_call, exception_leaves, peer_of_address

from ._errors import Refusal, fail
from ._home import Home
from ._view import Context, emit

log = logging.getLogger("wattshare")
JOIN_PULL_TIMEOUT = 20.0


def run_trio(function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """`trio.run`, with an error from inside a nursery taken out of its exception group,
    so a command exits with its own one-line message (`fail`) and exit code."""
    try:
        return trio.run(function, *args)
    except BaseExceptionGroup as group:
        leaves = list(exception_leaves(group))
        first = next((leaf for leaf in leaves if isinstance(leaf, (Refusal, SystemExit))), leaves[0])
        if isinstance(first, OSError) and first.errno == errno.EADDRINUSE:
            fail("an address this node listens on is in use by another program: change `listen` in config.toml "
                 "(or the --ocpp port) or stop that program")
        raise first from None


def refuse_a_second_daemon(home: Home) -> None:
    """One daemon per home: a second would fight the first for its ports, socket and files.
    A socket no daemon answers on is a killed one's, and is taken over."""
    if not home.admin.exists():
        return
    try:
        status = trio.run(admin_call, home.admin, {"cmd": "status"})["data"]
    except (OSError, trio.TooSlowError, KeyError, TypeError):
        return
    fail(f"a node already runs in this home (pid {status.get('pid')}, {status.get('peer_id')}, listening on "
         f"{', '.join(status.get('addresses', []))}): use its web app (`wattshare app url`), or stop it first "
         "(Ctrl-C or kill -TERM), or use another --home")


def configure_logging(debug: bool) -> None:
    """wattshare's own lines at INFO (DEBUG with --debug). py-libp2p logs routine network
    events at ERROR (a departed peer's failed dial, a stale record: 92 lines in one
    evening), so its lines show only with --debug: a person reading a daemon's log sees
    what needs their attention."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("libp2p").setLevel(logging.ERROR if debug else logging.CRITICAL)


async def daemon(node: Node, bootstrap: list[str],
                 started: Callable[[Node, trio.Nursery], Awaitable[None]]) -> None:
    """Run `node` until SIGINT or SIGTERM (see the module doc); `started` may start
    more tasks in the nursery it is given."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with node.running(), trio.open_nursery() as nursery:
            joined = await node.join(bootstrap) if bootstrap else await node.rejoin()
            await started(node, nursery)
            log.info("ready peer_id=%s address=%s joined=%d", node.identity.peer_id, node.address, joined)
            async for signum in signals:
                log.info("stopping signal=%s", signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def short_lived(node: Node, bootstrap: list[str]) -> AsyncIterator[Node]:
    """A node that has joined `bootstrap` and pulled the ledger from those peers."""
    async with node.running():
        if not await node.join(bootstrap):
            fail("no bootstrap peer answered; check [node] bootstrap in config.toml and that the co-op node runs")
        if node.sync is not None:
            with trio.move_on_after(JOIN_PULL_TIMEOUT):
                for peer in {peer_of_address(address) for address in bootstrap} & set(node.host.get_connected_peers()):
                    await node.sync.pull(node.host, peer)  # from those that answered: one may be down
        yield node


def ask(home: Home, request: dict[str, Any]) -> Any:
    """One admin request to the daemon of `home`; its data, or a one-line failure."""
    if not home.admin.exists():
        fail(f"no daemon is running for {home.path}; start it with `wattshare host run` (or `coop node run`)")
    try:
        answer = run_trio(admin_call, home.admin, request)
    except (OSError, trio.TooSlowError) as error:
        fail(f"the daemon of {home.path} does not answer ({error}); is it still running?")
    if not answer.get("ok"):
        fail(answer.get("error", "the daemon refused"))
    return answer["data"]


def show_status(ctx: Context) -> None:
    """Print what the daemon of this home says of itself."""
    data = ask(ctx.home, {"cmd": "status"})
    paths = list(data.get("links", {}).values())
    lines = "\n".join([*(f"[bold]{key}[/]: {value}" for key, value in data.items()
                        if key not in ("misbehaving_peers", "sessions", "addresses", "links")),
                      f"[bold]links[/]: {paths.count('direct')} direct, {paths.count('relayed')} relayed"])
    addresses = [Text("addresses (members join with --bootstrap and the first):", style="bold")]
    addresses += [Text(f"  {address}", no_wrap=True, overflow="ignore") for address in data.get("addresses", [])]
    culprits = Table(title="Peers refused for misbehaving", title_justify="left")
    for column in ("peer", "protocol", "reason", "count"):
        culprits.add_column(column, justify="right" if column == "count" else "left")
    for row in data.get("misbehaving_peers", []):
        culprits.add_row(row["peer"], row["protocol"], row["reason"], str(row["count"]))
    sessions = Table(title="Charging sessions", title_justify="left")
    for column in ("booking", "charger", "state", "energy", "problem"):
        sessions.add_column(column, justify="right" if column == "energy" else "left")
    for row in data.get("sessions", []):
        sessions.add_row(row["booking"][:12], row["charger"], row["state"], f"{row['energy_wh'] / 1000:.2f} kWh",
                         row["error"] or "")
    emit(ctx, data, Group(lines, *addresses, *(table for table in (sessions, culprits) if table.rows)))
