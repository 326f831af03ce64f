"""Serving the app: one per long-running node, on hypercorn's trio worker, inside the node's own run.

Decision (issue 16): hypercorn and Starlette. Hypercorn has a trio worker, so the app
runs in the node's trio run and its routes call the node (its libp2p host, its stores)
directly: no thread, no second event loop, no second implementation. Starlette is
small, runs on anyio (so on trio) and gives routing, JSON and streamed responses
(server-sent events) without templates or a build step. The page is plain HTML, CSS
and JavaScript in `static/`, shipped in the package: nothing comes from the internet.

Where: `--ui HOST:PORT`, by default 127.0.0.1:8470; when that default port is taken
(another node on this machine), any free port on loopback, and the log says which. An
address beyond loopback means LAN access: the app then speaks HTTPS with a certificate
the node makes for it (its fingerprint is printed, to check the browser's warning
against) and serves paired devices only (`_gate`); the first such start prints the
pairing link and its QR code, once. The URL is kept in the home's `app.json` for
`wattshare app pair` and the demo.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
import segno
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from wattshare.node import Node, fingerprint, home_address, make_certificate

from .._errors import fail
from .._home import Home
from ._api import body, endpoint, text
from ._gate import COOKIE, Gate, Pairing
from ._live import Watchers

DEFAULT_UI = "127.0.0.1:8470"
PAIRED_FOR = 365 * 24 * 3600  # seconds a paired device's cookie lasts
log = logging.getLogger("wattshare.app")
Views = Callable[[trio.Nursery, Watchers], dict[str, list[BaseRoute]]]


@dataclass(frozen=True)
class AppOptions:
    """Where the app listens (None: no app) and, if wanted, a map tile URL template."""

    address: str | None = DEFAULT_UI
    tiles: str = ""


def split(address: str) -> tuple[str, int]:
    """HOST:PORT (an IPv4 address, [IPv6] or localhost), checked."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        if host != "localhost":
            ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        fail(f"--ui must be an address and port like {DEFAULT_UI} (or 0.0.0.0:8470 for the home network), "
             f"not {address!r}")
    if not 0 <= number < 65536:
        fail(f"--ui port must be 0-65535, not {number}")
    return host, number


def tile_origin(template: str) -> str:
    """The scheme, host and port of a tile URL template: what the page may load images from."""
    scheme, _, rest = template.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if rest else ""


