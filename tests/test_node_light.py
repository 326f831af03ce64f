"""Light members between real libp2p nodes on 127.0.0.1: a co-op node that witnesses the
ledger, a light host and a light wallet that hold only the feeds they need, and the
host's credit check from the co-op's proof of the driver's account."""

import hashlib
from contextlib import AsyncExitStack

import pytest
from fixtures import at, make_ad, pinned_clock, run_bounded

from wattshare import protocol as p
from wattshare.ledger import (
    AccountProof,
    AccountQuery,
    EntryKind,
    Hold,
    Interest,
    LedgerStore,
    StoreError,
    audit,
    prove,
    sign_checkpoint,
)
from wattshare.node import BookingRejected, FrameStream, Node
from wattshare.node._accounts import ACCOUNT_PROTOCOL
from wattshare.node._framing import serve, varint
from wattshare.node._host import peer_of
from wattshare.testing import EPOCH, SampleWorld

ACCESS = p.AccessInfo(address="12 Acacia Avenue", instructions="wallbox by the garage", code="4711")
NIGHTS = [(at(f"2026-11-{day}T23:00"), at(f"2026-11-{day + 1}T06:00")) for day in (28, 29)] \
    + [(at("2026-11-30T23:00"), at("2026-12-01T06:00"))]


def identity(name):
    return p.Identity(hashlib.sha256(f"light-test/{name}".encode()).digest())


def coop_ledger(path, world, host, driver, clock):
    """The co-op's whole ledger: the two light members admitted with 50.00 EUR of credit,
    30.00 EUR paid in for the driver, its earlier night at another host (held for 30.00,
    settled), other members' nights the light nodes have no business with, and the
    witness's checkpoint of it all."""
    ledger = LedgerStore(path, world.coop.public_key, clock=clock)
    earlier = world.session(world.hosts[0], driver, EPOCH + 22 * 3600, spend_cap=3_000)
    others = [world.session(world.hosts[1], world.drivers[1], EPOCH + 22 * 3600 + day * 86_400) for day in range(3)]
    entries = [*world.founding(members=(host.public_key, driver.public_key)), world.money(driver, 3_000, EPOCH + 60),
               world.entry(driver, EntryKind.HOLD, Hold(request=earlier.booking.request), EPOCH + 120),
               world.settlement_entry(earlier)]
    entries += [world.settlement_entry(s) for s in others] + [world.ack_entry(s) for s in others]
    ledger.ingest([e.encode() for e in entries])
    sign_checkpoint(ledger, world.witness, world.charter, EPOCH + 9 * 86_400)
    return ledger, earlier.settlement.message.amount


def test_a_light_host_books_from_the_coops_account_proof_and_holds_only_the_feeds_it_needs(tmp_path):
    world, clock = SampleWorld(seed=61), pinned_clock()
    host_id, driver_id = identity("host"), identity("driver")
    ledger, paid = coop_ledger(tmp_path / "coop.db", world, host_id, driver_id, clock)

    async def scenario():
        async with AsyncExitStack() as stack:
            coop = Node(identity("coop-node"), ledger=ledger, clock=clock, gossip=False)
            host = Node(host_id, state=tmp_path / "host.db", access=ACCESS, clock=clock, gossip=False, full=False,
                        ledger=LedgerStore(tmp_path / "host-ledger.db", world.coop.public_key))
            car = Node(driver_id, state=tmp_path / "car.db", clock=clock, gossip=False, full=False,
                       ledger=LedgerStore(tmp_path / "car-ledger.db", world.coop.public_key))
            for node in (coop, host, car):
                await stack.enter_async_context(node.running())
            for node in (host, car):
                await node.join([coop.address])
                await node.sync.pull(node.host, peer_of(coop.identity.public_key))
                told = node.sync.remote_sizes[peer_of(coop.identity.public_key)]
                assert set(told) <= node.sync.interest.feeds() and len(told) < len(ledger.sizes())  # its feeds only
            assert car.ledger.state.size(driver_id.public_key) == 1  # its own feed: the earlier night's hold
            ad = (await host.publish(make_ad(host=host_id.public_key))).message

            # the checkpoint frees the earlier night's hold (claimed by a host this one
            # does not follow): 30.00 + 50.00 - that night; without it, 30.00 would be held
            first = await car.book(ad, *NIGHTS[0], spend_cap=2_000)
            second = await car.book(ad, *NIGHTS[1], spend_cap=5_000)
            try:
                await car.book(ad, *NIGHTS[2], spend_cap=2_000)
                raise AssertionError("booked past its credit")
            except BookingRejected as rejected:
                refused = rejected.reason
            return first, second, refused

    first, second, refused = run_bounded(scenario)
    assert first.confirmation.signer == second.confirmation.signer == host_id.public_key
    assert refused is p.Reason.INSUFFICIENT_CREDIT  # 80.00 - the night - 20.00 - 50.00 < 20.00
    hosts_ledger = LedgerStore(tmp_path / "host-ledger.db", world.coop.public_key)
    held = set(hosts_ledger.sizes())
    assert held == {world.coop.public_key, world.treasurer.public_key, driver_id.public_key}
    assert prove(hosts_ledger, driver_id.public_key).account.balance == 3_000 - paid  # the co-op's proof, kept
    cars_ledger = LedgerStore(tmp_path / "car-ledger.db", world.coop.public_key)
    # from an empty ledger: its own feed names the host of its earlier night, whose claim it needs
    assert set(cars_ledger.sizes()) == {world.coop.public_key, world.treasurer.public_key, driver_id.public_key,
                                        world.hosts[0].public_key}
    assert cars_ledger.balance(driver_id.public_key, "EUR") == 3_000 - paid  # exact, from what it keeps
    assert Interest(cars_ledger, driver_id.public_key)(host_id.public_key)  # tonight's host: its claims will come
    assert not Interest(cars_ledger, driver_id.public_key)(world.hosts[1].public_key)
    with pytest.raises(StoreError, match="light member's ledger"):  # partial by design: audit a whole one
        audit(tmp_path / "car-ledger.db")


