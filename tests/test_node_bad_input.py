"""Garbage, oversize frames and half-closed streams on every protocol of a node: each gets a
reason code or a clean close, and the node goes on serving the next client."""

import hashlib
from contextlib import AsyncExitStack

import pytest
import trio

from fixtures import make_ad, run_bounded
from wattshare import protocol as p
from wattshare.ledger import LedgerStore
from wattshare.ledger._sample import SampleWorld
from wattshare.node import (
    AD_PROTOCOL,
    BOOKING_PROTOCOL,
    SESSION_PROTOCOL,
    SYNC_PROTOCOL,
    FrameStream,
    Node,
    StreamEnded,
    fetch_ads,
)
from wattshare.node._framing import varint
from wattshare.node._sync import SYNC_FRAME

PROTOCOLS = [AD_PROTOCOL, BOOKING_PROTOCOL, SESSION_PROTOCOL, SYNC_PROTOCOL]
BAD = {
    "garbage": (varint(4) + b"\xff\x00\xfe\x01", p.Reason.MALFORMED),
    "oversize": (varint(SYNC_FRAME + 1), p.Reason.OVERSIZE),
    "wrong kind": (None, p.Reason.UNEXPECTED_TYPE),
    "half-closed": (b"", None),
}


def identity(name):
    return p.Identity(hashlib.sha256(name.encode()).digest())


async def probe(client, server, protocol, payload):
    """Send `payload` raw (None: a frame of a kind no protocol starts with); return the
    server's ErrorReply, or None if it closed without one."""
    if payload is None:
        frame = p.encode_frame(p.AdList(ads=()))
        payload = varint(len(frame)) + frame
    with trio.fail_after(15):
        stream = await client.host.new_stream(server.host.get_id(), [protocol])
        if payload:
            await stream.write(payload)
        else:
            await stream.close_write()
        try:
            reply = await FrameStream(stream, max_size=SYNC_FRAME).receive(p.AdRequest)
        except StreamEnded:
            reply = None
        await stream.close()
    return reply


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_protocol_survives(case, tmp_path):
    world = SampleWorld(seed=61)
    ledger = LedgerStore(tmp_path / "ledger.db", world.coop.public_key)
    ledger.ingest([world.charter_entry().encode()])
    server = Node(identity("bad-input-server"), access=p.AccessInfo(address="x"), ledger=ledger, sync_interval=3600,
                  ocpp=("127.0.0.1", 0))
    client = Node(identity("bad-input-client"), ledger=LedgerStore(tmp_path / "client.db", world.coop.public_key),
                  sync_interval=3600)
    payload, reason = BAD[case]
    replies = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            for node in (server, client):
                await stack.enter_async_context(node.running())
            await client.join([server.address])
            await server.publish(make_ad(host=server.identity.public_key))
            for protocol in PROTOCOLS:
                replies[protocol] = await probe(client, server, protocol, payload)
            with trio.fail_after(15):  # and it still serves honest clients on every protocol
                info = server.host.get_peerstore().peer_info(server.host.get_id())
                replies["ads"] = await fetch_ads(client.host, info)
                await client.sync.pull(client.host, server.host.get_id())
                replies["sync"] = client.ledger.sizes()

    run_bounded(scenario, 90)
    for protocol in PROTOCOLS:
        got = replies[protocol]
        assert (got.reason if got is not None else None) is reason, (protocol, got)
    assert len(replies["ads"]) == 1 and replies["sync"] == ledger.sizes()


def test_slow_loris_on_every_protocol_is_cut_off_while_others_are_served(tmp_path):
    world = SampleWorld(seed=62)
    ledger = LedgerStore(tmp_path / "ledger.db", world.coop.public_key)
    ledger.ingest([world.charter_entry().encode()])
    server = Node(identity("loris-server"), access=p.AccessInfo(address="x"), ledger=ledger, sync_interval=3600,
                  ocpp=("127.0.0.1", 0))
    loris = Node(identity("loris"))
    honest = Node(identity("honest"), ledger=LedgerStore(tmp_path / "honest.db", world.coop.public_key),
                  sync_interval=3600)
    replies, served, hanging = {}, {}, []
    all_hanging = trio.Event()

    async def trickle(protocol):
        """A frame announced at 100 bytes, sent one byte every half second."""
        stream = await loris.host.new_stream(server.host.get_id(), [protocol])
        async with trio.open_nursery() as nursery:
            async def drip():
                await stream.write(varint(100))
                hanging.append(protocol)
                if len(hanging) == len(PROTOCOLS):
                    all_hanging.set()
                for _ in range(60):
                    await trio.sleep(0.5)
                    try:
                        await stream.write(b"\xa1")
                    except Exception:  # noqa: BLE001 - the server has hung up on us: that is the point
                        return

            nursery.start_soon(drip)
            started = trio.current_time()
            try:
                replies[protocol] = (await FrameStream(stream, timeout=30).receive(p.AdRequest),
                                     trio.current_time() - started)
            except StreamEnded:
                replies[protocol] = (None, trio.current_time() - started)
            nursery.cancel_scope.cancel()

    async def scenario():
        async with AsyncExitStack() as stack:
            for node in (server, loris, honest):
                await stack.enter_async_context(node.running())
            for node in (loris, honest):
                await node.join([server.address])
            await server.publish(make_ad(host=server.identity.public_key))
            async with trio.open_nursery() as nursery:
                for protocol in PROTOCOLS:
                    nursery.start_soon(trickle, protocol)
                await all_hanging.wait()  # every protocol has a loris hanging on it now
                info = server.host.get_peerstore().peer_info(server.host.get_id())
                served["ads"] = await fetch_ads(honest.host, info)
                await honest.sync.pull(honest.host, server.host.get_id())
                served["sync"] = honest.ledger.sizes()
                served["while"] = len(replies)  # no loris answered yet

    run_bounded(scenario, 60)
    assert served["while"] == 0 and len(served["ads"]) == 1 and served["sync"] == ledger.sizes()
    for protocol, (reply, seconds) in replies.items():
        assert reply is not None and reply.reason is p.Reason.TIMEOUT, (protocol, reply)  # told why
        assert 9 <= seconds <= 15, (protocol, seconds)  # the per-read deadline (10 s), not the loris, ends it
