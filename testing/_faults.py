"""Fault hooks: failures a running node can be told to suffer, for the chaos run and the tests.

Theory of operation: the chaos run (`bench.chaos`) and the tests inject faults into
real, running nodes, so the node's own code meets each failure exactly where it would
meet a real one. A daemon started with `--fault-hooks` installs `FaultHooks` and serves
its commands on its admin socket: `link-drop` / `link-delay` (the link to `"peer"`, for
`"seconds"`, `"latency"` each way: `_links`) and `disk-full` (for `"seconds"`). A node
without them is never patched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from wattshare.node import AdminError, Node, peer_of
from wattshare.protocol import DecodeError, public_key_from_peer_id

from ._links import LinkFaults


class FullDisk:
    """For a while, neither of the node's SQLite files may grow (SQLite's own
    `max_page_count`), so every write that needs space fails with "database or disk is
    full", exactly as on a full disk."""

    UNLIMITED = 1_073_741_823

    def __init__(self, node: Node) -> None:
        self.dbs = [node.store.db, *([node.ledger.db] if node.ledger else [])]
        self.until = 0.0

    def fill(self, seconds: float) -> dict[str, float]:
        for db in self.dbs:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages}")
        self.until = trio.current_time() + seconds
        return {"full_for": seconds}

    async def run(self) -> None:
        while True:
            await trio.sleep(0.2)
            if self.until and trio.current_time() >= self.until:
                for db in self.dbs:
                    db.execute(f"PRAGMA max_page_count = {self.UNLIMITED}")
                self.until = 0.0


class FaultHooks:
    """A node's fault hooks and the admin commands that trigger them (see the module doc);
    build it before the node connects to anyone, and `run` it beside the node."""

    def __init__(self, node: Node) -> None:
        self.links = LinkFaults(node.host)
        self.disk = FullDisk(node)
        self.commands: dict[str, Callable[[dict[str, Any]], Any]] = {
            "link-drop": self._link, "link-delay": self._link,
            "disk-full": lambda request: self.disk.fill(float(request.get("seconds", 2.0))),
        }

    async def run(self) -> None:
        await self.disk.run()

    def _link(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            peer = peer_of(public_key_from_peer_id(str(request.get("peer", ""))))
        except DecodeError:
            raise AdminError("give the peer id of the link to fault (12D3KooW...)") from None
        seconds, latency = float(request.get("seconds", 2.0)), float(request.get("latency", 0.2))
        if not (0 < seconds <= 3600 and 0 <= latency <= 60):  # also refuses NaN
            raise AdminError("a link fault lasts 0-3600 seconds, with a latency of 0-60 seconds")
        if request["cmd"] == "link-drop":
            return self.links.drop(peer, seconds)
        return self.links.delay(peer, latency, seconds)
