"""The co-op's office: the ledger entries only a co-op's keys may write.

Theory of operation (DESIGN.md, "Ledger": deposit / withdrawal / adjustment by a
treasurer, checkpoint by a witness, the charter by the co-op's own key): a co-op home
holds three keys, the co-op's (it signs the charter, and an ADMIT entry for each member
with its credit limit), a treasurer's and a witness's. `CoopOffice` writes each kind of
entry after the checks a treasurer would make (money goes to admitted members only, in
the charter's currency, above zero) into the one ledger it is given: the running co-op
node's, through the admin commands of `commands` ("money", "reverse", "admit",
"checkpoint"; the node stays the one writer of its file), or the home's file when no
node runs. Both paths are this one. Refusals are `CoopRefused`: one line that says
what to do. A mistaken money entry is never deleted (the ledger is append-only): it is
reversed by its opposite (`reverse`), whose reference names it, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wattshare.ledger import (
    Adjustment,
    CoopCharter,
    CreditLimit,
    Entry,
    EntryKind,
    LedgerStore,
    MoneyMove,
    sign_checkpoint,
)
from wattshare.protocol import DecodeError, Identity, InvalidValue, Signed, peer_id, public_key_from_peer_id

from ._clock import Clock
from ._errors import NodeError
from ._witness import charter_entry

MONEY_KINDS = (EntryKind.DEPOSIT, EntryKind.WITHDRAWAL, EntryKind.ADJUSTMENT)


class CoopRefused(NodeError):
    """A co-op entry the office will not write (a bad id, a stranger, a bad amount)."""


def parse_member(text: str) -> bytes:
    """A member's public key from its peer id (12D3Koo...) or 64 hex digits."""
    try:
        return bytes.fromhex(text) if len(text) == 64 else public_key_from_peer_id(text)
    except (ValueError, DecodeError):
        raise CoopRefused(f"{text!r} is not a member's peer id (12D3Koo...) or hex key; "
                          "`wattshare ... status` shows yours") from None


def _above_zero(amount: int) -> None:
    if amount <= 0:
        raise CoopRefused("the amount must be above zero")


