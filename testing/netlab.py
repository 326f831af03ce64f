"""A simulated internet on this machine, for integration tests of NAT traversal.

Theory of operation: every node of the network is a Linux network namespace, named
`wslab<owner pid>-<6 hex>-<role>`. A node plugs into the bridge of the node upstream of it
with a veth pair created directly between the two namespaces (the node's end is its uplink,
the bridge's end its port, named after the node), so nothing ever touches the machine's own
interfaces. The `inet` namespace is the internet: a bridge at 198.51.100.1 that every public
node plugs into. A router owns a LAN bridge for the nodes behind it and an nftables ruleset
on its uplink `wan`: masquerade out, and only established or related traffic in.

- `masquerade` keeps a connection's source port when it is free, for every destination, and
  admits only the replies: a port-restricted cone, through which TCP hole punching works;
- `masquerade random,fully-random` picks a random public port for every connection: a
  symmetric NAT, through which it does not;
- the mobile phone sits behind two NATs: its hotspot's, and the carrier's (CGNAT);
- `forward` adds a home router's port forward (DNAT, accepted before the router's drop).

Namespaces carry the owner's pid so `sweep` removes those of crashed runs only, never a lab
another process is still using. IPv6 is off everywhere: IPv4 only, and no multicast chatter.
Leaving the lab kills every process in it, then deletes its namespaces.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["BASE", "TOPOLOGY", "Netlab", "Node", "available", "sweep"]

BASE = "wslab"  # every lab namespace's name starts with it
NETNS = Path("/run/netns")  # where `ip netns` keeps the namespaces it names
STEP = 30  # seconds any one command that builds or removes the lab may take
CONE = "masquerade"
SYMMETRIC = "masquerade random,fully-random"


@dataclass(frozen=True)
class Node:
    """One namespace: plugged into its upstream's bridge; a router also owns a LAN bridge."""

    role: str
    upstream: str | None  # the role whose bridge the uplink plugs into; None for the internet itself
    address: str | None  # the uplink's, on the upstream's network
    lan: str | None = None  # a router's bridge `lan`: its address and prefix length
    nat: str | None = None  # how a router translates what leaves by its uplink

    @property
    def uplink(self) -> str:
        return "wan" if self.lan else "eth0"


TOPOLOGY = (  # each node after its upstream
    Node("inet", None, None, lan="198.51.100.1/24"),
    Node("coop", "inet", "198.51.100.10"),
    Node("coop2", "inet", "198.51.100.11"),
    Node("routerA", "inet", "198.51.100.20", lan="192.168.1.1/24", nat=CONE),
    Node("hostA", "routerA", "192.168.1.10"),
    Node("wallboxA", "routerA", "192.168.1.20"),
    Node("routerB", "inet", "198.51.100.30", lan="192.168.2.1/24", nat=CONE),
    Node("driverB", "routerB", "192.168.2.10"),
    Node("routerC", "inet", "198.51.100.40", lan="10.0.3.1/24", nat=SYMMETRIC),
    Node("driverC", "routerC", "10.0.3.10"),
    Node("carrier", "inet", "198.51.100.50", lan="100.64.0.1/24", nat=CONE),
    Node("hotspot", "carrier", "100.64.0.2", lan="192.168.4.1/24", nat=CONE),
    Node("phone", "hotspot", "192.168.4.10"),
)
ROLES = {node.role: node for node in TOPOLOGY}


def available() -> str | None:
    """None if a lab can be built here, else why not."""
    reason = "needs root and the ip and nft commands (Debian iproute2 and nftables)"
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        return reason
    probe = f"{BASE}{os.getpid()}-probe"
    try:
        _sh(["ip", "netns", "add", probe])
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
        return f"{reason}: {error}"
    _remove([probe])
    return None


def sweep() -> None:
    """Remove the namespaces that labs of processes now gone left behind (crashed runs)."""
    _remove([name for name in _lab_namespaces() if _stale(name)])


