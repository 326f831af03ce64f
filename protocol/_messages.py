"""Booking and session messages, and the double-signed booking they add up to.

Theory of operation (DESIGN.md, "Booking" and "Session and metering"):

- `BookingRequest` (signed by the driver) copies the ad's tariff, terms and time zone,
  so the booking freezes them: an auditor can price the session from the booking
  alone, and a later ad can never change a running session's price.
- A booking's id *is* the SHA-256 digest of the driver's signed request: one request
  can never become two bookings (so never two settlements), and the driver's nonce
  makes every request distinct.
- `Booking` = request signed by the driver + `BookingConfirmation` signed by the
  request's host, naming the request's digest: the object both parties signed.
- Access information (exact address, door or wallbox code) exists on the wire only
  sealed to the driver's key inside the confirmation.
- `MeterReceipt`s form a hash chain per booking: seq 0 has `prev = GENESIS` and
  energy 0 at the session start; each later receipt names the digest of the one
  before, and energy is cumulative Wh since the start.
- Every message names its booking, so none can be replayed into another booking, and
  the envelope's type binding keeps one kind from passing as another.
"""

from __future__ import annotations

import hashlib

from . import _geo
from ._ad import GEOHASH_PRECISION, BookingTerms, is_country
from ._envelope import Signed
from ._errors import Reason
from ._identity import Identity, seal_to
from ._pricing import PriceLine
from ._record import DIGEST_SIZE, KEY_SIZE, Message, Record, message, record, require, require_range, require_size
from ._tariff import Tariff

GENESIS = bytes(DIGEST_SIZE)  # `prev` of a booking's first receipt
NONCE_SIZE = 16
_TEXT_MAX = 500


def _require_digest(name: str, value: bytes) -> None:
    require_size(name, value, DIGEST_SIZE, DIGEST_SIZE)


def _require_text(name: str, value: str) -> None:
    require_size(name, value, 0, _TEXT_MAX)


@record
class AccessInfo(Record):
    """What a driver needs on arrival; only ever sent sealed (see `seal_access`)."""

    address: str
    instructions: str = ""
    code: str = ""

    def _validate(self) -> None:
        require_size("address", self.address, 1, _TEXT_MAX)
        _require_text("instructions", self.instructions)
        require_size("code", self.code, 0, 64)


def seal_access(driver: bytes, info: AccessInfo) -> bytes:
    """Encrypt access info to the driver's key (NaCl SealedBox)."""
    return seal_to(driver, info.encode())


def open_access(identity: Identity, sealed: bytes) -> AccessInfo:
    """Open access info sealed to `identity`; DecodeError if it is not for this key."""
    return AccessInfo.decode(identity.open_sealed(sealed))


def access_digest(sealed: bytes) -> bytes:
    """What a confirmation signs of the sealed access info: its SHA-256. The sealed box
    itself travels beside the confirmation, never inside it, so the booking that goes
    onto the public ledger carries no ciphertext of the address (a driver key stolen
    years later opens nothing there)."""
    return hashlib.sha256(sealed).digest()


@message("booking_request")
class BookingRequest(Message):
    AUTHOR = "driver"

    driver: bytes
    host: bytes
    charger_id: str
    ad_seq: int
    tariff: Tariff  # frozen from the ad
    terms: BookingTerms  # frozen from the ad
    tz: str  # frozen from the ad
    max_power_w: int  # frozen from the ad: no meter interval may deliver energy faster
    geohash: str  # frozen from the ad: the public cell (an OCPI CDR's coordinates)
    country: str  # frozen from the ad: ISO 3166-1 alpha-3
    start: int  # UTC seconds
    end: int
    spend_cap: int  # minor units of tariff.currency: the most the host may claim
    nonce: bytes
    created: int  # UTC seconds; hosts refuse stale requests

    def _validate(self) -> None:
        require_size("driver", self.driver, KEY_SIZE, KEY_SIZE)
        require_size("host", self.host, KEY_SIZE, KEY_SIZE)
        require(self.driver != self.host, "a host cannot book its own charger")
        require_size("charger_id", self.charger_id, 1, 64)
        require_range("ad_seq", self.ad_seq, 0)
        require_range("max_power_w", self.max_power_w, 1, 1_000_000)
        require(_geo.is_valid(self.geohash, GEOHASH_PRECISION), "geohash must be a precision-7 geohash")
        require(is_country(self.country), "country must be an ISO 3166-1 alpha-3 code (three capital letters)")
        require_range("start", self.start, 0)
        require(self.end > self.start, "a booking window must end after it starts")
        require(self.end - self.start <= 24 * 3600, "a booking window is at most 24 hours")
        require_range("spend_cap", self.spend_cap, 1, 10**12)
        require_size("nonce", self.nonce, NONCE_SIZE, NONCE_SIZE)
        require_range("created", self.created, 0)


