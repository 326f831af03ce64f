"""Who may use the app, checked before any route runs (DESIGN.md, "Apps").

Theory of operation: `Gate` wraps the app (ASGI middleware) and refuses, with a JSON
`{"error": ...}` that says what to do, any request that
- names a host the app does not answer at (`Host` must be `localhost` or an IP literal,
  with the app's port): a web page on another name that resolves to this machine (DNS
  rebinding) gets nothing;
- changes state (any method but GET and HEAD) without an `Origin` that is the app's own,
  without the page's CSRF token in `X-CSRF-Token`, or with a body that is not JSON: no
  other site can make a browser book, pay or approve;
- comes to a paired app (one reachable beyond this machine) without the pairing cookie,
  for anything but the page itself, its assets and the two requests that pair a device.

`Pairing` is the per-home secret for LAN access: a token shown once as a link (and QR
code) that becomes an HttpOnly, SameSite=Strict cookie. The home keeps only its SHA-256
(mode 0600); a new pairing replaces it and so unpairs every device. Wrong tokens are
counted: after `PAIR_TRIES` in a minute, pairing is refused until the minute is over.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "wattshare_pairing"
CSRF_HEADER = "x-csrf-token"
PAIR_TRIES = 10
OPEN_PATHS = ("/api/session", "/api/pair")  # an unpaired page may ask what it is and pair
SAFE_METHODS = ("GET", "HEAD")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class Pairing:
    """The per-home LAN secret (see the module doc), kept as a hash in `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failures: list[float] = []

    def new(self) -> str:
        """A fresh token; every device paired before must pair again."""
        token = secrets.token_urlsafe(24)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(hashlib.sha256(token.encode()).hexdigest())
        os.chmod(self.path, 0o600)
        return token

    @property
    def made(self) -> bool:
        return self.path.exists()

    def holds(self, token: str | None) -> bool:
        """Is `token` the home's pairing secret? (Read afresh: `wattshare app pair` may
        have replaced it while the node runs.)"""
        if not token or not self.path.exists():
            return False
        digest = hashlib.sha256(token.encode()).hexdigest()
        return hmac.compare_digest(digest, self.path.read_text().strip())

    def try_pair(self, token: str) -> bool | None:
        """True if `token` pairs; False if not; None while too many wrong ones came lately."""
        now = trio.current_time()
        self.failures = [t for t in self.failures if now - t < 60]
        if len(self.failures) >= PAIR_TRIES:
            return None
        if self.holds(token):
            return True
        self.failures.append(now)
        return False


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def cookie_of(headers: dict[str, str]) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def host_allowed(host: str, port: int) -> bool:
    """`Host` is localhost or an IP literal, with the app's port."""
    name, _, given = host.rpartition(":")
    if not name or given != str(port):
        return False
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class Gate:
    """The app behind its checks (see the module doc). `pairing` None: an app on loopback only."""

    def __init__(self, app: ASGIApp, *, port: int, scheme: str, csrf: str, pairing: Pairing | None,
                 tiles: str = "") -> None:
        self.app, self.port, self.scheme, self.csrf, self.pairing = app, port, scheme, csrf, pairing
        policy = f"default-src 'self'; img-src 'self' data: {tiles}".strip() + "; frame-ancestors 'none'"
        self.headers = [*SECURITY_HEADERS, (b"content-security-policy", policy.encode())]

    def paired(self, headers: dict[str, str]) -> bool:
        return self.pairing is None or self.pairing.holds(cookie_of(headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message = refusal
            await _answer(send, status, {"error": message}, self.headers)
            return

        async def secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, secured)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        if not host_allowed(headers.get("host", ""), self.port):
            return 421, f"this app answers only at its own address (an IP address or localhost, port {self.port})"
        path, method = scope["path"], scope["method"]
        if method not in SAFE_METHODS:
            host = headers["host"]
            if headers.get("origin") != f"{self.scheme}://{host}":
                return 403, "refused: the request came from another site; use the app's own page"
            if not hmac.compare_digest(headers.get(CSRF_HEADER, ""), self.csrf):
                return 403, "refused: the page's security token is missing or old; reload the page"
            if headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return 415, "refused: requests carry JSON"
        if path.startswith("/api/") and path not in OPEN_PATHS and not self.paired(headers):
            return 401, ("this device is not paired with the node: open the pairing link it printed, "
                         "or make a new one with `wattshare app pair`")
        return None


async def _answer(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": data})
