"""Ledger replication between real nodes: writes on each converge, a node that was offline
catches up, and nothing depends on gossip (anti-entropy alone converges)."""

import hashlib
from contextlib import AsyncExitStack

import trio
import trio.lowlevel
from fixtures import run_bounded
from libp2p.peer.id import ID

from wattshare import protocol as p
from wattshare.ledger import Have, LedgerStore, audit
from wattshare.node import Node, _sync
from wattshare.node._gossip import HEADS_TOPIC
from wattshare.testing import EPOCH, SampleWorld

NIGHT = EPOCH + 22 * 3600


def snapshot(store):
    return sorted(store.sizes().items()), sorted((k, v) for k, v in store.state.balances.items() if v)


async def converged(stores, seconds=15):
    with trio.fail_after(seconds):
        while any(snapshot(s) != snapshot(stores[0]) for s in stores):
            await trio.sleep(0.05)


def test_three_nodes_converge_and_an_offline_node_catches_up(tmp_path):
    world = SampleWorld(seed=51)
    ledgers = [LedgerStore(tmp_path / f"{name}.db", world.coop.public_key, clock=world.clock) for name in "abc"]
    nodes = [Node(p.Identity(hashlib.sha256(name.encode()).digest()), ledger=ledger, sync_interval=0.2, gossip=False)
             for name, ledger in zip("abc", ledgers)]  # no gossip at all: anti-entropy alone converges
    a, b, c = nodes

    async def scenario():
        async with AsyncExitStack() as stack:
            for node in (a, b):
                await stack.enter_async_context(node.running())
            await b.join([a.address])
            ledgers[0].ingest([*(e.encode() for e in world.founding()), world.money(world.drivers[0], 9_000, EPOCH).encode()])
            session = world.session(world.hosts[0], world.drivers[0], NIGHT)
            ledgers[1].ingest([world.settlement_entry(session).encode()])
            await converged(ledgers[:2])

            # c is offline while a and b write more; then it starts and catches up
            ledgers[0].ingest([world.money(world.drivers[1], 4_000, EPOCH + 5).encode()])
            ledgers[1].ingest([world.ack_entry(session).encode()])
            await stack.enter_async_context(c.running())
            await c.join([b.address])
            await converged(ledgers)
        return session

    run_bounded(scenario)
    assert ledgers[2].sizes() == ledgers[0].sizes() and len(ledgers[2].sizes()) == 4  # co-op, treasurer, host, driver
    assert all(audit(ledger.path).ok for ledger in ledgers)


def test_sync_refuses_garbage_and_a_tampered_batch_changes_nothing(tmp_path):
    from wattshare.ledger import Batch, Have, Replicator, Want
    from wattshare.node import SYNC_PROTOCOL, FrameStream
    from wattshare.node._framing import serve, varint

    world = SampleWorld(seed=52)
    good, victim = (LedgerStore(tmp_path / f"{n}.db", world.coop.public_key, clock=world.clock)
                    for n in ("good", "victim"))
    good.ingest([*(e.encode() for e in world.founding()), world.money(world.drivers[0], 500, EPOCH).encode()])
    server = Node(p.Identity(hashlib.sha256(b"sync-server").digest()), ledger=good, sync_interval=3600)
    liar = Node(p.Identity(hashlib.sha256(b"sync-liar").digest()))
    client = Node(p.Identity(hashlib.sha256(b"sync-client").digest()), ledger=victim, sync_interval=3600)

    async def lying_sync(stream):
        async def respond(frames):
            await frames.receive(Have)
            await frames.send(Replicator(good).have())
            await frames.receive(Want)
            envelopes = good.entries(world.coop.public_key, 0, 1)
            tampered = bytearray(envelopes[0])
            tampered[100] ^= 1  # inside the signed body
            await frames.send(Batch(entries=(bytes(tampered),)))
            await frames.send(Batch(entries=()))

        await serve(stream, respond, 10)

    liar.host.set_stream_handler(SYNC_PROTOCOL, lying_sync)
    outcome = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            for node in (server, liar, client):
                await stack.enter_async_context(node.running())
            await client.join([liar.address])  # the liar first: joining pulls at once
            await server.join([client.address])
            stream = await client.host.new_stream(server.host.get_id(), [SYNC_PROTOCOL])
            await stream.write(varint(4) + b"\xff\x00\xff\x00")
            outcome["garbage"] = await FrameStream(stream).receive(Have)
            await stream.close()
            try:
                await client.sync.pull(client.host, liar.host.get_id())
            except p.RemoteProtocolError as error:
                outcome["tampered"] = error.reason
            outcome["sizes after lie"] = victim.sizes()
            await client.sync.pull(client.host, server.host.get_id())

    run_bounded(scenario)
    assert outcome["garbage"].reason is p.Reason.MALFORMED
    assert outcome["tampered"] is p.Reason.BAD_SIGNATURE
    assert outcome["sizes after lie"] == {}
    assert victim.sizes() == good.sizes()