def test_the_account_protocol_refuses_bad_queries_and_a_host_blames_a_peer_serving_a_forged_proof(tmp_path):
    world, clock = SampleWorld(seed=62), pinned_clock()
    host_id, driver_id = identity("host"), identity("driver")
    ledger, _ = coop_ledger(tmp_path / "coop.db", world, host_id, driver_id, clock)
    liar_id = identity("liar")

    async def forged(stream):
        """A peer answering every query with the co-op's proof, its balance raised."""
        async def respond(frames):
            await frames.receive(AccountQuery)
            proof = prove(ledger, driver_id.public_key)
            await frames.send(proof.replace(account=proof.account.replace(balance=10**6)))

        await serve(stream, respond, 5)

    async def scenario():
        async with AsyncExitStack() as stack:
            coop = Node(identity("coop-node"), ledger=ledger, clock=clock, gossip=False)
            liar = Node(liar_id, clock=clock, gossip=False)
            host = Node(host_id, state=tmp_path / "host.db", access=ACCESS, clock=clock, gossip=False, full=False,
                        ledger=LedgerStore(tmp_path / "host-ledger.db", world.coop.public_key))
            for node in (coop, liar, host):
                await stack.enter_async_context(node.running())
            liar.host.set_stream_handler(ACCOUNT_PROTOCOL, forged)
            await host.join([coop.address, liar.address])
            coop_peer, liar_peer = peer_of(coop.identity.public_key), peer_of(liar_id.public_key)
            refusals = []
            for frame in (AccountQuery(member=identity("stranger").public_key), b"\xff\xfe\xfd"):
                try:
                    stream = await host.host.new_stream(coop_peer, [ACCOUNT_PROTOCOL])
                    frames = FrameStream(stream)
                    if isinstance(frame, bytes):
                        await stream.write(varint(len(frame)) + frame)
                    else:
                        await frames.send(frame)
                    reply = await frames.receive(AccountProof)
                    refusals.append(reply.reason)
                finally:
                    await stream.close()
            forged_kept = await host.accounts.fetch(host.host, [liar_peer], driver_id.public_key)
            honest_kept = await host.accounts.fetch(host.host, [liar_peer, coop_peer], driver_id.public_key)
            return refusals, forged_kept, honest_kept, host.conduct.culprits()

    refusals, forged_kept, honest_kept, culprits = run_bounded(scenario)
    assert refusals == [p.Reason.NOT_A_MEMBER, p.Reason.MALFORMED]  # and the co-op node went on serving
    assert not forged_kept and honest_kept  # the forged one refused, the co-op's taken after it
    assert {(c["peer"], c["protocol"]) for c in culprits} == {(liar_id.peer_id, ACCOUNT_PROTOCOL)}
    hosts_ledger = LedgerStore(tmp_path / "host-ledger.db", world.coop.public_key)
    assert prove(hosts_ledger, driver_id.public_key).account.balance < 10**6
