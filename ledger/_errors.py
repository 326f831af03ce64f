"""Errors and rule names of the ledger.

Theory of operation: every ledger rule has a stable name (`Rule`). Ingest refuses an
entry by raising `EntryRefused(rule, ...)` and leaves the store unchanged; audit reports
the same names as violations, so "refused on ingest" and "found by audit" speak one
language. `Rule.reason` maps each rule to the protocol's wire reason code, for the node
to send to the peer that offered the entry.
"""

from __future__ import annotations

from enum import StrEnum

from wattshare.protocol import Reason


class Rule(StrEnum):
    SIGNATURE = "signature"  # an entry's (or an embedded foreign) signature is invalid
    MALFORMED = "malformed"  # the entry or its body does not decode to a valid record
    WRONG_AUTHOR = "wrong_author"  # the author may not write this entry (not the booking's host...)
    SEQ_GAP = "seq_gap"  # the entry does not follow the feed's last entry
    PREV_MISMATCH = "prev_mismatch"  # the entry does not name the digest of the previous one
    FORK = "fork"  # two different entries with one author and seq (kept as a fraud proof)
    BROKEN_SESSION = "broken_session"  # receipts or settlement do not belong together
    OVER_CAP = "over_cap"  # a settlement above the driver's spend cap
    MISPRICED = "mispriced"  # a settlement amount other than the tariff's price of its receipts
    OUTSIDE_WINDOW = "outside_window"  # receipts dated outside the booking window and its margins
    OVER_POWER = "over_power"  # receipts delivering energy faster than the booked charger's power
    DUPLICATE_CLAIM = "duplicate_claim"  # a second settlement or fee for one booking
    DOUBLE_ANSWER = "double_answer"  # a driver's second ack or dispute of one settlement (audit)
    BAD_FEE = "bad_fee"  # a fee the booking terms do not give
    NOT_TREASURER = "not_treasurer"  # money moved by a key the co-op's charter does not name
    NOT_WITNESS = "not_witness"  # a checkpoint by a key the charter does not name
    UNTRUSTED_COOP = "untrusted_coop"  # a charter not written by this ledger's co-op
    BAD_CHARTER = "bad_charter"  # a charter that forgets a retirement or drops a key without one
    BAD_TIME = "bad_time"  # an entry dated before its feed's previous one, or ahead of the clock
    HEAD_MISMATCH = "head_mismatch"  # a signed head or checkpoint disagrees with the entries
    DANGLING = "dangling"  # an ack or dispute names a settlement that is not in the ledger
    BALANCE_MISMATCH = "balance_mismatch"  # stored balances differ from the entries' sum
    CONSERVATION = "conservation"  # balances do not sum to deposits minus withdrawals
    OVER_CREDIT = "over_credit"  # a member owes more than its credit limit (audit)

    @property
    def reason(self) -> Reason:
        return _REASONS.get(self, Reason.ILLEGAL_STATE)


_REASONS = {
    Rule.SIGNATURE: Reason.BAD_SIGNATURE,
    Rule.MALFORMED: Reason.MALFORMED,
    Rule.WRONG_AUTHOR: Reason.WRONG_SIGNER,
    Rule.SEQ_GAP: Reason.BROKEN_CHAIN,
    Rule.PREV_MISMATCH: Reason.BROKEN_CHAIN,
    Rule.BROKEN_SESSION: Reason.BROKEN_CHAIN,
    Rule.OVER_CAP: Reason.OVER_CAP,
    Rule.MISPRICED: Reason.MISPRICED,
    Rule.OUTSIDE_WINDOW: Reason.OUTSIDE_WINDOW,
    Rule.OVER_POWER: Reason.OVER_POWER,
    Rule.DUPLICATE_CLAIM: Reason.REPLAY,
    Rule.DOUBLE_ANSWER: Reason.REPLAY,
    Rule.NOT_TREASURER: Reason.WRONG_SIGNER,
    Rule.NOT_WITNESS: Reason.WRONG_SIGNER,
    Rule.BAD_TIME: Reason.BAD_TIME,
    Rule.OVER_CREDIT: Reason.INSUFFICIENT_CREDIT,
}


class LedgerError(Exception):
    """Root of every error raised by `wattshare.ledger`."""


class EntryRefused(LedgerError):
    """An entry breaks a ledger rule; nothing it would have changed was stored."""

    def __init__(self, rule: Rule, detail: str, *, author: bytes | None = None, seq: int | None = None) -> None:
        where = f" (feed {author.hex()[:12]} seq {seq})" if author is not None else ""
        super().__init__(f"{rule}: {detail}{where}")
        self.rule = rule
        self.detail = detail
        self.author = author
        self.seq = seq


class StoreError(LedgerError):
    """The ledger's SQLite file cannot be used (wrong co-op, damaged, not a ledger)."""
