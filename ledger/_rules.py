"""Intrinsic entry rules: what one entry must satisfy on its own, and what it moves.

Theory of operation: `check_entry` takes an entry's envelope bytes and either raises
`EntryRefused(rule)` or returns a `Checked` with the decoded body and its effects: the
balance postings `(member, currency, delta)` it makes, the booking it claims (one
settlement or fee per booking), and the co-op whose charter it relies on. Nothing here
looks at other entries: feed order, forks, claims and trust are `_state`'s job. Ingest,
audit (in any number of worker processes) and tests all call this one function, so the
rules cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wattshare.protocol import (
    BookingMachine,
    DecodeError,
    Reason,
    RemoteProtocolError,
    SettlementEvent,
    SignatureError,
    Signed,
    check_session,
    vouched_by,
)

from ._charter import CoopCharter, CreditLimit
from ._entry import (
    BODY_TYPES,
    MAX_BODY,
    Adjustment,
    Checkpoint,
    Entry,
    EntryKind,
    FeeClaim,
    Hold,
    MoneyMove,
    Release,
    SettlementClaim,
)
from ._errors import EntryRefused, Rule

MAX_ENVELOPE = MAX_BODY + 1024
Posting = tuple[bytes, str, int]  # (member, currency, delta in minor units)


@dataclass(frozen=True, slots=True)
class Checked:
    """The facts of an entry that passed its intrinsic rules: small and picklable, so
    audit workers can hand them to the process that checks feed order and balances."""

    author: bytes
    seq: int
    prev: bytes
    t: int
    kind: EntryKind
    effects: tuple[Posting, ...] = ()
    claim: bytes | None = None  # booking id this entry settles or charges a fee for
    charter_author: bytes | None = None  # co-op key whose embedded charter authorises it
    charter_digest: bytes | None = None  # digest of that embedded charter entry
    charter: CoopCharter | None = None  # a COOP entry's own charter
    admitted: CreditLimit | None = None  # an ADMIT entry's member and limit
    booking: bytes | None = None  # settlement, fee, ack, dispute: the booking
    settlement: bytes | None = None  # settlement: its Settlement's digest; ack, dispute: the one named
    driver: bytes | None = None  # settlement: the booking's driver
    checkpoint: Checkpoint | None = None  # a CHECKPOINT entry's cut and accounts
    hold: tuple[int, int] | None = None  # hold: (the amount held, when it lapses)

    @property
    def party(self) -> bytes | None:
        """The member besides its author the entry is about: whose money it moves (a
        settlement's or fee's driver, a deposit's or withdrawal's member; an adjustment
        moves two: None), or whom it admits."""
        if self.kind in (EntryKind.DEPOSIT, EntryKind.WITHDRAWAL):
            return self.effects[0][0]
        if self.admitted is not None:
            return self.admitted.member
        return self.driver if self.kind in (EntryKind.SETTLEMENT, EntryKind.FEE) else None


def decode_entry(data: bytes) -> Signed[Entry]:
    """Verify and decode an entry envelope; EntryRefused(SIGNATURE or MALFORMED) if not one."""
    try:
        return Signed.decode(data, Entry, max_size=MAX_ENVELOPE)
    except SignatureError as exc:
        raise EntryRefused(Rule.SIGNATURE, exc.message) from None
    except RemoteProtocolError as exc:
        raise EntryRefused(Rule.MALFORMED, exc.message) from None


def check_entry(data: bytes | Signed[Entry]) -> Checked:
    """All intrinsic rules of one entry (see the module doc)."""
    signed = decode_entry(data) if isinstance(data, bytes) else data
    entry = signed.message
    try:
        return _RULES[entry.kind](signed, entry_body(signed))
    except SignatureError as exc:
        raise EntryRefused(Rule.SIGNATURE, exc.message, author=entry.author, seq=entry.seq) from None
    except DecodeError as exc:
        raise EntryRefused(Rule.MALFORMED, exc.message, author=entry.author, seq=entry.seq) from None
    except EntryRefused as exc:
        raise EntryRefused(exc.rule, exc.detail, author=entry.author, seq=entry.seq) from None


def entry_body(signed: Signed[Entry]) -> Any:
    """The body record of a verified entry, decoded as `check_entry` decodes it: the
    author's own envelopes inside are bound by the entry's signature (`vouched_by`)."""
    entry = signed.message
    with vouched_by(entry.author):
        return BODY_TYPES[entry.kind].decode(entry.body, max_size=MAX_BODY)


def evidence(envelope: bytes) -> EntryRefused | None:
    """The rule a validly signed entry breaks on its own, naming its author; None if the
    entry is fine or its signature does not verify."""
    try:
        check_entry(decode_entry(envelope))
    except EntryRefused as refused:
        return refused if refused.author is not None else None
    return None


def _facts(signed: Signed[Entry], **facts: object) -> Checked:
    entry = signed.message
    return Checked(author=entry.author, seq=entry.seq, prev=entry.prev, t=entry.t, kind=entry.kind, **facts)  # type: ignore[arg-type]


def _coop(signed: Signed[Entry], charter: CoopCharter) -> Checked:
    return _facts(signed, charter=charter)


def _admit(signed: Signed[Entry], admitted: CreditLimit) -> Checked:
    return _facts(signed, admitted=admitted)


def _answer(signed: Signed[Entry], answer: SettlementEvent) -> Checked:
    return _facts(signed, booking=answer.booking_id, settlement=answer.settlement)


def _transfer(payer: bytes, payee: bytes, currency: str, amount: int) -> tuple[Posting, ...]:
    return ((payer, currency, -amount), (payee, currency, amount)) if amount else ()


_SESSION_RULES = {Reason.OVER_CAP: Rule.OVER_CAP, Reason.MISPRICED: Rule.MISPRICED,
                  Reason.OUTSIDE_WINDOW: Rule.OUTSIDE_WINDOW, Reason.OVER_POWER: Rule.OVER_POWER}


def _settlement(signed: Signed[Entry], claim: SettlementClaim) -> Checked:
    request = claim.booking.request.message
    if signed.signer != request.host:
        raise EntryRefused(Rule.WRONG_AUTHOR, "only the booking's host can claim its settlement")
    try:
        check_session(claim.booking, claim.receipts, claim.settlement)
    except RemoteProtocolError as exc:
        raise EntryRefused(_SESSION_RULES.get(exc.reason, Rule.BROKEN_SESSION), exc.message) from None
    settlement = claim.settlement.message
    return _facts(
        signed,
        effects=_transfer(request.driver, request.host, settlement.currency, settlement.amount),
        claim=claim.booking.id,
        booking=claim.booking.id,
        settlement=claim.settlement.digest,
        driver=request.driver,
    )


def _fee(signed: Signed[Entry], claim: FeeClaim) -> Checked:
    request = claim.booking.request.message
    if signed.signer != request.host:
        raise EntryRefused(Rule.WRONG_AUTHOR, "only the booking's host can claim its fee")
    machine = BookingMachine(claim.booking.request)
    try:
        machine.receive(claim.booking.confirmation)
        machine.receive(claim.cancel or claim.no_show)  # type: ignore[arg-type]
    except RemoteProtocolError as exc:
        raise EntryRefused(Rule.BAD_FEE, exc.message) from None
    if claim.amount != machine.fee:
        raise EntryRefused(Rule.BAD_FEE, f"claims {claim.amount}, the booking terms give {machine.fee}")
    if signed.message.t < (claim.cancel or claim.no_show).message.t:  # type: ignore[union-attr]
        raise EntryRefused(Rule.BAD_FEE, "the fee claim predates the cancel or no-show it claims for")
    effects = _transfer(request.driver, request.host, request.tariff.currency, claim.amount)
    return _facts(signed, effects=effects, claim=claim.booking.id, booking=claim.booking.id, driver=request.driver)


def _hold(signed: Signed[Entry], hold: Hold) -> Checked:
    if hold.request.signer != signed.signer:
        raise EntryRefused(Rule.WRONG_AUTHOR, "a driver holds credit for its own requests only")
    return _facts(signed, booking=hold.request.digest, hold=(hold.amount, hold.lapses))


def _release(signed: Signed[Entry], release: Release) -> Checked:
    request = release.request
    if request.signer != signed.signer:
        raise EntryRefused(Rule.WRONG_AUTHOR, "a driver releases its own holds only")
    if release.rejection.signer != request.message.host or release.rejection.message.booking_id != request.digest:
        raise EntryRefused(Rule.WRONG_AUTHOR, "a hold is released by its host's rejection of that request")
    return _facts(signed, booking=request.digest)


def _charter(signed: Signed[Entry], holder: Signed[Entry], role: str, rule: Rule) -> CoopCharter:
    """The embedded co-op charter, which must name the entry's author in `role`."""
    if holder.message.kind is not EntryKind.COOP:
        raise EntryRefused(Rule.MALFORMED, "the embedded charter is not a co-op entry")
    charter = CoopCharter.decode(holder.message.body, max_size=MAX_BODY)
    if signed.signer not in getattr(charter, role):
        raise EntryRefused(rule, f"the co-op charter does not name this key among its {role}")
    return charter