@dataclass
class CoopOffice:
    """A co-op's three keys at work on one ledger (see the module doc)."""

    ledger: LedgerStore
    coop: Identity
    treasurer: Identity
    witness: Identity

    def found(self, name: str, currency: str, credit_limit: int, t: int) -> CoopCharter:
        """Write the co-op's first charter: its name, currency, default credit limit, and
        this office's treasurer and witness."""
        charter = CoopCharter(name=name, currency=currency, credit_limit=credit_limit,
                              treasurers=(self.treasurer.public_key,), witnesses=(self.witness.public_key,))
        self.ledger.append(self.coop, [(EntryKind.COOP, charter)], t=t)
        return charter

    def charter(self) -> Signed[Entry]:
        """The co-op's charter in force."""
        charter = charter_entry(self.ledger, self.coop.public_key)
        if charter is None:
            raise CoopRefused("this ledger holds no co-op charter; run `wattshare coop init` in this home")
        return charter

    def terms(self) -> CoopCharter:
        return CoopCharter.decode(self.charter().message.body)

    def move_money(self, kind: EntryKind, member: bytes, amount: int, reference: str, t: int) -> Signed[Entry]:
        """Record money a member paid in (DEPOSIT) or was paid out (WITHDRAWAL)."""
        _above_zero(amount)
        if not self.ledger.state.is_member(member):
            raise CoopRefused(f"{peer_id(member)} is not a member of this co-op: check the id, or admit it first "
                              "with `wattshare coop admit`")
        charter = self.charter()
        body = MoneyMove(charter=charter, member=member, amount=amount, currency=self.terms().currency,
                         reference=reference)
        return self._write(kind, body, t)

    def adjust(self, booking_id: bytes, payer: bytes, payee: bytes, amount: int, note: str, t: int) -> Signed[Entry]:
        """Resolve a dispute about a booking: move `amount` from `payer` to `payee`."""
        _above_zero(amount)
        body = Adjustment(charter=self.charter(), booking_id=booking_id, payer=payer, payee=payee, amount=amount,
                          currency=self.terms().currency, note=note)
        return self._write(EntryKind.ADJUSTMENT, body, t)

    def admit(self, member: bytes, limit: int | None, t: int) -> tuple[CreditLimit, Signed[Entry]]:
        """Admit `member`, or change its credit limit (the charter's default if `limit` is
        None): an ADMIT entry on the co-op's feed."""
        admitted = self.terms().admission(member, limit)
        [entry] = self.ledger.append(self.coop, [(EntryKind.ADMIT, admitted)], t=t)
        return admitted, entry

    def reverse(self, seq: int, t: int) -> Signed[Entry]:
        """Undo the treasurer's money entry at `seq` (a mistaken deposit, say) with its
        opposite: the ledger is append-only, so both stay on it, each naming the other."""
        treasurer = self.treasurer.public_key
        if not 0 <= seq < self.ledger.sizes().get(treasurer, 0):
            raise CoopRefused(f"the treasurer's feed has no entry {seq}; `wattshare audit` lists them")
        entry = Signed.decode(self.ledger.entries(treasurer, seq, seq + 1)[0], Entry).message
        mark = f"reverses treasurer entry {seq}"
        if mark in self._marks():
            raise CoopRefused(f"treasurer entry {seq} is reversed already")
        if entry.kind is EntryKind.ADJUSTMENT:
            adjusted = Adjustment.decode(entry.body)
            return self.adjust(adjusted.booking_id, adjusted.payee, adjusted.payer, adjusted.amount, mark, t)
        if entry.kind not in (EntryKind.DEPOSIT, EntryKind.WITHDRAWAL):
            raise CoopRefused(f"treasurer entry {seq} is a {entry.kind}, not money: nothing to reverse")
        moved = MoneyMove.decode(entry.body)
        opposite = EntryKind.WITHDRAWAL if entry.kind is EntryKind.DEPOSIT else EntryKind.DEPOSIT
        return self.move_money(opposite, moved.member, moved.amount, mark, t)

    def _marks(self) -> set[str]:
        """The references and notes of the treasurer's money entries."""
        treasurer = self.treasurer.public_key
        marks = set()
        for envelope in self.ledger.entries(treasurer, 0, self.ledger.sizes().get(treasurer, 0)):
            entry = Signed.decode(envelope, Entry).message
            if entry.kind is EntryKind.ADJUSTMENT:
                marks.add(Adjustment.decode(entry.body).note)
            elif entry.kind in (EntryKind.DEPOSIT, EntryKind.WITHDRAWAL):
                marks.add(MoneyMove.decode(entry.body).reference)
        return marks

    def checkpoint(self, t: int) -> int:
        """The witness signs the heads of every feed this ledger holds; the feeds covered."""
        return sign_checkpoint(self.ledger, self.witness, self.charter(), t)

    def _write(self, kind: EntryKind, body: MoneyMove | Adjustment, t: int) -> Signed[Entry]:
        [entry] = self.ledger.append(self.treasurer, [(kind, body)], t=t)
        return entry

    # --- requests, as the admin socket and the CLI carry them ------------------------------

    def commands(self, clock: Clock) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The office's admin commands, each a JSON request in and its summary out."""
        return {"money": lambda request: self._money(request, int(clock())),
                "reverse": lambda request: self._reverse(request, int(clock())),
                "admit": lambda request: self._admit(request, int(clock())),
                "checkpoint": lambda _: {"feeds": self.checkpoint(int(clock()))}}

    def _money(self, request: dict[str, Any], t: int) -> dict[str, Any]:
        try:
            kind, amount = EntryKind(request["kind"]), int(request["amount"])
        except (KeyError, ValueError, TypeError):
            raise CoopRefused("a money request has a kind (deposit, withdrawal, adjustment) and an amount") from None
        if kind not in MONEY_KINDS:
            raise CoopRefused(f"{kind} is not a money entry")
        try:
            if kind is EntryKind.ADJUSTMENT:
                entry = self.adjust(bytes.fromhex(str(request.get("booking", ""))), parse_member(request["payer"]),
                                    parse_member(request["payee"]), amount, str(request.get("note", "")), t)
            else:
                entry = self.move_money(kind, parse_member(request["member"]), amount,
                                        str(request.get("reference", "")), t)
        except (KeyError, InvalidValue, ValueError) as error:
            raise CoopRefused(f"not a valid {kind} request: {error}") from None
        return {"kind": kind.value, "amount": amount, "currency": self.terms().currency, "seq": entry.message.seq}

    def _reverse(self, request: dict[str, Any], t: int) -> dict[str, Any]:
        seq = request.get("seq")
        if type(seq) is not int:
            raise CoopRefused("name the treasurer's entry to reverse by its seq (a whole number)")
        entry = self.reverse(seq, t)
        return {"reversed": seq, "kind": entry.message.kind.value, "seq": entry.message.seq}

    def _admit(self, request: dict[str, Any], t: int) -> dict[str, Any]:
        member, limit = parse_member(str(request.get("member", ""))), request.get("limit")
        if limit is not None and (type(limit) is not int or limit < 0):
            raise CoopRefused("a credit limit is a whole, non-negative amount in minor units")
        admitted, entry = self.admit(member, limit, t)
        return {"member": request["member"], "credit_limit": admitted.limit, "currency": self.terms().currency,
                "seq": entry.message.seq}
