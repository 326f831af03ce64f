"""Reachability on 127.0.0.1: the announce rule, the member-only relay, dialling a peer
known only by its circuit address. (Across real NATs: test_nat.py.)"""

import multiaddr
import pytest
import trio
from fixtures import run_bounded
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.relay.circuit_v2 import PROTOCOL_ID as HOP_PROTOCOL

from wattshare.ledger import LedgerStore
from wattshare.node import Node
from wattshare.node._addresses import Scope, expand, network_scope, scope_of_ip, tellable
from wattshare.node._ads import fetch_ads
from wattshare.node._dialback import dial_back
from wattshare.node._framing import Refusal
from wattshare.protocol import Reason
from wattshare.testing import SampleWorld

A = multiaddr.Multiaddr


@pytest.mark.parametrize(("ip", "scope"), [
    ("127.0.0.1", Scope.LOOPBACK), ("127.3.4.5", Scope.LOOPBACK), ("::1", Scope.LOOPBACK),
    ("192.168.1.10", Scope.PRIVATE), ("10.0.3.10", Scope.PRIVATE), ("172.20.0.1", Scope.PRIVATE),
    ("100.64.0.2", Scope.PRIVATE), ("169.254.1.1", Scope.PRIVATE), ("fd00::1", Scope.PRIVATE),
    ("198.51.100.10", Scope.PUBLIC), ("203.0.113.7", Scope.PUBLIC), ("2001:db8::1", Scope.PUBLIC),
    ("8.8.8.8", Scope.PUBLIC),
])
def test_every_address_has_a_scope(ip, scope):
    assert scope_of_ip(ip) is scope


def test_a_node_tells_only_addresses_that_work_in_its_network():
    home, lan, public, dns = (A("/ip4/127.0.0.1/tcp/1"), A("/ip4/192.168.1.10/tcp/1"), A("/ip4/198.51.100.20/tcp/1"),
                              A("/dns4/coop.example/tcp/1"))
    assert [a for a in (home, lan, public, dns) if tellable(a, Scope.PUBLIC)] == [public, dns]  # never the LAN's
    assert [a for a in (home, lan, public, dns) if tellable(a, Scope.PRIVATE)] == [lan, public, dns]
    assert [a for a in (home, lan, public, dns) if tellable(a, Scope.LOOPBACK)] == [home]  # one machine: loopback
    peer = SampleWorld().coop.peer_id
    assert network_scope([f"/ip4/198.51.100.10/tcp/4001/p2p/{peer}", f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"]) \
        is Scope.PUBLIC
    assert network_scope([]) is Scope.LOOPBACK
    assert not any(tellable(A("/ip4/0.0.0.0/tcp/1"), scope) for scope in Scope)  # a wildcard means nothing to a peer


def test_a_wildcard_stands_for_loopback_and_the_address_towards_each_peer():
    expanded = {str(a) for a in expand([A("/ip4/0.0.0.0/tcp/4001"), A("/ip4/127.0.0.2/tcp/9")], ["127.0.0.5"])}
    assert {"/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.2/tcp/9"} <= expanded
    assert all(a.endswith("/tcp/4001") or a == "/ip4/127.0.0.2/tcp/9" for a in expanded)


def coop_world(tmp_path):
    world = SampleWorld(seed=15)
    ledger = LedgerStore(tmp_path / "coop.db", world.coop.public_key)
    ledger.ingest([*(e.encode() for e in world.founding())])
    return world, ledger


def test_the_relay_reserves_slots_for_admitted_members_only_and_circuits_reach_them(tmp_path):
    world, ledger = coop_world(tmp_path)
    coop = Node(world.coop, ledger=ledger, relay=True, gossip=False)
    member, stranger, dialler = Node(world.hosts[0]), Node(world.identity("stranger")), Node(world.drivers[0])
    seen = {}

    async def reserve(node):
        relay = info_from_p2p_addr(A(coop.address))
        await node.host.connect(relay)
        stream = await node.host.new_stream(relay.peer_id, [HOP_PROTOCOL])
        return await node.reachability.transport._make_reservation(stream, relay.peer_id)

    async def scenario():
        async with coop.running(), member.running(), stranger.running(), dialler.running():
            seen["member"], seen["stranger"] = await reserve(member), await reserve(stranger)
            circuit = A(f"{coop.address}/p2p-circuit/p2p/{member.identity.peer_id}")
            dialler.host.get_peerstore().add_addrs(member.host.get_id(), [circuit], 600)  # known by it alone
            with trio.fail_after(10):
                await dialler.reachability.connect(member.host.get_id())
                seen["path"] = dialler.reachability.links()[str(member.host.get_id())]  # before DCUtR's first look
                with pytest.raises(Refusal) as refused:  # through a relay, the asked peer would see the relay
                    await dial_back(dialler.host, member.host.get_id(), 4001)
                seen["dial-back"] = refused.value.reason
                seen["ads"] = await fetch_ads(dialler.host, PeerInfo(member.host.get_id(), []))

    run_bounded(scenario)
    assert seen["member"] is True and seen["stranger"] is False
    assert seen["ads"] == [] and seen["path"] == "relayed" and seen["dial-back"] is Reason.ILLEGAL_STATE


def test_a_peer_dials_the_asker_back_on_a_new_connection_and_says_what_it_saw():
    world = SampleWorld(seed=16)
    asker, asked = Node(world.hosts[0]), Node(world.hosts[1])
    seen = {}

    async def scenario():
        async with asker.running(), asked.running():
            await asker.host.connect(info_from_p2p_addr(A(asked.address)))
            listening = int(asker.host.get_transport_addrs()[0].value_for_protocol("tcp"))
            with trio.socket.socket() as closed:  # a port nobody listens on
                await closed.bind(("127.0.0.1", 0))
                nobody = closed.getsockname()[1]
            seen["open"] = await dial_back(asker.host, asked.host.get_id(), listening)
            seen["closed"] = await dial_back(asker.host, asked.host.get_id(), nobody)

    run_bounded(scenario)
    assert (seen["open"].observed, seen["open"].reachable) == ("127.0.0.1", True)
    assert (seen["closed"].observed, seen["closed"].reachable) == ("127.0.0.1", False)
