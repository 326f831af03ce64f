"""The admin socket: how the `wattshare` command talks to a running node daemon.

Theory of operation: a Unix stream socket, mode 0600 in a directory of mode 0700 (only
the node's own user can connect), carrying one JSON object per line each way. A
request is `{"cmd": ...}`; every answer has `"ok"` and either the data or `"error"`, a
line that says what to do. Lines are capped at `MAX_LINE` and every read has a
deadline, so a stuck client cannot hold the node. Commands: `status`, `live` (the
requests waiting for approval and the sessions: cheap enough to ask every second), `ads`,
`bookings`, `balance` (the node's own, from its ledger), `approve` / `decline` (with
`"booking"`: the id in hex), plus any the daemon adds (its own, and the fault hooks of
`wattshare.testing` when it runs with them).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from ._errors import NodeError

MAX_LINE = 64 * 1024
READ_TIMEOUT = 10.0
log = logging.getLogger(__name__)


class AdminError(NodeError):
    """A request the node cannot do; the message goes back to the client."""


def node_commands(node: Any) -> dict[str, Callable[[dict], Any]]:
    """The admin commands of `node` (a `Node`), each taking the request object."""

    def live(_: dict) -> dict:
        return {"pending": [b.hex() for b in node.desk.pending()] if node.desk else [],
                "sessions": node.sessions.summary() if node.sessions else []}

    def status(request: dict) -> dict:
        ledger = node.ledger
        return {
            "peer_id": node.identity.peer_id,
            "pid": os.getpid(),
            "addresses": [str(a) for a in node.host.get_addrs()],
            "reach": node.reachability.summary(),
            "links": node.reachability.links(),
            "peers": len(node.host.get_connected_peers()),
            "ads": len(node.board.ads),
            "ledger_entries": sum(ledger.sizes().values()) if ledger else None,
            "misbehaving_peers": node.conduct.culprits(),
            "wallboxes": sorted(node.sessions.central.links) if node.sessions else [],  # connected over OCPP
        } | live(request)

    def ads(_: dict) -> list:
        return [
            {"charger": a.message.charger_id, "seq": a.message.seq, "geohash": a.message.geohash,
             "connector": a.message.connector.label, "max_power_w": a.message.max_power_w,
             "expires": a.message.expires}
            for a in node.board.ads.values()
        ]

    def bookings(_: dict) -> list:
        return node.store.listing()

    def balance(_: dict) -> dict:
        if node.ledger is None:
            raise AdminError("this node keeps no ledger")
        return node.balance()

    def decision(approve: bool) -> Callable[[dict], dict]:
        def decide(request: dict) -> dict:
            if node.desk is None:
                raise AdminError("this node hosts no charger; nothing to approve")
            try:
                node.desk.decide_pending(bytes.fromhex(str(request.get("booking", ""))), approve)
            except (KeyError, ValueError):
                raise AdminError("no pending request with that id; list them with: wattshare host bookings") from None
            return {"booking": request["booking"], "approved": approve}

        return decide

    return {"status": status, "live": live, "ads": ads, "bookings": bookings, "balance": balance,
            "approve": decision(True), "decline": decision(False)}


def answer(table: dict[str, Callable[[dict], Any]], line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        if not isinstance(request, dict) or request.get("cmd") not in table:
            raise AdminError(f"unknown command; one of: {', '.join(sorted(table))}")
        return {"ok": True, "data": table[request["cmd"]](request)}
    except (NodeError, ValueError) as error:
        return {"ok": False, "error": str(error)}
    except Exception as error:
        log.exception("admin command failed")
        return {"ok": False, "error": f"the node could not do it ({error}); see its log"}


async def _read_line(stream: trio.abc.Stream) -> bytes:
    data = b""
    with trio.fail_after(READ_TIMEOUT):
        while b"\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_LINE:
                raise AdminError(f"request longer than {MAX_LINE} bytes")
    return data.split(b"\n", 1)[0]


async def serve_admin(node: Any, path: Path, extra: dict[str, Callable[[dict], Any]] | None = None, *,
                      task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the admin socket at `path` until cancelled; `extra` adds commands (the
    daemon's own, e.g. a co-op's deposits)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)  # noqa: ASYNC240 - once, at start
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    table = node_commands(node) | (extra or {})

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                reply = answer(table, await _read_line(stream))
            except (AdminError, trio.TooSlowError) as error:
                reply = {"ok": False, "error": str(error) or "request too slow"}
            try:
                await stream.send_all(json.dumps(reply).encode() + b"\n")
            except trio.BrokenResourceError:
                log.info("admin client left before its answer")

    task_status.started()
    try:
        await trio.serve_listeners(handle, [trio.SocketListener(sock)])
    finally:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - once, at exit


async def admin_call(path: Path, request: dict[str, Any], timeout: float = READ_TIMEOUT) -> dict[str, Any]:
    """Send one request to a node's admin socket; its answer."""
    with trio.fail_after(timeout):
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            await stream.send_all(json.dumps(request).encode() + b"\n")
            return json.loads(await _read_line(stream))
