"""One-line errors for the user: what went wrong and what to do next, no traceback.

`fail` raises `Refusal`; the `wattshare` command prints it as `error: <message>` and
exits with its code, and the web app answers it as `{"error": <message>}` with an HTTP
status for the code: one message for one mistake, whichever front end made the request.
"""

from __future__ import annotations

from typing import IO, Any, NoReturn

import click

EXIT_USAGE = 2


class Refusal(click.ClickException):
    """A request that cannot be done, and the line that says what to do instead."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Refuse with `message` (one line) and `code` (the command's exit code)."""
    raise Refusal(message, code)