def test_a_gossiped_head_brings_a_pull_long_before_anti_entropy(tmp_path):
    from wattshare.ledger import EntryKind
    from wattshare.protocol import SettlementAck

    world = SampleWorld(seed=53)
    members = [p.Identity(hashlib.sha256(n.encode()).digest()) for n in ("gossip-a", "gossip-b")]
    # b replicates members' feeds only
    founding = [e.encode() for e in world.founding(members=tuple(m.public_key for m in members))]
    ledgers = [LedgerStore(tmp_path / f"{n}.db", world.coop.public_key, clock=world.clock) for n in ("a", "b")]
    for ledger in ledgers:
        ledger.ingest(founding)
    a, b = (Node(member, ledger=ledger, sync_interval=3600) for member, ledger in zip(members, ledgers))
    took = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            for node in (a, b):
                await stack.enter_async_context(node.running())
            await b.join([a.address])
            with trio.fail_after(10):  # until b is in a's gossip mesh for the heads topic
                while b.host.get_id() not in a.gossip.router.mesh.get(HEADS_TOPIC, ()):
                    await trio.sleep(0.05)
            ack = SettlementAck(booking_id=bytes(32), settlement=bytes(32), t=EPOCH)
            started = trio.current_time()
            ledgers[0].append(a.identity, [(EntryKind.ACK, ack)], t=EPOCH)
            with trio.fail_after(10):
                while ledgers[1].state.size(a.identity.public_key) < 1:
                    await trio.sleep(0.05)
            took["seconds"] = trio.current_time() - started

    run_bounded(scenario)
    assert took["seconds"] < 5  # anti-entropy would have waited an hour
    assert ledgers[1].sizes() == ledgers[0].sizes()


def test_a_node_leaving_while_its_peers_flood_gossip_exits_cleanly(tmp_path):
    """Its links go down before its gossip stops: else a head announcement arriving while
    py-libp2p's pubsub shuts down fails the exit ("Nursery is closed to new arrivals";
    without the hang-up, 6 of 8 such exits failed)."""
    world = SampleWorld(seed=53)

    def node(name):
        return Node(p.Identity(hashlib.sha256(name.encode()).digest()), sync_interval=3600,
                    ledger=LedgerStore(tmp_path / f"{name}.db", world.coop.public_key, clock=world.clock))

    async def flood(peer):
        while True:
            await peer.gossip.pubsub.publish(HEADS_TOPIC, b"not a head")
            await trio.lowlevel.checkpoint()

    async def scenario():
        async with AsyncExitStack() as stack:
            flooders = [node(f"flooder{i}") for i in range(3)]
            for peer in flooders:
                await stack.enter_async_context(peer.running())
            for attempt in range(3):
                async with trio.open_nursery() as nursery:
                    async with node(f"leaver{attempt}").running() as leaver:
                        await leaver.join([peer.address for peer in flooders])
                        with trio.fail_after(10):  # every flooder has a gossip stream to it
                            while len(leaver.gossip.pubsub.peers) < len(flooders):
                                await trio.sleep(0.05)
                        for peer in flooders:
                            nursery.start_soon(flood, peer)
                        await trio.sleep(0.3)
                    nursery.cancel_scope.cancel()

    run_bounded(scenario, 90)


def test_a_wallet_pushes_its_new_entries_to_its_coop_not_to_whichever_peer_came_first(tmp_path):
    """Issue 14, bug 4: the wallet pushed to `get_connected_peers()[0]` (the host, here,
    which it reached first) and raised IndexError with no peer at all."""
    from wattshare.ledger import EntryKind
    from wattshare.protocol import SettlementAck

    world = SampleWorld(seed=54)
    names = ("push-host", "push-coop", "push-wallet")
    members = [p.Identity(hashlib.sha256(n.encode()).digest()) for n in names]
    founding = [e.encode() for e in world.founding(members=tuple(m.public_key for m in members))]
    ledgers = [LedgerStore(tmp_path / f"{n}.db", world.coop.public_key, clock=world.clock) for n in names]
    for ledger in ledgers:
        ledger.ingest(founding)
    host, coop, wallet = (Node(m, ledger=ledger, sync_interval=3600, gossip=False)
                          for m, ledger in zip(members, ledgers))
    pushed = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(wallet.running())
            ack = SettlementAck(booking_id=bytes(32), settlement=bytes(32), t=EPOCH)
            wallet.ledger.append(wallet.identity, [(EntryKind.ACK, ack)], t=EPOCH)
            pushed["alone"] = await wallet.push_feed(coop.identity.public_key)  # nobody to push to: False, no error
            for node in (host, coop):
                await stack.enter_async_context(node.running())
                await wallet.join([node.address])  # the host first
            pushed["to the co-op"] = await wallet.push_feed(coop.identity.public_key)

    run_bounded(scenario)
    assert pushed == {"alone": False, "to the co-op": True}
    assert coop.ledger.sizes().get(wallet.identity.public_key) == 1  # the co-op holds it, whoever came first