class Netlab:
    """The topology, built on entering and removed on leaving, with the processes run in it."""

    def __init__(self) -> None:
        self.prefix = f"{BASE}{os.getpid()}-{secrets.token_hex(3)}-"
        self.processes: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> Netlab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def ns(self, role: str) -> str:
        return self.prefix + ROLES[role].role  # a KeyError for a role not in the topology

    def ip(self, role: str) -> str:
        node = ROLES[role]
        return node.address or _host(node.lan or "")

    def command(self, role: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role), *argv]

    def run(self, role: str, argv: Sequence[str], *, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(self.command(role, argv), timeout=timeout, **kw)

    def popen(self, role: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a process in the role's namespace, in a session of its own, for the lab to end."""
        process = subprocess.Popen(self.command(role, argv), start_new_session=True, **kw)
        self.processes.append(process)
        return process

    def forward(self, router: str, port: int, to: str) -> None:
        """Forward TCP `port` of the router's WAN address to the same port of `to` on its
        LAN, as a home router's port forward does (accepted before the router's drop)."""
        _sh(self.command(router, ["nft", "-f", "-"]), f"""
add chain ip router prerouting {{ type nat hook prerouting priority dstnat; }}
add rule ip router prerouting iifname "wan" tcp dport {port} dnat to {self.ip(to)}:{port}
insert rule ip router forward iifname "wan" ip daddr {self.ip(to)} tcp dport {port} accept
""")

    def cut(self, role: str) -> None:
        """Unplug the role's uplink at the bridge upstream: the node is offline until `mend`."""
        self._port(role, "down")

    def mend(self, role: str) -> None:
        self._port(role, "up")

    def close(self) -> None:
        """Kill every process of the lab, reap those it started and delete its namespaces."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        _remove([name for name in map(self.ns, ROLES) if (NETNS / name).exists()])
        for process in self.processes:
            process.wait(timeout=STEP)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream:
                    stream.close()

    def _build(self) -> None:
        sweep()
        _sh(["ip", "-batch", "-"], "".join(f"netns add {self.ns(role)}\n" for role in ROLES))
        for node in TOPOLOGY:
            forwarding = ["net.ipv4.ip_forward=1"] if node.lan else []
            _sh(self.command(node.role, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                                         "net.ipv6.conf.default.disable_ipv6=1", *forwarding]))
        _sh(["ip", "-batch", "-"], "".join(self._cable(node) for node in TOPOLOGY if node.upstream))
        for node in TOPOLOGY:
            _sh(["ip", "-n", self.ns(node.role), "-batch", "-"], self._wiring(node))
            if node.nat:
                _sh(self.command(node.role, ["nft", "-f", "-"]), _firewall(node))

    def _cable(self, node: Node) -> str:
        """The veth pair from the node's uplink to its port on the upstream bridge."""
        assert node.upstream
        return f"link add {node.uplink} netns {self.ns(node.role)} type veth peer name {node.role} " \
               f"netns {self.ns(node.upstream)}\n"

    def _wiring(self, node: Node) -> str:
        """The `ip -batch` lines that configure the node inside its namespace."""
        lines = ["link set dev lo up"]
        if node.lan:
            lines += ["link add lan type bridge", f"address add {node.lan} dev lan", "link set dev lan up"]
            for downstream in (other for other in TOPOLOGY if other.upstream == node.role):
                lines += [f"link set dev {downstream.role} master lan", f"link set dev {downstream.role} up"]
        if node.upstream:
            network = ROLES[node.upstream].lan or ""
            lines += [f"address add {node.address}/{network.split('/')[1]} dev {node.uplink}",
                      f"link set dev {node.uplink} up", f"route add default via {_host(network)}"]
        return "".join(f"{line}\n" for line in lines)

    def _port(self, role: str, state: str) -> None:
        upstream = ROLES[role].upstream
        if upstream is None:
            raise ValueError(f"{role} has no uplink to cut")
        _sh(["ip", "-n", self.ns(upstream), "link", "set", "dev", role, state])


def _firewall(router: Node) -> str:
    """The router's nftables ruleset: NAT out of `wan`, and nothing in that is not a reply."""
    return f"""
table ip router {{
    chain postrouting {{
        type nat hook postrouting priority srcnat;
        oifname "wan" {router.nat}
    }}
    chain forward {{
        type filter hook forward priority filter;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }}
    chain input {{
        type filter hook input priority filter;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }}
}}
"""


def _host(network: str) -> str:
    return network.split("/")[0]


def _sh(argv: Sequence[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=STEP)
    if result.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def _lab_namespaces() -> list[str]:
    return [path.name for path in NETNS.glob(f"{BASE}*")] if NETNS.is_dir() else []


def _stale(namespace: str) -> bool:
    """Whether the lab's owner, the pid in its name, is gone (a name not of our making is not)."""
    owner = namespace.removeprefix(BASE).split("-")[0]
    if not owner.isdigit():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    return False


def _remove(namespaces: list[str]) -> None:
    """Kill every process inside the namespaces, then delete them."""
    if not namespaces:
        return
    inside = {(stat.st_dev, stat.st_ino) for stat in (os.stat(NETNS / name) for name in namespaces)}
    for pid in _members(inside):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _sh(["ip", "-batch", "-"], "".join(f"netns del {name}\n" for name in namespaces))


def _members(namespaces: set[tuple[int, int]]) -> list[int]:
    """The pids of the processes whose network namespace is one of `namespaces` (device, inode)."""
    pids = []
    for entry in os.scandir("/proc"):
        try:
            stat = os.stat(f"/proc/{entry.name}/ns/net") if entry.name.isdigit() else None
        except OSError:  # gone meanwhile
            continue
        if stat and (stat.st_dev, stat.st_ino) in namespaces:
            pids.append(int(entry.name))
    return pids
