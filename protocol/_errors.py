"""Errors of the protocol core, split by whose fault they are.

Theory of operation (STYLE.md point 2, after trio's Closed/BrokenResourceError):

- `LocalProtocolError`: *our* code asked for something the protocol forbids (an illegal
  state transition, a record built with a negative price). A bug or a user mistake on
  this side; nothing to tell the peer.
- `RemoteProtocolError`: the *peer* sent something we refuse (undecodable bytes, a
  forged signature, a receipt that breaks the chain). It always carries a `Reason`,
  the code the node puts on the wire before it closes the stream.

Every failure the decoders and state machines raise is one of these, never a bare
`ValueError`, `KeyError` or a cbor2 exception.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Reason codes sent to a peer in rejections and error frames (stable wire values)."""

    MALFORMED = "malformed"  # not decodable, or a field of the wrong type / out of range
    OVERSIZE = "oversize"  # message larger than the cap for its kind
    NON_CANONICAL = "non_canonical"  # decodes, but is not the deterministic encoding
    UNKNOWN_TYPE = "unknown_type"  # a message type this node does not know
    UNEXPECTED_TYPE = "unexpected_type"  # a known type where another was required
    BAD_SIGNATURE = "bad_signature"  # the signature does not verify
    WRONG_SIGNER = "wrong_signer"  # a valid signature, by the wrong party
    REPLAY = "replay"  # a message already seen (nonce, seq or id reused)
    ILLEGAL_STATE = "illegal_state"  # not allowed in the booking's / session's state
    WRONG_BOOKING = "wrong_booking"  # the message names another booking
    BROKEN_CHAIN = "broken_chain"  # receipt seq / prev hash / monotonicity violated
    AD_UNKNOWN = "ad_unknown"  # no such charger or ad seq at this host
    AD_EXPIRED = "ad_expired"  # the referenced ad is past its expiry or superseded
    OUTSIDE_AVAILABILITY = "outside_availability"  # window not inside the host's hours
    SLOT_TAKEN = "slot_taken"  # window overlaps a booking that already won
    INSUFFICIENT_CREDIT = "insufficient_credit"  # ledger standing does not cover the cap
    NOT_A_MEMBER = "not_a_member"  # the co-op has not admitted this key
    NO_HOLD = "no_hold"  # the driver's feed holds no credit hold for this request
    CAP_TOO_LOW = "cap_too_low"  # spend cap below what any session would cost (flat fee)
    DECLINED = "declined"  # the host said no (manual approval)
    APPROVAL_TIMEOUT = "approval_timeout"  # the host did not decide in time
    TOO_EARLY = "too_early"  # start before the window (and its grace)
    TOO_LATE = "too_late"  # start, cancel or dispute after its deadline
    BAD_TIME = "bad_time"  # a signed time further from the receiver's clock than the allowed skew
    OVER_CAP = "over_cap"  # a claim above the driver's spend cap
    OUTSIDE_WINDOW = "outside_window"  # a meter reading dated outside the booking window (and its margins)
    OVER_POWER = "over_power"  # more energy in a meter interval than the charger's power allows
    AFTER_STOP = "after_stop"  # readings after a stop beyond the one final reading close to it
    MISPRICED = "mispriced"  # amount differs from the tariff's price of the receipts
    CHARGER_OFFLINE = "charger_offline"  # the wallbox is not connected or would not start
    RATE_LIMITED = "rate_limited"  # too many requests from this peer
    TIMEOUT = "timeout"  # the peer was too slow
    INTERNAL = "internal"  # our fault; the peer may retry


class ProtocolError(Exception):
    """Root of every error raised by `wattshare.protocol`."""


class LocalProtocolError(ProtocolError):
    """This side broke a protocol rule (a bug or a user mistake here)."""


class InvalidValue(LocalProtocolError, ValueError):
    """A record was built with a value its schema forbids."""


class IllegalTransition(LocalProtocolError):
    """This side tried a step its booking or session state machine does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something this side refuses; `reason` goes on the wire."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class DecodeError(RemoteProtocolError):
    """Bytes that are not a well-formed, canonical message of a known type."""


class SignatureError(RemoteProtocolError):
    """A signature that does not verify, or that was made by the wrong key."""
