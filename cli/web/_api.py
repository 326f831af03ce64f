"""The app's API boundary: each route's request read with a size cap, its fields checked,
its errors answered in words.

Theory of operation: a route is an `endpoint`: an async function of the request that
returns plain data (sent as JSON) or raises. A `Refusal` (the same the CLI prints) is
answered with its line and 400, or 409 when the host or the ledger said no; the
packages' typed errors with 409; no answer in time with 504; anything else is logged and
answered with 500 and a line, and the node keeps serving. `body` reads at most
`MAX_BODY` bytes of JSON object; the field readers refuse a missing or mistyped field by
its name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from wattshare.ledger import LedgerError
from wattshare.node import NodeError
from wattshare.protocol import ProtocolError

from .._errors import EXIT_USAGE, Refusal, fail

MAX_BODY = 16 * 1024
log = logging.getLogger("wattshare.app")
Handler = Callable[[Request], Awaitable[Any]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """`handler`'s data as JSON, its errors as words (see the module doc)."""

    async def answer(request: Request) -> Response:
        try:
            data = await handler(request)
        except Refusal as refusal:
            return _error(refusal.format_message(), 400 if refusal.exit_code == EXIT_USAGE else 409)
        except (NodeError, LedgerError, ProtocolError) as error:
            return _error(str(error), 409)
        except trio.TooSlowError:
            return _error("no answer in time from the network; try again in a moment", 504)
        except Exception as error:
            log.exception("app request %s %s failed", request.method, request.url.path)
            return _error(f"the node could not do it ({type(error).__name__}); see its log", 500)
        return data if isinstance(data, Response) else JSONResponse(data, headers={"cache-control": "no-store"})

    return answer


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers={"cache-control": "no-store"})


async def body(request: Request) -> dict[str, Any]:
    """The request's JSON object, at most MAX_BODY bytes of it."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            fail(f"a request to the app carries at most {MAX_BODY} bytes")
    try:
        value = json.loads(data or b"{}")
    except (ValueError, UnicodeDecodeError):
        fail("the request is not JSON")
    if not isinstance(value, dict):
        fail("the request must be a JSON object")
    return value


def text(data: dict[str, Any], name: str, default: str | None = None, limit: int = 500) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or len(value) > limit:
        fail(f"{name} must be text of at most {limit} characters")
    return value


def number(data: dict[str, Any], name: str, low: float, high: float, default: float | None = None) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        fail(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def whole(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fail(f"{name} must be a whole number from {low} to {high}")
    return value
