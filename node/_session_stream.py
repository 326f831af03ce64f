"""The driver's session stream at the host: `/wattshare/session/1.0.0`.

Theory of operation (DESIGN.md, "Session and metering"):

- The driver's `SessionOffer` carries its signed StartRequest; the desk starts the
  session or finds the running or stored one (`attach`: only that, a driver watching
  never starts a session).
- The host then pushes every message the session's machine took, in order, from the
  first (a re-attaching driver gets the whole history), and each new one as it comes;
  the driver's StopOffer and SessionAnswer go through the desk's choke point as
  DriverStop and DriverAnswer events. A refused one ends the conversation through
  `serve`, which sends its reason and counts it against the driver; one the host could
  not store is refused with INTERNAL (send it again). The session goes on either way,
  and when the driver leaves.
- The stream ends once the driver has answered the settlement, `ANSWER_TIMEOUT` after
  the settlement if it does not, or at `STREAM_LIMIT`.
- While it is open the driver's link is protected from py-libp2p's connection trimming:
  it keeps one connection per peer and closes the older one when another comes, and a
  second command of the same wallet (same key, so same peer id) connects as the same
  peer. Without the protection, a `wallet balance` run beside a live `wallet start`
  cut the live view.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError

from wattshare.protocol import (
    DriverAnswer,
    DriverStop,
    ErrorReply,
    Message,
    MeterReceipt,
    Reason,
    RemoteProtocolError,
    SessionAnswer,
    SessionEvent,
    SessionOffer,
    SessionUpdate,
    Settlement,
    Signed,
    StopOffer,
    StopRequest,
)

from ._conduct import remote_key
from ._framing import FrameStream, StreamEnded, serve

if TYPE_CHECKING:
    from ._sessions import Live, SessionDesk

SESSION_PROTOCOL = TProtocol("/wattshare/session/1.0.0")
ANSWER_TIMEOUT = 10.0  # real seconds for the driver's ack or dispute on the stream
STREAM_LIMIT = 48 * 3600.0  # no session stream outlives this, whatever the clock
log = logging.getLogger(__name__)


def _update(signed: Signed[Message]) -> SessionUpdate | None:
    """The frame that shows a driver one message of the host's session history."""
    message = signed.message
    if isinstance(message, MeterReceipt):
        return SessionUpdate(receipt=signed)  # type: ignore[arg-type]
    if isinstance(message, StopRequest):
        return SessionUpdate(stop=signed)  # type: ignore[arg-type]
    if isinstance(message, Settlement):
        return SessionUpdate(settlement=signed)  # type: ignore[arg-type]
    return None  # the driver's own answer


async def serve_driver(desk: SessionDesk, stream: INetStream) -> RemoteProtocolError | None:
    peer, link = remote_key(stream), stream.muxed_conn.peer_id
    tag = f"wattshare-session-{id(stream)}"
    if desk.network is not None:  # see the module doc: a second process of this wallet must not cut it
        desk.network.protect(link, tag)
    try:
        return await _serve_driver(desk, stream, peer)
    finally:
        if desk.network is not None:
            desk.network.unprotect(link, tag)


async def _serve_driver(desk: SessionDesk, stream: INetStream, peer: bytes) -> RemoteProtocolError | None:

    async def answer(frames: FrameStream) -> None:
        offer = await frames.receive(SessionOffer)
        if isinstance(offer, ErrorReply):
            return
        live = await desk.start(offer.start, peer, attach=offer.attach)
        frames.timeout = STREAM_LIMIT  # a driver may stay quiet for the whole session
        await _attend(desk, frames, live)

    return await serve(stream, answer, STREAM_LIMIT)


async def _attend(desk: SessionDesk, frames: FrameStream, live: Live) -> None:
    """Push the session's history, then each new message, to the driver; take its stop
    and its answer."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_listen, desk, frames, live)
        sent = 0
        while True:
            changed = live.changed  # set by any step taken while we send
            while sent < len(live.machine.history):  # a step replaces the machine: read it afresh
                update = _update(live.machine.history[sent])
                sent += 1
                if update is not None:
                    try:
                        await frames.send(update)
                    except StreamError:
                        log.info("the driver left the session stream; the session goes on")
                        nursery.cancel_scope.cancel()
                        return
            if live.answered:
                break
            with trio.move_on_after(ANSWER_TIMEOUT if live.machine.settlement else STREAM_LIMIT) as wait:
                await changed.wait()
            if wait.cancelled_caught:
                break
        nursery.cancel_scope.cancel()
    desk.leave(live)


async def _listen(desk: SessionDesk, frames: FrameStream, live: Live) -> None:
    while True:
        try:
            frame = await frames.receive(StopOffer, SessionAnswer)
        except (StreamEnded, StreamError):
            return
        event: SessionEvent
        if isinstance(frame, StopOffer):
            event = DriverStop(stop=frame.stop)
        elif isinstance(frame, SessionAnswer):
            event = DriverAnswer(answer=frame.ack or frame.dispute)  # type: ignore[arg-type]
        else:
            return
        try:
            desk.apply(live, event)
        except sqlite3.OperationalError:
            raise RemoteProtocolError(Reason.INTERNAL, "the host could not store that; send it again") from None
