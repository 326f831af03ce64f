"""The replicated append-only ledger (DESIGN.md, "Ledger"): feeds, Merkle proofs, rules, audit.

The core (`_entry`, `_rules`, `_state`, `_merkle`, `_replication`) does no I/O; the SQLite
store (`_store`) is the only disk I/O. Depends only on `wattshare.protocol`.
"""

from ._entry import (
    Adjustment,
    Checkpoint,
    CoopCharter,
    CreditLimit,
    Entry,
    EntryKind,
    FeeClaim,
    FeedHead,
    HeadRef,
    MoneyMove,
    SettlementClaim,
)
from ._errors import EntryRefused, LedgerError, Rule, StoreError
from ._merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from ._rules import Checked, check_entry, decode_entry
from ._state import LedgerState, Outcome
from ._store import IngestReport, LedgerStore

__all__ = [
    "Adjustment",
    "Checked",
    "Checkpoint",
    "CoopCharter",
    "CreditLimit",
    "Entry",
    "EntryKind",
    "EntryRefused",
    "FeeClaim",
    "FeedHead",
    "HeadRef",
    "IngestReport",
    "LedgerError",
    "LedgerState",
    "LedgerStore",
    "MerkleLog",
    "MoneyMove",
    "Outcome",
    "Rule",
    "SettlementClaim",
    "StoreError",
    "check_entry",
    "decode_entry",
    "leaf_hash",
    "verify_consistency",
    "verify_inclusion",
]
