"""One-line errors for the user: what went wrong and what to do next, no traceback."""

from __future__ import annotations

from typing import NoReturn

import click

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `message` as one line on stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
