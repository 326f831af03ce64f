"""The co-op's view of the app (`wattshare coop node run`): audit, members and balances,
deposits and withdrawals, witness checkpoints.

The audit is `ledger.audit` of the node's ledger file (as `wattshare audit`), run in a
worker thread so the node keeps serving; its JSON is the CLI's `--json`, with the
violations also counted by member. By default it checks only what is new since the last
passing audit (`--incremental`, its mark beside the ledger); `?full=1` drops the mark
and checks everything again. Money goes through the node's `money` admin command
(the co-op's treasurer, as `wattshare coop deposit` and `withdraw`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from starlette.requests import Request
from starlette.routing import Route

from wattshare.ledger import AuditReport, audit, checkpoints
from wattshare.node import Node
from wattshare.protocol import peer_id

from .._charger import amount
from .._errors import fail
from ._api import body, endpoint, text

Commands = dict[str, Callable[[dict], Any]]


def routes(node: Node, table: Commands) -> list[Route]:
    """The co-op's API (see the module doc)."""
    ledger = node.ledger
    assert ledger is not None, "a co-op node keeps the ledger"
    running = trio.Lock()  # one audit at a time: each reads the whole file

    def charter() -> Any:
        if ledger.state.charter is None:
            fail("this ledger has no charter yet: run `wattshare coop init`")
        return ledger.state.charter[1]

    @endpoint
    async def members(_: Request) -> dict[str, Any]:
        terms = charter()
        sizes = ledger.sizes()
        return {"name": terms.name, "currency": terms.currency, "members": [
            {"member": peer_id(member), "credit_limit": limit,
             "balance": ledger.balance(member, terms.currency), "entries": sizes.get(member, 0)}
            for member, limit in ledger.state.limits.items()]}

    mark = ledger.path.with_name(ledger.path.name + ".audit-mark")

    def checked(full: bool) -> AuditReport:
        if full:
            mark.unlink(missing_ok=True)
        return audit(ledger.path, mark=mark)

    @endpoint
    async def audited(request: Request) -> dict[str, Any]:
        async with running:
            report = (await trio.to_thread.run_sync(checked, request.query_params.get("full") == "1")).to_json()
        by_member: dict[str, int] = {}
        for violation in report["violations"]:
            by_member[violation["author"] or "the file"] = by_member.get(violation["author"] or "the file", 0) + 1
        return report | {"by_member": by_member}

    @endpoint
    async def money(request: Request) -> dict[str, Any]:
        data = await body(request)
        kind = text(data, "kind", limit=20)
        if kind not in ("deposit", "withdrawal"):
            fail("kind must be deposit or withdrawal")
        value = amount(text(data, "amount", limit=20), charter().currency, "the amount")
        return table["money"]({"kind": kind, "member": text(data, "member", limit=100), "amount": value,
                               "reference": text(data, "reference", "", 200)})

    @endpoint
    async def witnessed(_: Request) -> list[dict[str, Any]]:
        return [{"t": c.t, "witness": peer_id(c.witness), "seq": c.seq, "feeds": c.feeds, "entries": c.entries}
                for c in checkpoints(ledger)]

    return [
        Route("/api/coop/members", members),
        Route("/api/coop/audit", audited),
        Route("/api/coop/money", money, methods=["POST"]),
        Route("/api/coop/checkpoints", witnessed),
    ]
