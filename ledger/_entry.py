"""Ledger entries, their kinds' bodies, and signed feed heads.

Theory of operation (DESIGN.md, "Ledger"):

- A member's feed is a chain of `Entry{author, seq, prev, t, kind, body}` signed by the
  author (protocol envelope type "ledger_entry"): seq counts from 0, `prev` is the
  digest of the previous signed entry (GENESIS first). `body` is the canonical CBOR of
  the kind's record below, kept as bytes so the signed bytes travel verbatim.
- Bodies embed what makes them checkable by anyone, from the entry alone:
  - SETTLEMENT (by the host): the double-signed booking, the metering receipts and the
    Settlement. The receipts, confirmation and settlement are the host's own envelopes,
    bound by the entry's signature (`vouched_by`); the driver's request, with its spend
    cap and frozen tariff, is verified as the driver's.
  - FEE (by the host): the booking and the driver's late Cancel or the host's NoShow;
    the amount must be what the booking terms give.
  - ACK / DISPUTE (by the driver): the protocol's SettlementAck / Dispute.
  - HOLD (by a driver): its signed BookingRequest, put on its own feed before the host
    sees the request: the most the booking can cost (its cap, or a fee of its terms where
    that is more: `exposure`) is held against its credit until the booking is claimed
    (settled or charged a fee), released, or lapses (`HOLD_LAPSE` after the window ends).
  - RELEASE (by the driver): the request and the host's signed rejection of it: a host
    that refused a booking can never claim it, so its hold ends.
  - COOP (by the co-op key): the charter (`_charter`) naming treasurer and witness
    keys, the currency and the credit limit members are admitted with. The latest
    charter in the co-op's feed is in force. A key dropped from a role is *retired* in
    it with the size its feed had then: its entries of that role from that seq on move
    nothing. Retirements are kept by every later charter, so whether a role entry counts
    follows the feeds' order, never an author-chosen time.
  - ADMIT (by the co-op key): a member admitted, or its credit limit changed. Members
    are the keys the co-op's feed admits and the keys its charter names (nobody else:
    their feeds are not replicated and they get no credit); the latest admission of a
    key gives its limit. One small entry per member keeps the charter, which every
    deposit and checkpoint embeds, the same size however many members the co-op has.
  - CHECKPOINT (by a witness): a cut of the feeds (every member's feed size) and the
    root of every member's account at it (`_accounts`).
  - DEPOSIT / WITHDRAWAL / ADJUSTMENT (by a treasurer) and CHECKPOINT (by a witness)
    embed the co-op's signed charter entry that names their author, so they verify
    without a lookup in another feed, in whatever order feeds replicate.
- A `FeedHead{author, size, root, t}` is the author's signature on its feed's Merkle
  root (RFC 6962) at `size` entries: the anchor for replication and audit.
"""

from __future__ import annotations

import struct
from enum import StrEnum
from typing import Any, Self

from wattshare.protocol import (
    MAX_RECEIPTS,
    Booking,
    BookingRejection,
    BookingRequest,
    Cancel,
    Dispute,
    Message,
    MeterReceipt,
    NoShow,
    Record,
    Settlement,
    SettlementAck,
    Signed,
    claim_problem,
    message,
    pack_claim,
    record,
    require,
    require_range,
    require_size,
    unpack_claim,
)

from ._charter import CoopCharter, CreditLimit

MAX_BODY = 48 * 1024
MAX_MEMBERS = 10_000  # a checkpoint's cut and accounts: 4 bytes each of its body
HOLD_LAPSE = 2 * 86_400  # a hold still unclaimed this long after its window ends stops counting
_KEY = 32
_SIZE = 4


class EntryKind(StrEnum):
    COOP = "coop"
    ADMIT = "admit"
    SETTLEMENT = "settlement"
    ACK = "ack"
    DISPUTE = "dispute"
    FEE = "fee"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    ADJUSTMENT = "adjustment"
    CHECKPOINT = "checkpoint"
    HOLD = "hold"
    RELEASE = "release"


@message("ledger_entry")
class Entry(Message):
    AUTHOR = "author"

    author: bytes
    seq: int
    prev: bytes  # digest of the previous signed entry; GENESIS for seq 0
    t: int  # UTC seconds
    kind: EntryKind
    body: bytes  # canonical CBOR of the kind's body record

    def _validate(self) -> None:
        require_size("author", self.author, _KEY, _KEY)
        require_range("seq", self.seq, 0)
        require_size("prev", self.prev, 32, 32)
        require_range("t", self.t, 0)
        require_size("body", self.body, 1, MAX_BODY)


@message("feed_head")
class FeedHead(Message):
    AUTHOR = "author"

    author: bytes
    size: int  # number of entries covered
    root: bytes  # RFC 6962 Merkle root of the first `size` entries
    t: int

    def _validate(self) -> None:
        require_size("author", self.author, _KEY, _KEY)
        require_range("size", self.size, 0)
        require_size("root", self.root, 32, 32)
        require_range("t", self.t, 0)


