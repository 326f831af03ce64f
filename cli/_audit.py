"""`wattshare audit DB`: re-verify a ledger file and report, for people or for scripts."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from wattshare.ledger import AuditReport, LedgerError, LedgerStore, audit, export
from wattshare.node import Node
from wattshare.protocol import Identity, format_amount, peer_id

from ._daemon import run_trio, short_lived
from ._errors import fail
from ._home import member_key

EXIT_VIOLATIONS = 1


def _short(key: bytes | None) -> str:
    if key is None:
        return "-"
    text = peer_id(key)
    return f"{text[:8]}…{text[-6:]}"


def _pull(db: Path, source: str, coop: str | None) -> int:
    """Bring DB up to date with the peer at `source`, as a throwaway participant."""
    if coop is None and not db.exists():
        fail("--from needs --coop PEER_ID to create a new ledger file")
    try:
        store = LedgerStore(db, member_key(coop) if coop else _coop_of(db))
    except LedgerError as exc:
        fail(f"{exc}. Check the path and --coop.")
    before = sum(store.sizes().values())
    node = Node(Identity.generate(), ledger=store, gossip=False, sync_interval=3600)

    async def pull() -> None:
        async with short_lived(node, [source]):
            pass

    try:
        run_trio(pull)
        return sum(store.sizes().values()) - before
    finally:
        store.close()


def _coop_of(db: Path) -> bytes:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'coop'").fetchone()
        except sqlite3.DatabaseError:
            row = None
    if row is None:
        fail(f"{db} is not a wattshare ledger; give --coop to start a new one elsewhere")
    return row[0]


def _render(console: Console, report: AuditReport) -> None:
    summary = Table(title=f"Audit of {report.path}", show_header=False, title_justify="left")
    summary.add_row("co-op", peer_id(report.coop))
    summary.add_row("entries / feeds", f"{report.entries} / {report.feeds}" if not report.since else
                    f"{report.entries} new, {report.since} checked before (incremental) / {report.feeds}")
    summary.add_row("signed heads / checkpoints", f"{report.heads} / {report.checkpoints}")
    tail = sum(size - witnessed for witnessed, size in report.unwitnessed.values())
    summary.add_row("unwitnessed", f"{tail} entries at the end of {len(report.unwitnessed)} feed(s): no checkpoint "
                                   "covers them yet, so a cut there would go unnoticed" if tail else "none")
    summary.add_row("time", f"{report.seconds:.2f} s on {report.workers} process(es)")
    verdict = "[bold green]passed[/]" if report.ok else f"[bold red]{len(report.violations)} violation(s)[/]"
    summary.add_row("verdict", verdict)
    console.print(summary)
    if report.violations:
        table = Table(title="Violations", title_justify="left")
        for column in ("rule", "feed", "seq", "detail"):
            table.add_column(column)
        for v in report.violations:
            table.add_row(v.rule.value, _short(v.author), "-" if v.seq is None else str(v.seq), v.detail)
        console.print(table)
    balances = Table(title="Balances", title_justify="left")
    balances.add_column("member")
    balances.add_column("balance", justify="right")
    balances.add_column("credit limit", justify="right")
    for (member, currency), value in sorted(report.balances.items(), key=lambda item: item[1]):
        limit = report.credit_limits.get(member, 0)
        balances.add_row(_short(member), f"{format_amount(value, currency)} {currency}",
                         f"{format_amount(limit, currency)} {currency}")
    console.print(balances)
    if report.unwitnessed:
        tails = Table(title="Unwitnessed tails (entries no checkpoint covers yet)", title_justify="left")
        for column in ("feed", "witnessed", "entries"):
            tails.add_column(column, justify="left" if column == "feed" else "right")
        for author, (witnessed, size) in sorted(report.unwitnessed.items(), key=lambda item: item[1][0] - item[1][1]):
            tails.add_row(_short(author), str(witnessed), str(size))
        console.print(tails)


@click.command("audit")
@click.argument("db", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write balances.csv and one OCPI 2.2.1 CDR JSON per settlement into this folder.")
@click.option("--workers", type=click.IntRange(1, 64), default=os.cpu_count() or 1, show_default=True,
              help="Processes for signature and rule checks (1 = single core; same verdict either way).")
@click.option("--from", "source", help="First pull the ledger into DB from this peer (a full /p2p/ address).")
@click.option("--coop", help="The co-op's peer id, when --from creates DB.")
@click.option("--incremental", is_flag=True,
              help="Check only what is new since the last passing --incremental audit, from the state it kept in "
                   "DB.audit-mark (the first run checks everything and writes it).")
def audit_command(db: Path, as_json: bool, export_dir: Path | None, workers: int, source: str | None,
                  coop: str | None, incremental: bool) -> None:
    """Re-verify every entry of the ledger file DB from the raw bytes.

    Checks signatures, feed chains, Merkle roots against signed heads and checkpoints,
    settlement pricing, one settlement per booking, forks and conservation of money.
    With --incremental only the entries added since the last passing incremental audit
    are re-verified (against everything before them); without it, all of them.
    Exits 0 if the ledger is sound, 1 if any rule is broken, 2 if DB is not a ledger.

    \b
    Examples:
      wattshare audit ~/.local/share/wattshare/ledger.db
      wattshare audit ledger.db --json | jq .violations
      wattshare audit ledger.db --export audit-2026-11/
      wattshare audit ledger.db --incremental     # daily: only the new entries
      wattshare audit copy.db --from /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW... --coop 12D3KooW...
    """
    console = Console(stderr=as_json)
    if source is not None:
        pulled = _pull(db, source, coop)
        console.print(f"pulled {pulled} entries from {source}")
    try:
        with Progress(TextColumn("checking entries"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True, disable=as_json) as bar:
            task = bar.add_task("audit", total=None)
            report = audit(db, workers=workers, progress=lambda done, total: bar.update(task, completed=done, total=total),
                           mark=db.with_name(db.name + ".audit-mark") if incremental else None)
        if export_dir is not None and report.ok:
            summary = export(db, report, export_dir)
            console.print(f"exported {summary.balances_rows} balances and {summary.cdrs} CDRs to {export_dir}")
        elif export_dir is not None:
            console.print("[yellow]nothing exported: the ledger has violations (see below); resolve them first[/]")
    except LedgerError as exc:
        fail(f"{exc}. Check the path: DB must be a wattshare ledger file.")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _render(console, report)
    sys.exit(0 if report.ok else EXIT_VIOLATIONS)
