"""Fault hooks: failures a node can be told to suffer, for the chaos run and the tests.

Theory of operation: the chaos run (`bench.chaos`) and the tests inject faults into
real, running nodes through these hooks (reached over the admin socket of a host
daemon), so the node's own code meets the failure exactly where it would meet a real one.
"""

from __future__ import annotations

import trio

from ._node import Node


class FullDisk:
    """A fault the chaos run injects: for a while, neither of the node's SQLite files may
    grow (SQLite's own `max_page_count`), so every write that needs space fails with
    "database or disk is full", exactly as on a full disk."""

    UNLIMITED = 1_073_741_823

    def __init__(self, node: Node) -> None:
        self.dbs = [node.store.db, *([node.ledger.db] if node.ledger else [])]
        self.until = 0.0

    def fill(self, seconds: float) -> dict:
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