def test_what_a_node_remembers_of_its_pullers_wishes_is_bounded(tmp_path):
    """A puller's `Have.only` and `since` shape this node's later Haves to it; a wish
    longer than MAX_WISH_REMEMBERED is remembered as none (told everything, as a full node
    is), and at most MAX_PEERS_REMEMBERED peers' wishes are kept, the longest unheard
    forgotten."""
    sync = _sync.LedgerSync(LedgerStore(tmp_path / "l.db", bytes(32)))
    peers = [ID(hashlib.sha256(str(i).encode()).digest()) for i in range(_sync.MAX_PEERS_REMEMBERED + 1)]
    keys = tuple(hashlib.sha256(b"%d" % i).digest() for i in range(_sync.MAX_WISH_REMEMBERED + 1))
    sync._heard(peers[0], Have(sizes=(), heads=(), only=keys, since=b"m" * 16))
    assert sync.their_wish[peers[0]] == (None, b"m" * 16)  # too long a wish: told everything changed since
    sync._heard(peers[1], Have(sizes=(), heads=(), only=keys[:3]))
    assert sync.their_wish[peers[1]] == (keys[:3], None)
    for peer in peers[2:]:
        sync._heard(peer, Have(sizes=(), heads=(), only=keys[:1]))
    assert len(sync.their_wish) == _sync.MAX_PEERS_REMEMBERED and peers[0] not in sync.their_wish


def test_full_nodes_pulling_each_other_say_what_changed_and_all_of_it_every_tenth_pull(tmp_path, monkeypatch):
    """Between full nodes a pull sends back the mark of the server's last answer, and the
    answer lists only the feeds that changed since (none, when nothing did); every
    WHOLE_EVERYth pull asks without one and hears of every feed, so what a pull skipped
    is told again; a push (a wallet leaving) asks for everything."""
    from wattshare.ledger import Replicator

    world = SampleWorld(seed=53, hosts=3, drivers=3)
    served, mirror = (LedgerStore(tmp_path / f"{n}.db", world.coop.public_key, clock=world.clock)
                      for n in ("served", "mirror"))
    served.ingest([*(e.encode() for e in world.founding()),
                   *(world.money(d, 9_000, EPOCH).encode() for d in world.drivers)])
    for night, (h, d) in enumerate(zip(world.hosts, world.drivers, strict=True)):
        session = world.session(h, d, NIGHT + night * 86_400)
        served.ingest([world.settlement_entry(session).encode(), world.ack_entry(session).encode()])
    server = Node(p.Identity(hashlib.sha256(b"marks-server").digest()), ledger=served, sync_interval=3600,
                  gossip=False)
    client = Node(p.Identity(hashlib.sha256(b"marks-client").digest()), ledger=mirror, sync_interval=3600,
                  gossip=False)
    told: list[tuple[int, int, bool]] = []  # per pull the client made: (feeds, bytes of the server's Have, marked)
    want = Replicator.want

    def spy(self, theirs):
        if self.store is mirror:
            told.append((len(theirs.sizes), len(theirs.encode()), asked[-1] is not None))
        return want(self, theirs)

    asked: list[bytes | None] = []
    since = client.sync._since

    def noting(peer, replicator, whole):
        asked.append(since(peer, replicator, whole))
        return asked[-1]

    monkeypatch.setattr(Replicator, "want", spy)
    monkeypatch.setattr(client.sync, "_since", noting)
    feeds = len(served.sizes())

    async def scenario():
        async with AsyncExitStack() as stack:
            for node in (server, client):
                await stack.enter_async_context(node.running())
            await client.join([server.address])
            await converged([served, mirror])
            peer = server.host.get_id()
            told.clear()
            await client.sync.pull(client.host, peer)  # nothing new
            session = world.session(world.hosts[1], world.drivers[2], NIGHT + 9 * 86_400)
            served.ingest([world.settlement_entry(session).encode()])
            await client.sync.pull(client.host, peer)  # one feed changed
            while len(told) < _sync.WHOLE_EVERY + 2:
                await client.sync.pull(client.host, peer)
            await client.sync.push(client.host, peer, world.hosts[1].public_key)

    run_bounded(scenario)
    assert snapshot(mirror) == snapshot(served)
    assert told[0][:1] == (0,) and told[0][2] and told[1][:1] == (1,) and told[1][2]
    whole = [i for i, (_, _, marked) in enumerate(told) if not marked]
    assert len(whole) == 2 and whole[1] == len(told) - 1  # one of the WHOLE_EVERY, and the push
    assert all(told[i][0] == feeds for i in whole) and all(n == 0 for n, _, m in told[2:] if m)
    assert told[whole[0]][1] > 4 * told[1][1]  # the whole Have (8 feeds) against one that tells a single feed
