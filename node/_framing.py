"""The one frame reader and writer for every wattshare stream.

Theory of operation (DESIGN.md, "Streams"; LIBP2P-NOTES: `read(n)` may return fewer
bytes): a frame is a multiformats unsigned varint length, then that many bytes of one
canonical CBOR frame (`protocol.encode_frame`). `FrameStream` wraps any byte stream
with `read(n)` / `write(data)` (a libp2p stream, or a test's memory stream) and keeps
its own buffer, so it never loses bytes of the next frame.

- The length is checked against the cap *before* any of the body is read, and a
  varint that is not minimal, or longer than the cap could need, is refused.
- Every frame read runs under one deadline: a peer that trickles bytes (slow loris)
  cannot hold a handler longer than `timeout`.
- Faults are typed by whose they are: `FrameError` carries the wire reason code for the
  peer (OVERSIZE, MALFORMED, TIMEOUT); `StreamEnded` is the peer closing cleanly
  between frames.
- `serve` is the one shape of every handler (a deadline, refusals with reason codes,
  the stream closed whatever happens, and no error of one conversation, even a bug
  of ours or one raised inside a handler's nursery, ever reaches the node) and `ask` the one shape of every client call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID

from wattshare.protocol import (
    MAX_MESSAGE_SIZE,
    ErrorReply,
    Reason,
    Record,
    RemoteProtocolError,
    decode_frame,
    encode_frame,
)

READ_TIMEOUT = 10.0
_CHUNK = 65536
R = TypeVar("R", bound=Record)
log = logging.getLogger(__name__)


class ByteStream(Protocol):
    async def read(self, n: int = -1) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


class FrameError(RemoteProtocolError):
    """A frame the peer got wrong (or was too slow with); `reason` goes back on the wire.
    `stalled`: the deadline passed inside a frame the peer had begun (a slow loris), not
    in a silence between frames (a peer gone, or only slow)."""

    def __init__(self, reason: Reason, message: str, stalled: bool = False) -> None:
        super().__init__(reason, message)
        self.stalled = stalled


class Refusal(RemoteProtocolError):
    """The peer said no with an error frame and its reason code: its right, where any
    other RemoteProtocolError from a peer is a fault of that peer's."""


class StreamEnded(Exception):
    """The peer closed its side cleanly where a frame could have started."""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class FrameStream:
    """Frames over a byte stream (see the module doc)."""

    def __init__(self, stream: ByteStream, *, max_size: int = MAX_MESSAGE_SIZE, timeout: float = READ_TIMEOUT) -> None:
        self.stream = stream
        self.max_size = max_size
        self.timeout = timeout
        self._buffer = bytearray()
        self._eof = False
        self._pending: int | None = None  # the length of a frame begun but not yet whole

    @property
    def mid_frame(self) -> bool:
        """Has the peer begun a frame it has not finished?"""
        return self._pending is not None or bool(self._buffer)

    async def _fill(self) -> bool:
        """Read more bytes into the buffer; False at end of stream."""
        if self._eof:
            return False
        try:
            chunk = await self.stream.read(_CHUNK)
        except EOFError:  # libp2p's StreamEOF: the peer closed its side (or reset it)
            chunk = b""
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def _length(self) -> int:
        most = len(varint(self.max_size))
        while True:
            for index, byte in enumerate(self._buffer[:most]):
                if not byte & 0x80:
                    raw = self._buffer[: index + 1]
                    del self._buffer[: index + 1]
                    length = sum((b & 0x7F) << (7 * i) for i, b in enumerate(raw))
                    if index and raw[-1] == 0:
                        raise FrameError(Reason.MALFORMED, "length varint is not minimal")
                    return length
            if len(self._buffer) >= most:
                raise FrameError(Reason.OVERSIZE, f"frame length above the {self.max_size} byte cap")
            if not await self._fill():
                if self._buffer:
                    raise FrameError(Reason.MALFORMED, "stream ended inside a frame length")
                raise StreamEnded("the peer closed the stream")

    async def read(self) -> bytes:
        """The next frame's bytes; FrameError, or StreamEnded between frames."""
        try:
            with trio.fail_after(self.timeout):
                self._pending = length = await self._length()
                if length > self.max_size:
                    raise FrameError(Reason.OVERSIZE, f"{length} byte frame above the {self.max_size} byte cap")
                while len(self._buffer) < length:
                    if not await self._fill():
                        raise FrameError(Reason.MALFORMED, "stream ended inside a frame")
        except trio.TooSlowError:
            raise FrameError(Reason.TIMEOUT, f"no whole frame within {self.timeout:g} s",
                             stalled=self.mid_frame) from None
        self._pending = None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    async def receive(self, *allowed: type[R]) -> R | ErrorReply:
        """The next frame, decoded as one of `allowed` (or an ErrorReply)."""
        data = await self.read()
        return decode_frame(data, *allowed, max_size=self.max_size)

    async def send(self, frame: Record) -> None:
        data = encode_frame(frame)
        if len(data) > self.max_size:
            raise ValueError(f"refusing to send a {len(data)} byte frame above the {self.max_size} byte cap")
        await self.stream.write(varint(len(data)) + data)

    async def refuse(self, error: RemoteProtocolError) -> None:
        """Tell the peer why (its reason code), best effort: the stream may be gone."""
        try:
            await self.send(ErrorReply(reason=error.reason, detail=error.message[:500]))
        except Exception:  # noqa: BLE001 - the peer may have closed or reset; nothing to tell
            return