def on_loopback(host: str) -> bool:
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def _bind(host: str, port: int, fallback: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if not fallback:
            sock.close()
            fail(f"the app's address {host}:{port} is in use or not this machine's: choose another with --ui")
        log.info("app port %d is taken (another node?): the app takes a free one", port)
        sock.bind((host, 0))
    return sock


def _show_pairing(url: str, token: str, print_line: Callable[[str], None]) -> None:
    link = f"{url}/#pair={token}"
    qr = segno.make(link, error="l")
    lines = [f"pair a phone or computer on your home network: open {link}", "(shown once; `wattshare app pair` "
             "makes a new link and unpairs the old devices)"]
    for line in [*lines, *_qr_lines(qr)]:
        print_line(line)


def _qr_lines(qr: segno.QRCode) -> list[str]:
    """The QR code in half-height block characters, two modules per text row, light
    modules drawn (as `qrencode -t UTF8` does: for a terminal with a dark background)."""
    rows = [[not cell for cell in row] for row in qr.matrix_iter(scale=1, border=2)]
    rows += [[True] * len(rows[0])] if len(rows) % 2 else []
    blocks = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    return ["".join(blocks[top, bottom] for top, bottom in zip(upper, lower))
            for upper, lower in zip(rows[::2], rows[1::2])]


def pair_anew(home: Home, print_line: Callable[[str], None]) -> None:
    """A new pairing link for the app of `home` (unpairing every device before)."""
    try:
        url = json.loads((home.path / "app.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        fail("no app of this home has run yet: start its node with --ui HOST:PORT on your home network first")
    if url.startswith("http://"):
        fail(f"the app at {url} serves this machine only and needs no pairing; for your home network start "
             "the node with --ui 0.0.0.0:8470")
    _show_pairing(url, Pairing(home.path / "app-pairing").new(), print_line)


def _tls(home: Home, host: str, now: float) -> tuple[Path, Path, str]:
    key, cert = home.path / "app-key.pem", home.path / "app-cert.pem"
    if not cert.exists():
        make_certificate(host, key, cert, now)
    return key, cert, fingerprint(cert)


async def serve_app(node: Node, home: Home, options: AppOptions, views: Views, *,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the app of `node` (see the module doc) until cancelled; `started` with its URL."""
    assert options.address is not None, "an app needs an address"
    host, port = split(options.address)
    loopback = on_loopback(host)
    sock = _bind(host, port, fallback=options.address == DEFAULT_UI)
    port = sock.getsockname()[1]
    shown = (home_address() or "127.0.0.1") if host in ("0.0.0.0", "::") else host
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn's socket from now on: it closes it
    config.accesslog = None
    config.errorlog = log
    pairing = None if loopback else Pairing(home.path / "app-pairing")
    scheme = "http" if loopback else "https"
    if not loopback:
        key, cert, digest = _tls(home, shown, node.clock())
        config.keyfile, config.certfile = str(key), str(cert)
        log.info("app certificate sha256=%s (check it against your browser's warning)", digest)
    url = f"{scheme}://{shown if ':' not in shown else f'[{shown}]'}:{port}"
    (home.path / "app.json").write_text(json.dumps({"url": url}))
    csrf = secrets.token_urlsafe(32)
    async with trio.open_nursery() as nursery:
        watchers = Watchers()
        named = views(nursery, watchers)
        routes: list[BaseRoute] = [
            Route("/api/session", _session(node, csrf, pairing, options.tiles, list(named))),
            Route("/api/pair", _pair(pairing, secure=not loopback), methods=["POST"]),
            *(route for view in named.values() for route in view),
            Route("/api/{rest:path}", _unknown, methods=["GET", "HEAD", "POST"]),
            Mount("/", StaticFiles(directory=str(files("wattshare.cli.web") / "static"), html=True)),
        ]
        gate = Gate(Starlette(routes=routes), port=port, scheme=scheme, csrf=csrf, pairing=pairing,
                    tiles=tile_origin(options.tiles))
        await nursery.start(serve, gate, config)
        log.info("app url=%s views=%s", url, ",".join(named))
        if pairing is not None and not pairing.made:
            _show_pairing(url, pairing.new(), lambda line: click.echo(line, err=True))
        task_status.started(url)


async def _unknown(request: Request) -> JSONResponse:
    return JSONResponse({"error": f"this node's app has no {request.url.path}: is it the right node (wallet, host "
                                  "or co-op)?"}, status_code=404)


def _session(node: Node, csrf: str, pairing: Pairing | None, tiles: str, views: list[str]) -> Any:
    async def session(request: Request) -> JSONResponse:
        paired = pairing is None or pairing.holds(request.cookies.get(COOKIE))
        return JSONResponse({"csrf": csrf, "paired": paired, "views": views if paired else [],
                             "peer_id": node.identity.peer_id if paired else None, "now": int(node.clock()),
                             "tiles": tiles}, headers={"cache-control": "no-store"})

    return session


def _pair(pairing: Pairing | None, secure: bool) -> Any:
    @endpoint
    async def pair(request: Request) -> Any:
        token = text(await body(request), "token", limit=100)
        if pairing is None:
            return {"paired": True}
        verdict = pairing.try_pair(token)
        if verdict is None:
            return JSONResponse({"error": "too many wrong pairing links; wait a minute"}, status_code=429)
        if not verdict:
            return JSONResponse({"error": "that pairing link is not this node's current one: ask for a new one "
                                          "(`wattshare app pair` on the node)"}, status_code=403)
        response = JSONResponse({"paired": True})
        response.set_cookie(COOKIE, token, max_age=PAIRED_FOR, httponly=True, samesite="strict", secure=secure)
        return response

    return pair