@record
class SettlementClaim(Record):
    """A host's claim of a finished session. On the wire, and so in the ledger, the
    host's own messages are packed (protocol `pack_claim`): only what the packed form can
    say can be claimed, so a claim is checked for that when it is built."""

    booking: Booking
    receipts: tuple[Signed[MeterReceipt], ...]
    settlement: Signed[Settlement]

    def _validate(self) -> None:
        require_size("receipts", self.receipts, 1, MAX_RECEIPTS)
        problem = claim_problem(self.booking, self.receipts, self.settlement)
        require(problem is None, f"cannot be claimed: {problem}")

    def to_wire(self) -> dict[str, Any]:
        return pack_claim(self.booking, self.receipts, self.settlement)

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        made = object.__new__(cls)  # a packable claim by construction: unpacking rebuilt it
        for name, field in zip(("booking", "receipts", "settlement"), unpack_claim(value), strict=True):
            object.__setattr__(made, name, field)
        return made


@record
class FeeClaim(Record):
    booking: Booking
    cancel: Signed[Cancel] | None = None
    no_show: Signed[NoShow] | None = None
    amount: int  # minor units of the booking tariff's currency

    def _validate(self) -> None:
        require((self.cancel is None) != (self.no_show is None), "a fee is for a cancel or a no-show")
        require_range("amount", self.amount, 1, 10**12)


@record
class MoneyMove(Record):
    """A deposit (money in for `member`) or a withdrawal (money out), by a treasurer."""

    charter: Signed[Entry]
    member: bytes
    amount: int
    currency: str
    reference: str = ""  # e.g. the bank transfer's reference

    def _validate(self) -> None:
        require_size("member", self.member, _KEY, _KEY)
        require_range("amount", self.amount, 1, 10**12)
        require_size("reference", self.reference, 0, 200)


@record
class Adjustment(Record):
    """A co-op treasurer moves money to resolve a dispute."""

    charter: Signed[Entry]
    booking_id: bytes
    payer: bytes
    payee: bytes
    amount: int
    currency: str
    note: str = ""

    def _validate(self) -> None:
        require_size("booking_id", self.booking_id, 32, 32)
        require_size("payer", self.payer, _KEY, _KEY)
        require_size("payee", self.payee, _KEY, _KEY)
        require(self.payer != self.payee, "an adjustment moves money between two members")
        require_range("amount", self.amount, 1, 10**12)
        require_size("note", self.note, 0, 500)


@record
class Checkpoint(Record):
    """A co-op witness's cut of the feeds and every member's account at it (`_accounts`):
    the first `coop_size` entries of the co-op's feed say who the members are (its charter
    and admissions); `sizes` gives each member's feed size in the cut, four bytes each
    (unsigned, big-endian) in the order of their keys; `accounts` is the Merkle root of
    their accounts in the same order."""

    charter: Signed[Entry]
    coop_size: int
    sizes: bytes
    accounts: bytes

    def _validate(self) -> None:
        require_range("coop_size", self.coop_size, 1)
        require_size("sizes", self.sizes, _SIZE, _SIZE * MAX_MEMBERS)
        require(len(self.sizes) % _SIZE == 0, "sizes holds four bytes per member")
        require_size("accounts", self.accounts, 32, 32)

    @property
    def count(self) -> int:
        """The members in the cut."""
        return len(self.sizes) // _SIZE

    def feed_sizes(self) -> list[int]:
        """The members' feed sizes in the cut, in the order of their keys."""
        return [n for (n,) in struct.iter_unpack(">I", self.sizes)]

    def cut(self, names: list[bytes]) -> dict[bytes, int]:
        """Each member's feed size in the cut, given the members' keys in order."""
        return dict(zip(names, self.feed_sizes(), strict=True))

    @staticmethod
    def pack_sizes(sizes: list[int]) -> bytes:
        return struct.pack(f">{len(sizes)}I", *sizes)


@record
class Hold(Record):
    """A driver holds its request's cap against its credit (see the module doc)."""

    request: Signed[BookingRequest]

    @property
    def lapses(self) -> int:
        """When an unclaimed hold stops counting."""
        return self.request.message.end + HOLD_LAPSE

    @property
    def amount(self) -> int:
        """What it holds: the most its booking can cost the driver (`exposure`)."""
        return exposure(self.request.message)


def exposure(request: BookingRequest) -> int:
    """The most a booking can cost its driver: its spend cap, or a cancel or no-show fee
    of its terms where that is more. A claim of it never takes more than this."""
    return max(request.spend_cap, request.terms.cancel_fee, request.terms.noshow_fee)


@record
class Release(Record):
    """A driver ends its hold on a request the host rejected."""

    request: Signed[BookingRequest]
    rejection: Signed[BookingRejection]


BODY_TYPES: dict[EntryKind, type[Record]] = {
    EntryKind.COOP: CoopCharter,
    EntryKind.ADMIT: CreditLimit,
    EntryKind.SETTLEMENT: SettlementClaim,
    EntryKind.ACK: SettlementAck,
    EntryKind.DISPUTE: Dispute,
    EntryKind.FEE: FeeClaim,
    EntryKind.DEPOSIT: MoneyMove,
    EntryKind.WITHDRAWAL: MoneyMove,
    EntryKind.ADJUSTMENT: Adjustment,
    EntryKind.CHECKPOINT: Checkpoint,
    EntryKind.HOLD: Hold,
    EntryKind.RELEASE: Release,
}