@message("booking_confirmation")
class BookingConfirmation(Message):
    booking_id: bytes  # digest of the signed BookingRequest
    access_digest: bytes  # `access_digest` of the AccessInfo sealed to the driver (sent beside it)
    confirmed: int  # UTC seconds

    def _validate(self) -> None:
        _require_digest("booking_id", self.booking_id)
        _require_digest("access_digest", self.access_digest)
        require_range("confirmed", self.confirmed, 0)


@message("booking_rejection")
class BookingRejection(Message):
    booking_id: bytes
    reason: Reason
    detail: str = ""

    def _validate(self) -> None:
        _require_digest("booking_id", self.booking_id)
        _require_text("detail", self.detail)


@record
class BookingEvent(Message):
    """A message about one booking at one moment; the base of the short messages below."""

    booking_id: bytes
    t: int  # UTC seconds

    def _validate(self) -> None:
        _require_digest("booking_id", self.booking_id)
        require_range("t", self.t, 0)


@message("cancel")
class Cancel(BookingEvent):
    detail: str = ""

    def _validate(self) -> None:
        BookingEvent._validate(self)
        _require_text("detail", self.detail)


@message("no_show")
class NoShow(BookingEvent):
    """The host declares the driver did not come; the no-show fee applies."""


@message("start_request")
class StartRequest(BookingEvent):
    """The driver asks the host to start charging."""


@message("stop_request")
class StopRequest(BookingEvent):
    """Either party ends the charge."""


@message("meter_receipt")
class MeterReceipt(Message):
    booking_id: bytes
    seq: int
    t: int  # UTC seconds of the meter reading
    energy_wh: int  # cumulative since the session start
    prev: bytes  # digest of the previous signed receipt, GENESIS for seq 0

    def _validate(self) -> None:
        _require_digest("booking_id", self.booking_id)
        require_range("seq", self.seq, 0)
        require_range("t", self.t, 0)
        require_range("energy_wh", self.energy_wh, 0, 10**9)
        _require_digest("prev", self.prev)
        if self.seq == 0:
            require(self.prev == GENESIS and self.energy_wh == 0, "receipt 0 starts the chain at 0 Wh")


@message("settlement")
class Settlement(Message):
    booking_id: bytes
    last_receipt: bytes  # digest of the last signed receipt
    energy_wh: int
    amount: int  # minor units claimed from the driver
    currency: str
    breakdown: tuple[PriceLine, ...]
    t: int

    def _validate(self) -> None:
        _require_digest("booking_id", self.booking_id)
        _require_digest("last_receipt", self.last_receipt)
        require_range("energy_wh", self.energy_wh, 0)
        require_range("amount", self.amount, 0)
        require(self.amount == sum(line.amount for line in self.breakdown), "breakdown must add up to amount")
        require_range("t", self.t, 0)


@record
class SettlementEvent(BookingEvent):
    """A driver's answer to a settlement; the base of ack and dispute."""

    settlement: bytes  # digest of the signed Settlement

    def _validate(self) -> None:
        BookingEvent._validate(self)
        _require_digest("settlement", self.settlement)


@message("settlement_ack")
class SettlementAck(SettlementEvent):
    """The driver accepts the settlement: it is final."""


@message("dispute")
class Dispute(SettlementEvent):
    """The driver contests a settlement, or a fee a host claimed (then `settlement` is the
    digest of the host's FEE ledger entry); the co-op resolves it with an adjustment."""

    reason: Reason
    detail: str = ""

    def _validate(self) -> None:
        SettlementEvent._validate(self)
        _require_text("detail", self.detail)


@record
class Booking(Record):
    """The double-signed booking: the driver's request and the host's confirmation of it."""

    request: Signed[BookingRequest]
    confirmation: Signed[BookingConfirmation]

    def _validate(self) -> None:
        require(self.confirmation.message.booking_id == self.request.digest, "confirmation names another request")
        require(self.confirmation.signer == self.request.message.host, "confirmation must be signed by the host")

    @property
    def id(self) -> bytes:
        return self.request.digest
