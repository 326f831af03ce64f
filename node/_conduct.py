"""Who misbehaved towards this node, and the door that slows them down (DESIGN.md, "What
bad input gets": the offending peer can be rate-limited).

Theory of operation: every protocol handler is registered through `Conduct.guard`, the
one door of every stream a peer opens to this node. At the door:

- A peer may open `STREAMS_BURST` streams at once, then `STREAMS_RATE` a second, over all
  protocols together (plenty for searches, bookings, sessions and anti-entropy); past
  that its streams are turned away with RATE_LIMITED before a byte of them is read.
- A conversation that ends in a refusal saying the peer broke the protocol (a bad or
  oversize frame, a forged, replayed or mispriced message, a frame begun and then
  stalled: `misconduct`; silence past a deadline is not, as a peer that died or is only
  overloaded looks the same) is counted against the peer per (protocol, reason), and
  spends one of its `MISCONDUCT_BURST` misconduct tokens, refilled at `MISCONDUCT_RATE`
  a second. A peer with none left is turned away like a flooder until one refills: a
  hostile peer gets about one bad conversation a second of this node's time. Business
  refusals (slot taken, too early, declined, charger offline) are an honest peer's lot
  and cost nothing.
- What this node gets wrong from a peer it called (`at_fault`: a broken receipt, a
  forged ad) is counted the same way by the caller; the peer saying no (`Refusal`) is not.

The counts are the node's record of the culprits (`culprits()`, shown by
`wattshare host status`); the ledger keeps its own, signed, record of lies about money
(`wattshare.ledger`, "refused" entries). Both tables are bounded.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import INetStream

from wattshare.protocol import Reason, RemoteProtocolError, peer_id

from ._framing import FrameError, FrameStream, Refusal, close_quietly
from ._limits import RateLimiter

STREAMS_BURST, STREAMS_RATE = 60, 20.0
MISCONDUCT_BURST, MISCONDUCT_RATE = 20, 1.0
MAX_RECORDS = 4096
MISCONDUCT = frozenset({
    Reason.MALFORMED, Reason.OVERSIZE, Reason.NON_CANONICAL, Reason.UNKNOWN_TYPE, Reason.UNEXPECTED_TYPE,
    Reason.BAD_SIGNATURE, Reason.WRONG_SIGNER, Reason.REPLAY, Reason.WRONG_BOOKING, Reason.BROKEN_CHAIN,
    Reason.OVER_CAP, Reason.MISPRICED, Reason.BAD_TIME, Reason.OUTSIDE_WINDOW, Reason.OVER_POWER, Reason.AFTER_STOP,
    Reason.RATE_LIMITED, Reason.TIMEOUT,
})
Handler = Callable[[INetStream], Awaitable[RemoteProtocolError | None]]
log = logging.getLogger(__name__)


def misconduct(fault: RemoteProtocolError) -> bool:
    """Does this refusal say the peer broke the protocol (see the module doc)?"""
    if fault.reason is Reason.TIMEOUT:
        return isinstance(fault, FrameError) and fault.stalled
    return fault.reason in MISCONDUCT


def at_fault(error: BaseException) -> bool:
    """Does an error met while talking to a peer say that peer broke the protocol?"""
    return isinstance(error, RemoteProtocolError) and not isinstance(error, Refusal) and misconduct(error)


def remote_key(stream: INetStream) -> bytes:
    """The Ed25519 key of the peer at the other end (authenticated by Noise)."""
    return stream.muxed_conn.peer_id.extract_public_key().to_bytes()


class Conduct:
    """The door of every protocol and the record of who misbehaved (see the module doc)."""

    def __init__(self, now: Callable[[], float] = trio.current_time) -> None:
        """`now`: the real-time clock its limits refill by (trio's, unless a test injects one)."""
        self.streams = RateLimiter(STREAMS_BURST, STREAMS_RATE, now)
        self.misconduct = RateLimiter(MISCONDUCT_BURST, MISCONDUCT_RATE, now)
        self.counts: Counter[tuple[bytes, str, Reason]] = Counter()

    def guard(self, protocol: str, handle: Handler) -> Callable[[INetStream], Awaitable[None]]:
        async def door(stream: INetStream) -> None:
            peer = remote_key(stream)
            if not self.misconduct.has_tokens(peer) or not self.streams.allow(peer):
                self.note(peer, protocol, Reason.RATE_LIMITED, charge=False)
                await FrameStream(stream).refuse(RemoteProtocolError(
                    Reason.RATE_LIMITED, "too many streams or refusals from you; slow down"))
                await close_quietly(stream)
                return
            fault = await handle(stream)
            if fault is not None and misconduct(fault):
                self.note(peer, protocol, fault.reason)

        return door

    def note(self, peer: bytes, protocol: str, reason: Reason, charge: bool = True) -> None:
        """Count one misconduct of `peer` on `protocol` (and spend a token, if `charge`)."""
        if charge:
            self.misconduct.allow(peer)
        key = (peer, protocol, reason)
        if key not in self.counts and len(self.counts) >= MAX_RECORDS:
            self.counts.pop(min(self.counts, key=self.counts.__getitem__))  # forget the mildest
        self.counts[key] += 1
        if self.counts[key] == 1:
            log.warning("peer %s misbehaved on %s: %s", peer_id(peer), protocol, reason)

    def culprits(self) -> list[dict]:
        """Who misbehaved how often, worst first."""
        return [{"peer": peer_id(peer), "protocol": protocol, "reason": str(reason), "count": count}
                for (peer, protocol, reason), count in self.counts.most_common()]
