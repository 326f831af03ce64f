"""Unsigned frames of the node's stream protocols, as one tagged union.

Theory of operation (DESIGN.md, "Streams"): each frame on a wattshare stream is one
canonical CBOR map with exactly one key, the frame's name, mapping to a record (signed
messages travel inside records as envelopes). `decode_frame(data, *allowed)` accepts
only the frame kinds the current protocol step expects, so a peer cannot steer a
handler into a code path by sending another kind; `ErrorReply` carries the reason code
of a refusal and is always allowed.
"""

from __future__ import annotations

from typing import TypeVar

from . import _codec
from ._ad import ChargerAd
from ._envelope import Signed
from ._errors import DecodeError, Reason
from ._messages import (
    BookingConfirmation,
    BookingRejection,
    BookingRequest,
    Cancel,
    Dispute,
    MeterReceipt,
    Settlement,
    SettlementAck,
    StartRequest,
    StopRequest,
    access_digest,
)
from ._record import Record, record, require, require_range, require_size

R = TypeVar("R", bound=Record)


@record
class ErrorReply(Record):
    """A refusal: the reason code, and a human-readable line for logs."""

    reason: Reason
    detail: str = ""

    def _validate(self) -> None:
        require_size("detail", self.detail, 0, 500)


@record
class AdRequest(Record):
    """Ask a host for its current signed ads (`/wattshare/ad/1.0.0`)."""


@record
class AdList(Record):
    ads: tuple[Signed[ChargerAd], ...]

    def _validate(self) -> None:
        require_size("ads", self.ads, 0, 64)


@record
class BookingOffer(Record):
    """The driver's signed request (`/wattshare/booking/1.0.0`)."""

    request: Signed[BookingRequest]


@record
class BookingAnswer(Record):
    """The host's signed answer: exactly one of a confirmation and a rejection; a
    confirmation comes with the access info sealed to the driver, which it signs by
    digest (`access_digest`)."""

    confirmation: Signed[BookingConfirmation] | None = None
    rejection: Signed[BookingRejection] | None = None
    access: bytes | None = None

    def _validate(self) -> None:
        require((self.confirmation is None) != (self.rejection is None), "an answer confirms or rejects")
        require((self.access is None) == (self.confirmation is None), "the sealed access comes with a confirmation")
        if self.access is not None and self.confirmation is not None:
            require_size("access", self.access, 48, 4096)
            require(access_digest(self.access) == self.confirmation.message.access_digest,
                    "the sealed access is not the one the confirmation signs")


@record
class CancelOffer(Record):
    cancel: Signed[Cancel]


@record
class CancelAnswer(Record):
    fee: int  # minor units the driver owes under the booking terms (0: free)

    def _validate(self) -> None:
        require_range("fee", self.fee, 0)


@record
class SessionOffer(Record):
    """The driver starts (or re-attaches to) its booking's session (`/wattshare/session/1.0.0`);
    `attach`: only re-attach, never start one (a driver watching)."""

    start: Signed[StartRequest]
    attach: bool = False


@record
class SessionUpdate(Record):
    """The host's next session message, in the order its session machine took them:
    exactly one of a receipt, a stop (either party's) and the settlement."""

    receipt: Signed[MeterReceipt] | None = None
    stop: Signed[StopRequest] | None = None
    settlement: Signed[Settlement] | None = None

    def _validate(self) -> None:
        require([self.receipt, self.stop, self.settlement].count(None) == 2, "an update carries one message")


@record
class StopOffer(Record):
    """The driver ends the charge."""

    stop: Signed[StopRequest]


@record
class SessionAnswer(Record):
    """The driver's answer to a settlement: exactly one of an ack and a dispute."""

    ack: Signed[SettlementAck] | None = None
    dispute: Signed[Dispute] | None = None

    def _validate(self) -> None:
        require((self.ack is None) != (self.dispute is None), "an answer acks or disputes")


@record
class DialBack(Record):
    """Ask a peer to dial this node back, on a new connection, at `port` of the address
    it sees the question come from (`/wattshare/dial-back/1.0.0`)."""

    port: int

    def _validate(self) -> None:
        require_range("port", self.port, 1, 65_535)


@record
class DialedBack(Record):
    """What the asked peer saw: the asker's IP, and whether `port` there took a connection."""

    observed: str
    reachable: bool

    def _validate(self) -> None:
        require_size("observed", self.observed, 2, 45)  # an IPv4 or IPv6 address in text


FRAMES: dict[str, type[Record]] = {}
_NAMES: dict[type[Record], str] = {}


def frame_kind(name: str, cls: type[Record]) -> None:
    """Register a record as a frame kind (each module registers its own frames)."""
    if name in FRAMES or cls in _NAMES:
        raise RuntimeError(f"frame kind {name!r} registered twice")
    FRAMES[name] = cls
    _NAMES[cls] = name


def encode_frame(frame: Record) -> bytes:
    return _codec.encode({_NAMES[type(frame)]: frame.to_wire()})


def decode_frame(data: bytes, *allowed: type[R], max_size: int = _codec.MAX_MESSAGE_SIZE) -> R | ErrorReply:
    """Decode a frame of one of the `allowed` kinds (or an ErrorReply); DecodeError otherwise."""
    value = _codec.decode(data, max_size=max_size, typed=True)
    if type(value) is not dict or len(value) != 1:
        raise DecodeError(Reason.MALFORMED, "a frame is a map with one key, its kind")
    [(name, body)] = value.items()
    cls = FRAMES.get(name) if type(name) is str else None
    if cls is None:
        raise DecodeError(Reason.UNKNOWN_TYPE, f"unknown frame kind {str(name)[:40]!r}")
    if cls is not ErrorReply and cls not in allowed:
        raise DecodeError(Reason.UNEXPECTED_TYPE, f"a {name} frame is not expected here")
    return cls.from_wire(body)


frame_kind("error", ErrorReply)
frame_kind("ad_request", AdRequest)
frame_kind("ads", AdList)
frame_kind("booking_offer", BookingOffer)
frame_kind("booking_answer", BookingAnswer)
frame_kind("cancel_offer", CancelOffer)
frame_kind("cancel_answer", CancelAnswer)
frame_kind("session_offer", SessionOffer)
frame_kind("session_update", SessionUpdate)
frame_kind("stop_offer", StopOffer)
frame_kind("session_answer", SessionAnswer)
frame_kind("dial_back", DialBack)
frame_kind("dialed_back", DialedBack)
