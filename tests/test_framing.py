"""Frames: varint lengths, caps before bodies, deadlines, clean and unclean ends, frame kinds."""

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from wattshare import protocol as p
from wattshare.node._framing import FrameError, FrameStream, StreamEnded, varint


class Pipe:
    """One end of an in-memory byte stream, with libp2p's read(n)/write(data) shape."""

    def __init__(self, stream, most=None):
        self.stream, self.most = stream, most

    async def read(self, n=-1):
        limit = n if n > 0 else None
        if self.most is not None:
            limit = min(limit or self.most, self.most)
        return await self.stream.receive_some(limit)

    async def write(self, data):
        await self.stream.send_all(data)


def run(test, **kw):
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0), **kw)


def pair(most=None, **frame_kw):
    a, b = trio.testing.memory_stream_pair()
    return FrameStream(Pipe(a), **frame_kw), FrameStream(Pipe(b, most), **frame_kw), a


@pytest.mark.parametrize("n, encoded", [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (16384, "808001")])
def test_varint_known_answers(n, encoded):
    assert varint(n).hex() == encoded  # multiformats unsigned-varint examples


def test_frames_round_trip_even_one_byte_at_a_time():
    async def main():
        sender, receiver, _ = pair(most=1)
        frames = [p.ErrorReply(reason=p.Reason.SLOT_TAKEN, detail="x" * n) for n in (0, 10, 200)]
        for frame in frames:
            await sender.send(frame)
        for frame in frames:
            assert await receiver.receive(p.AdRequest) == frame

    run(main)


def raw_test(data, expect, close=False, **frame_kw):
    """Feed raw bytes to a frame reader; return the error it raised."""
    caught = {}

    async def main():
        _, receiver, raw = pair(**frame_kw)
        await raw.send_all(data)
        if close:
            await raw.aclose()
        with pytest.raises(expect) as info:
            await receiver.read()
        caught["error"] = info.value

    run(main)
    return caught["error"]


def test_oversize_length_is_refused_before_the_body():
    error = raw_test(varint(10**9), FrameError, max_size=1024)
    assert error.reason is p.Reason.OVERSIZE


def test_varint_longer_than_any_allowed_length():
    error = raw_test(b"\xff" * 12, FrameError, max_size=1024)
    assert error.reason is p.Reason.OVERSIZE


def test_non_minimal_varint():
    error = raw_test(b"\x81\x00" + b"x", FrameError)
    assert error.reason is p.Reason.MALFORMED


def test_slow_loris_hits_the_deadline():
    async def main():
        _, receiver, raw = pair(timeout=2.0)

        async def trickle():
            await raw.send_all(varint(100))
            for _ in range(100):
                await raw.send_all(b"x")
                await trio.sleep(0.5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            with pytest.raises(FrameError) as caught:
                await receiver.read()
            assert caught.value.reason is p.Reason.TIMEOUT
            assert trio.current_time() == pytest.approx(2.0)
            nursery.cancel_scope.cancel()

    run(main)


def test_clean_end_between_frames_and_unclean_inside_one():
    raw_test(b"", StreamEnded, close=True)
    error = raw_test(varint(50) + b"only ten b", FrameError, close=True)
    assert error.reason is p.Reason.MALFORMED


def test_frame_kinds_are_checked():
    ads = p.encode_frame(p.AdList(ads=()))
    assert p.decode_frame(ads, p.AdList) == p.AdList(ads=())
    with pytest.raises(p.DecodeError) as caught:
        p.decode_frame(ads, p.AdRequest)
    assert caught.value.reason is p.Reason.UNEXPECTED_TYPE
    with pytest.raises(p.DecodeError) as caught:
        p.decode_frame(p.encode_cbor({"teleport": {}}), p.AdRequest)
    assert caught.value.reason is p.Reason.UNKNOWN_TYPE
    with pytest.raises(p.DecodeError) as caught:
        p.decode_frame(p.encode_cbor({"ads": {}, "error": {}}), p.AdList)
    assert caught.value.reason is p.Reason.MALFORMED
    error = p.encode_frame(p.ErrorReply(reason=p.Reason.RATE_LIMITED))
    assert p.decode_frame(error, p.AdList).reason is p.Reason.RATE_LIMITED


def test_sending_above_the_cap_is_a_local_error():
    async def main():
        sender, _, _ = pair(max_size=64)
        with pytest.raises(ValueError, match="cap"):
            await sender.send(p.ErrorReply(reason=p.Reason.INTERNAL, detail="y" * 200))

    run(main)


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300)
@given(st.sampled_from(sorted(p.FRAMES)), st.data())
def test_frames_with_the_right_keys_and_random_values_only_raise_typed_errors(kind, data):
    import dataclasses

    fields = [f.name for f in dataclasses.fields(p.FRAMES[kind])]
    body = {name: data.draw(plain_values) for name in fields}
    frame = p.encode_cbor({kind: body})
    try:
        decoded = p.decode_frame(frame, *p.FRAMES.values())
    except p.RemoteProtocolError:
        return
    assert p.encode_frame(decoded) == frame
