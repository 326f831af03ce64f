"""Entry point and command group of `wattshare`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from ._app import app_group
from ._audit import audit_command
from ._coop import coop_group
from ._demo import demo
from ._home import HOME_ENV, Home, default_home
from ._host import host_group
from ._view import Context
from ._wallbox import wallbox
from ._wallet import wallet_group

EXIT_FAILED = 1


class _Group(click.Group):
    """Turns an unexpected error into one line (the traceback only with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as error:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            click.echo(f"error: {str(error) or type(error).__name__} (run with --debug for the details)", err=True)
            raise SystemExit(EXIT_FAILED) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wattshare")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar=HOME_ENV,
              help=f"This participant's folder (default: ${HOME_ENV}, else the platform's data folder).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """Share a home EV charger with your neighbours, peer to peer.

    \b
    Examples:
      wattshare demo                       # a whole neighbourhood on 127.0.0.1
      wattshare host init --help           # share your charger
      wattshare wallet find --near 52.53,13.41 --radius 2km --from 23:00 --to 06:00
      wattshare audit ledger.db            # re-verify a ledger
    \b
    Exit codes: 0 done, 1 a check or a request failed, 2 bad arguments or set-up.
    """
    ctx.obj = Context(Home(home or default_home()), debug)
    logging.getLogger("libp2p").setLevel(logging.ERROR if debug else logging.CRITICAL)  # see configure_logging


main.add_command(demo)
main.add_command(host_group)
host_group.add_command(wallbox)
main.add_command(wallet_group)
main.add_command(coop_group)
main.add_command(audit_command)
main.add_command(app_group)
