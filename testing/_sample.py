"""Sample neighbourhoods: deterministic, fully signed ledgers for tests, benchmarks and demos.

Theory of operation: `SampleWorld(seed)` derives every key from the seed (so runs are
reproducible) and keeps each author's feed tip, so it can write valid entries for any
member in any order: the co-op's charter, treasurer deposits, whole charging sessions
(ad terms -> driver-signed request -> host confirmation -> hash-chained receipts every
15 minutes -> priced settlement) claimed as settlement entries, and the drivers' acks.
It builds entries only; storing them is the caller's business (`clock` is a time for
the stores that take them, after all of them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from wattshare.ledger import (
    Checked,
    Checkpoint,
    CoopCharter,
    CutWalker,
    Entry,
    EntryKind,
    LedgerStore,
    MerkleLog,
    MoneyMove,
    SettlementClaim,
    check_entry,
    members_at,
)
from wattshare.protocol import (
    GENESIS,
    AccessInfo,
    Booking,
    BookingConfirmation,
    BookingRequest,
    BookingTerms,
    DayOfWeek,
    Dimension,
    Identity,
    MeterReceipt,
    PriceComponent,
    Record,
    Settlement,
    SettlementAck,
    Signed,
    Tariff,
    TariffElement,
    TariffRestrictions,
    access_digest,
    seal_access,
    settlement_price,
    sign,
)

TZ = "Europe/Berlin"
GEOHASH = "u33dc0r"  # a cell by Kollwitzplatz, Berlin
EPOCH = 1_794_956_400  # 2026-11-18 00:00 in Europe/Berlin, a Wednesday: sample time starts here
RECEIPT_INTERVAL = 900


def off_peak_tariff() -> Tariff:
    """0.12 EUR/kWh from 23:00 to 07:00, 0.30 otherwise: a typical neighbour's offer."""
    return Tariff(
        currency="EUR",
        elements=(
            TariffElement(
                price_components=(PriceComponent(type=Dimension.ENERGY, price=12_000),),
                restrictions=TariffRestrictions(start_time="23:00", end_time="07:00", day_of_week=tuple(DayOfWeek)),
            ),
            TariffElement(price_components=(PriceComponent(type=Dimension.ENERGY, price=30_000),)),
        ),
    )


@dataclass(frozen=True)
class Session:
    booking: Booking
    receipts: tuple[Signed[MeterReceipt], ...]
    settlement: Signed[Settlement]