async def close_quietly(stream: INetStream) -> None:
    """Close a stream the peer may already have closed or reset."""
    try:
        await stream.close()
    except StreamError:
        return


async def serve(stream: INetStream, respond: Callable[[FrameStream], Awaitable[None]], timeout: float,
                max_size: int = MAX_MESSAGE_SIZE) -> RemoteProtocolError | None:
    """Run one handler conversation: refusals go back with their reason code, a peer that
    vanishes or stalls just ends it, and the stream is closed in every case. Returns what
    the peer was refused for, if it was."""
    frames = FrameStream(stream, max_size=max_size)
    try:
        with trio.fail_after(timeout):
            await respond(frames)
    except Exception as error:
        fault = _fault(error, frames.mid_frame)
        if isinstance(fault, RemoteProtocolError):
            log.info("%s refused: %s", stream.get_protocol(), fault)
            await frames.refuse(fault)
            return fault
        if fault is None:
            log.exception("%s handler failed; the node carries on", stream.get_protocol())
    finally:
        await close_quietly(stream)
    return None


_GONE = (StreamEnded, StreamError)  # the peer left or reset the stream


def _fault(error: BaseException, mid_frame: bool) -> RemoteProtocolError | BaseException | None:
    """What a handler's error (or a nursery's group of them) says: the peer's protocol
    error (a conversation past its deadline is one: TIMEOUT, stalled if it ran out
    `mid_frame`), the peer gone (returned as is), or None for a fault of ours."""
    leaves = list(exception_leaves(error))
    refused = next((leaf for leaf in leaves if isinstance(leaf, RemoteProtocolError)), None)
    if refused is not None:
        return refused
    if any(isinstance(leaf, trio.TooSlowError) for leaf in leaves):
        return FrameError(Reason.TIMEOUT, "the conversation ran past its deadline", stalled=mid_frame)
    return error if all(isinstance(leaf, _GONE) for leaf in leaves) else None


def causes(error: BaseException) -> list[BaseException]:
    """What went wrong inside an exception group: its leaves, less the cancellations
    that followed from them."""
    return [leaf for leaf in exception_leaves(error) if not isinstance(leaf, trio.Cancelled)]


def exception_leaves(error: BaseException) -> Iterator[BaseException]:
    """The errors inside an exception group (nurseries wrap what their tasks raise)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from exception_leaves(inner)
    else:
        yield error


async def ask(host: IHost, peer: ID, protocol: TProtocol, frame: Record, expect: type[R], timeout: float,
              max_size: int = MAX_MESSAGE_SIZE) -> R:
    """Open a stream, send one frame, return the one reply; a refusal is raised as
    `Refusal` with the peer's reason code."""
    with trio.fail_after(timeout):
        stream = await host.new_stream(peer, [protocol])
        try:
            frames = FrameStream(stream, max_size=max_size, timeout=timeout)
            await frames.send(frame)
            reply = await frames.receive(expect)
        finally:
            await close_quietly(stream)
    if isinstance(reply, ErrorReply):
        raise Refusal(reply.reason, reply.detail)
    return reply
