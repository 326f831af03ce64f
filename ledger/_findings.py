"""What an audit finds: its report, each violation, and a worker's verdict on one entry.

Theory of operation (see `_audit`): a `Violation` is named by the same `Rule` that ingest
would refuse with; the `AuditReport` carries them with the recomputed balances, the
unwitnessed tails and the run's size and time, as a person reads them and as `--json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wattshare.protocol import peer_id

from ._errors import Rule
from ._rules import Checked


@dataclass(frozen=True, slots=True)
class Violation:
    rule: Rule
    detail: str
    author: bytes | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "detail": self.detail,
            "author": peer_id(self.author) if self.author else None,
            "seq": self.seq,
        }


@dataclass
class AuditReport:
    path: str
    coop: bytes
    entries: int = 0
    feeds: int = 0
    heads: int = 0
    checkpoints: int = 0
    violations: list[Violation] = field(default_factory=list)
    balances: dict[tuple[bytes, str], int] = field(default_factory=dict)
    credit_limits: dict[bytes, int] = field(default_factory=dict)
    unwitnessed: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # feed -> (witnessed, size) if size is more
    seconds: float = 0.0
    workers: int = 1
    since: int = 0  # entries an earlier audit checked, in an incremental audit (`entries` are the new ones)
    rowid: int = 0  # the last row of `entries` when it ran (the next incremental audit's type checks start after it)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "coop": peer_id(self.coop),
            "ok": self.ok,
            "entries": self.entries,
            "feeds": self.feeds,
            "heads": self.heads,
            "checkpoints": self.checkpoints,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            "since": self.since,
            "violations": [v.to_json() for v in self.violations],
            "unwitnessed": [{"feed": peer_id(a), "witnessed": w, "size": n}
                            for a, (w, n) in sorted(self.unwitnessed.items())],
            "balances": [
                {"member": peer_id(m), "currency": c, "balance": b, "credit_limit": self.credit_limits.get(m, 0)}
                for (m, c), b in sorted(self.balances.items())
            ],
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a worker learns of one stored envelope."""

    fact: Checked | tuple[Rule, str]  # the entry's facts, or (rule, detail) of its violation
    sha256: bytes  # to compare with the stored digest
    leaf: bytes  # its RFC 6962 leaf hash
