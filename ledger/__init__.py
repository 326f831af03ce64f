"""The replicated append-only ledger (DESIGN.md, "Ledger"): feeds, Merkle proofs, rules, audit.

The core (`_entry`, `_rules`, `_state`, `_merkle`, `_replication`) does no I/O; the SQLite
store (`_store`, on the file `_schema` makes) writes the ledger, audit (`_audit`) and its
export (`_export`) and a member's history (`_history`) only read it.
Depends only on `wattshare.protocol`.
"""

from ._accounts import Account, AccountProof, AccountQuery, CutWalker, account_root, accounts_of, light_available
from ._audit import audit
from ._charter import CoopCharter, CreditLimit, Retirement, Role
from ._entry import (
    HOLD_LAPSE,
    Adjustment,
    Checkpoint,
    Entry,
    EntryKind,
    FeeClaim,
    FeedHead,
    Hold,
    MoneyMove,
    Release,
    SettlementClaim,
    exposure,
)
from ._errors import EntryRefused, LedgerError, Rule, StoreError
from ._export import ExportSummary, export
from ._findings import AuditReport, Violation
from ._history import Movement, Witnessed, checkpoints, movements
from ._light import Interest, follow_feed, keep, keep_light, light_credit, members_at, prove, sign_checkpoint
from ._merkle import MerkleLog, leaf_hash, verify_consistency, verify_inclusion
from ._replication import Batch, FeedRange, FeedSize, ForkProof, Have, Replicator, Want, pull, sync
from ._rules import Checked, check_entry, decode_entry
from ._schema import Envelopes, atomic
from ._state import LedgerState, Outcome
from ._store import IngestReport, LedgerStore

__all__ = [
    "Account",
    "AccountProof",
    "AccountQuery",
    "CutWalker",
    "account_root",
    "accounts_of",
    "Interest",
    "keep",
    "keep_light",
    "follow_feed",
    "light_available",
    "light_credit",
    "members_at",
    "prove",
    "sign_checkpoint",
    "Adjustment",
    "AuditReport",
    "Batch",
    "Checked",
    "Checkpoint",
    "CoopCharter",
    "CreditLimit",
    "Entry",
    "EntryKind",
    "EntryRefused",
    "Envelopes",
    "ExportSummary",
    "FeeClaim",
    "FeedRange",
    "FeedSize",
    "FeedHead",
    "ForkProof",
    "Have",
    "HOLD_LAPSE",
    "Hold",
    "IngestReport",
    "LedgerError",
    "LedgerState",
    "LedgerStore",
    "MerkleLog",
    "Movement",
    "MoneyMove",
    "Outcome",
    "Release",
    "Retirement",
    "Role",
    "Replicator",
    "Rule",
    "SettlementClaim",
    "StoreError",
    "atomic",
    "Violation",
    "Want",
    "Witnessed",
    "audit",
    "check_entry",
    "checkpoints",
    "decode_entry",
    "export",
    "exposure",
    "leaf_hash",
    "movements",
    "pull",
    "sync",
    "verify_consistency",
    "verify_inclusion",
]
