"""Which of a node's addresses it may tell which peers: address scopes and the announce rule.

Theory of operation (DESIGN.md, "Reachability"): every IP address has a scope, LOOPBACK
(127/8, ::1), PRIVATE (RFC 1918, carrier-grade NAT 100.64/10, link-local, IPv6 ULA) or
PUBLIC (everything else, the documentation ranges included: the simulated internet of
the tests lives on 198.51.100.0/24). A node's network has the scope of the peers it
joins through (a co-op on a VPS: PUBLIC; a street on one machine: LOOPBACK), and the
node tells peers only addresses that work from there: on a LOOPBACK network its loopback
ones, on a PRIVATE one (a LAN) its private and public ones, on the PUBLIC internet only
public ones, so a home host never hands out its 192.168.x.y or 127.0.0.1. A node with no
address in its network's scope is unreachable there and is reached through relays.
A wildcard listen address stands for the node's local addresses: loopback, and the one
the kernel would use to reach each peer joined through and the default route.
"""

from __future__ import annotations

import ipaddress
import socket
from enum import IntEnum

import multiaddr

_PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"))
_WILDCARD = "0.0.0.0"  # IPv4 only for now: the home networks this serves are IPv4 NATs
_DEFAULT_ROUTE_PROBE = "198.51.100.1"  # any address off-link: only the routing table is asked, nothing is sent


class Scope(IntEnum):
    LOOPBACK = 0
    PRIVATE = 1
    PUBLIC = 2


def scope_of_ip(ip: str) -> Scope:
    address = ipaddress.ip_address(ip)
    if address.is_loopback:
        return Scope.LOOPBACK
    if any(address in network for network in _PRIVATE):
        return Scope.PRIVATE
    return Scope.PUBLIC


def ip_of(address: multiaddr.Multiaddr) -> str | None:
    """The IP of a multiaddr (the relay's, for a circuit address), or None (a DNS name)."""
    for protocol in ("ip4", "ip6"):
        try:
            return str(address.value_for_protocol(protocol))
        except Exception:  # noqa: BLE001 - py-multiaddr raises several kinds for "absent"
            continue
    return None


def scope_of(address: multiaddr.Multiaddr) -> Scope:
    """An address's scope; a DNS name counts as PUBLIC."""
    ip = ip_of(address)
    return Scope.PUBLIC if ip is None else scope_of_ip(ip)


def is_circuit(address: multiaddr.Multiaddr) -> bool:
    return "/p2p-circuit" in str(address)


def network_scope(peers: list[str]) -> Scope:
    """The scope of the network reached through `peers` (full addresses): the widest
    of theirs; LOOPBACK for none (a node on its own)."""
    return max((scope_of(multiaddr.Multiaddr(peer)) for peer in peers), default=Scope.LOOPBACK)


def tellable(address: multiaddr.Multiaddr, network: Scope) -> bool:
    """May a node on a `network` of this scope tell its peers `address`? (Never a
    wildcard: it means "every interface here" to its owner and nothing to a peer.)"""
    if (ip := ip_of(address)) is not None and ipaddress.ip_address(ip).is_unspecified:
        return False
    own = scope_of(address)
    if network is Scope.LOOPBACK:
        return own is Scope.LOOPBACK
    return own >= network


def source_ip_towards(ip: str) -> str | None:
    """The local IP the kernel would send from to reach `ip` (a connected UDP socket
    asks the routing table; no packet leaves), or None with no route."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((ip, 9))
        except OSError:
            return None
        return str(probe.getsockname()[0])


def home_address() -> str | None:
    """This machine's IPv4 address on its network (the source towards the default route), if it has one."""
    return source_ip_towards(_DEFAULT_ROUTE_PROBE)


def expand(listening: list[multiaddr.Multiaddr], towards: list[str]) -> list[multiaddr.Multiaddr]:
    """Listen addresses with the IPv4 wildcard replaced by the node's local addresses:
    loopback and the source address towards each of `towards` (IPv4s) and the default route."""
    sources = (source_ip_towards(ip) for ip in [*towards, _DEFAULT_ROUTE_PROBE] if ":" not in ip)
    local = sorted({"127.0.0.1"} | {source for source in sources if source is not None})
    out: list[multiaddr.Multiaddr] = []
    for address in listening:
        if ip_of(address) != _WILDCARD:
            out.append(address)
            continue
        rest = str(address).removeprefix(f"/ip4/{_WILDCARD}")
        out.extend(multiaddr.Multiaddr(f"/ip4/{ip}{rest}") for ip in local)
    return out