class SampleWorld:
    """Keys, feed tips and entry builders for one sample co-op (see the module doc)."""

    def __init__(self, seed: int = 0, hosts: int = 3, drivers: int = 3) -> None:
        self.seed = seed
        self.coop = self.identity("coop")
        self.treasurer = self.identity("treasurer")
        self.witness = self.identity("witness")
        self.hosts = [self.identity("host", i) for i in range(hosts)]
        self.drivers = [self.identity("driver", i) for i in range(drivers)]
        self.tariff = off_peak_tariff()
        self.terms = BookingTerms(cancel_fee=200, noshow_fee=300, dispute_window_minutes=7 * 24 * 60)
        self._tips: dict[bytes, tuple[int, bytes, int]] = {}  # author -> (next seq, tip, last time)
        self._nonce = 0
        self.charter: Signed[Entry] | None = None
        self.founded: list[Signed[Entry]] = []  # the co-op's first entries, once `founding` wrote them

    def clock(self) -> float:
        """A day after the latest entry this world has signed: the time for the ledgers
        that take its entries (none is ahead of it), whatever today's date."""
        return max((last for _, _, last in self._tips.values()), default=EPOCH) + 86_400

    def identity(self, role: str, index: int = 0) -> Identity:
        return Identity(hashlib.sha256(f"wattshare-sample/{self.seed}/{role}/{index}".encode()).digest())

    def entry(self, author: Identity, kind: EntryKind, body: Record, t: int) -> Signed[Entry]:
        """The next entry of `author`'s feed, dated `t` or its previous entry's time if later
        (entry times never go back within a feed)."""
        seq, prev, last = self._tips.get(author.public_key, (0, GENESIS, 0))
        t = max(t, last)
        signed = sign(author, Entry(author=author.public_key, seq=seq, prev=prev, t=t, kind=kind, body=body.encode()))
        self._tips[author.public_key] = (seq + 1, signed.digest, t)
        return signed

    def charter_body(self, credit_limit: int = 5_000) -> CoopCharter:
        """The charter: this world's treasurer and witness, `credit_limit` for members."""
        return CoopCharter(name="Acacia Avenue Energy Co-op", currency="EUR", credit_limit=credit_limit,
                           treasurers=(self.treasurer.public_key,), witnesses=(self.witness.public_key,))

    def charter_entry(self, credit_limit: int = 5_000, t: int = EPOCH) -> Signed[Entry]:
        self.charter = self.entry(self.coop, EntryKind.COOP, self.charter_body(credit_limit), t)
        return self.charter

    def founding(self, credit_limit: int = 5_000, t: int = EPOCH, members: tuple[bytes, ...] = ()) -> list[Signed[Entry]]:
        """The co-op's first entries: the charter, then an admission of every host and
        driver of the world, and of `members`, with `credit_limit`."""
        charter = self.charter_entry(credit_limit, t)
        body = self.charter_body(credit_limit)
        self.founded = [charter] + [self.entry(self.coop, EntryKind.ADMIT, body.admission(key), t)
                                    for key in [i.public_key for i in self.hosts + self.drivers] + list(members)]
        return self.founded

    def checkpoint(self, store: LedgerStore, t: int, sizes: dict[bytes, int] | None = None,
                   witness: Identity | None = None) -> Signed[Entry]:
        """The witness's checkpoint of `store` (see `checkpoint_body`)."""
        return self.entry(witness or self.witness, EntryKind.CHECKPOINT, self.checkpoint_body(store, t, sizes), t)

    def checkpoint_body(self, store: LedgerStore, t: int, sizes: dict[bytes, int] | None = None) -> Checkpoint:
        """A checkpoint of `store`'s feeds at `sizes` (default: all it holds), with the
        accounts at that cut recomputed from its entries as an auditor does."""
        assert self.charter is not None, "write the charter first"
        sizes = store.sizes() if sizes is None else sizes
        coop = self.coop.public_key
        names = members_at(store, sizes.get(coop, 0))
        facts: dict[bytes, list[Checked]] = {}
        charters = []
        for author, size in sizes.items():
            checked = [check_entry(envelope) for envelope in store.entries(author, 0, size)]
            facts[author] = [fact for fact in checked if CutWalker.counts(fact)]
            charters += [fact.charter for fact in checked if fact.charter is not None and author == coop]
        roots = {a: store.state.feeds[a].log.root_at(n) for a, n in sizes.items()}
        leaves = CutWalker(facts, "EUR").leaves(names, charters[-1] if charters else None, sizes, roots, t)
        return Checkpoint(charter=self.charter, coop_size=sizes.get(coop, 0),
                          sizes=Checkpoint.pack_sizes([sizes.get(k, 0) for k in names]),
                          accounts=MerkleLog(leaves).root())

    def money(self, member: Identity, amount: int, t: int, kind: EntryKind = EntryKind.DEPOSIT) -> Signed[Entry]:
        assert self.charter is not None, "write the charter first"
        move = MoneyMove(charter=self.charter, member=member.public_key, amount=amount, currency="EUR",
                         reference=f"transfer {t}")
        return self.entry(self.treasurer, kind, move, t)

    def session(self, host: Identity, driver: Identity, start: int, hours: int = 3, power_w: int = 7_200,
                spend_cap: int = 5_000) -> Session:
        """A finished session: booking for [start, start+hours), receipts every 15 minutes."""
        self._nonce += 1
        request = sign(driver, BookingRequest(
            driver=driver.public_key, host=host.public_key, charger_id="driveway", ad_seq=1,
            tariff=self.tariff, terms=self.terms, tz=TZ, max_power_w=max(power_w, 11_000), geohash=GEOHASH,
            country="DEU", start=start,
            end=start + hours * 3600,
            spend_cap=spend_cap, nonce=self._nonce.to_bytes(16, "big"), created=start - 3600,
        ))
        access = seal_access(driver.public_key, AccessInfo(address="12 Acacia Avenue", code="4711"))
        confirmation = sign(host, BookingConfirmation(booking_id=request.digest, access_digest=access_digest(access),
                                                      confirmed=start - 3500))
        booking = Booking(request=request, confirmation=confirmation)
        receipts: list[Signed[MeterReceipt]] = []
        for seq in range(hours * 3600 // RECEIPT_INTERVAL + 1):
            receipts.append(sign(host, MeterReceipt(
                booking_id=booking.id, seq=seq, t=start + seq * RECEIPT_INTERVAL,
                energy_wh=power_w * seq * RECEIPT_INTERVAL // 3600,
                prev=receipts[-1].digest if receipts else GENESIS,
            )))
        price = settlement_price(booking, receipts)
        last = receipts[-1]
        settlement = sign(host, Settlement(
            booking_id=booking.id, last_receipt=last.digest, energy_wh=last.message.energy_wh,
            amount=price.total, currency=price.currency, breakdown=price.lines, t=last.message.t + 60,
        ))
        return Session(booking, tuple(receipts), settlement)

    def settlement_entry(self, session: Session) -> Signed[Entry]:
        claim = SettlementClaim(booking=session.booking, receipts=session.receipts, settlement=session.settlement)
        host = next(h for h in self.hosts if h.public_key == session.booking.request.message.host)
        return self.entry(host, EntryKind.SETTLEMENT, claim, session.settlement.message.t)

    def resettled_entry(self, session: Session, **changes: object) -> Signed[Entry]:
        """A settlement entry whose Settlement the host re-signed with `changes`: a lying
        host, for tests (an amount above the receipts' price or the driver's cap)."""
        host = next(h for h in self.hosts if h.public_key == session.booking.request.message.host)
        lie = sign(host, session.settlement.message.replace(**changes))
        return self.settlement_entry(Session(session.booking, session.receipts, lie))

    def overclaim_entry(self, session: Session, extra: int) -> Signed[Entry]:
        """A settlement entry claiming `extra` cents more than the receipts price to."""
        first, *rest = session.settlement.message.breakdown
        return self.resettled_entry(session, amount=session.settlement.message.amount + extra,
                                    breakdown=(first.replace(amount=first.amount + extra), *rest))

    def ack_entry(self, session: Session, t: int | None = None) -> Signed[Entry]:
        driver = next(d for d in self.drivers if d.public_key == session.booking.request.message.driver)
        when = session.settlement.message.t + 600 if t is None else t
        ack = SettlementAck(booking_id=session.booking.id, settlement=session.settlement.digest, t=when)
        return self.entry(driver, EntryKind.ACK, ack, when)