def _money(signed: Signed[Entry], move: MoneyMove | Adjustment) -> Checked:
    charter = _charter(signed, move.charter, "treasurers", Rule.NOT_TREASURER)
    if move.currency != charter.currency:
        raise EntryRefused(Rule.MALFORMED, f"the co-op keeps {charter.currency}, not {move.currency}")
    if isinstance(move, Adjustment):
        effects = _transfer(move.payer, move.payee, move.currency, move.amount)
    else:
        sign = 1 if signed.message.kind is EntryKind.DEPOSIT else -1
        effects = ((move.member, move.currency, sign * move.amount),)
    return _facts(signed, effects=effects, charter_author=move.charter.message.author,
                  charter_digest=move.charter.digest)


def _checkpoint(signed: Signed[Entry], checkpoint: Checkpoint) -> Checked:
    _charter(signed, checkpoint.charter, "witnesses", Rule.NOT_WITNESS)
    return _facts(signed, charter_author=checkpoint.charter.message.author,
                  charter_digest=checkpoint.charter.digest, checkpoint=checkpoint)


_RULES: dict[EntryKind, Callable[[Signed[Entry], Any], Checked]] = {
    EntryKind.COOP: _coop,
    EntryKind.ADMIT: _admit,
    EntryKind.SETTLEMENT: _settlement,
    EntryKind.ACK: _answer,
    EntryKind.DISPUTE: _answer,
    EntryKind.FEE: _fee,
    EntryKind.DEPOSIT: _money,
    EntryKind.WITHDRAWAL: _money,
    EntryKind.ADJUSTMENT: _money,
    EntryKind.CHECKPOINT: _checkpoint,
    EntryKind.HOLD: _hold,
    EntryKind.RELEASE: _release,
}
