"""The simulated internet of `wattshare.testing.netlab` keeps its NATs' promises, shown with
real TCP traffic: reflectors (STUN in miniature: each caller is told the address it came
from) on the co-op nodes and on hostA, and clients dialling them from fixed ports."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wattshare.testing.netlab import Netlab, available

REFLECTOR_PORT = 7000
REFLECTOR = """
import socket, sys
server = socket.create_server(("", int(sys.argv[1])))
print("listening", flush=True)
while True:
    caller, (host, port) = server.accept()
    with caller:
        caller.sendall(f"{host}:{port}".encode())
"""
ASK = """
import socket, sys
local_port, reflectors = int(sys.argv[1]), sys.argv[2:]
for reflector in reflectors:
    host, port = reflector.split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.settimeout(5)
        sock.bind(("", local_port))
        sock.connect((host, int(port)))
        print(sock.makefile().read())
"""
DIAL = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError as error:
    sys.exit(f"{type(error).__name__}: {error}")
"""
PUNCH = """
import socket, sys, time
name, local_port, host, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + 8
while time.monotonic() < deadline:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", local_port))
        sock.settimeout(1.5)
        try:
            sock.connect((host, port))
            sock.sendall(name.encode())
            heard = sock.recv(100).decode()
        except OSError:
            heard = ""
    if heard:
        print(f"heard {heard}")
        sys.exit()
    time.sleep(0.1)  # pace the retries: a refusal comes back at once
sys.exit("no hole punched")
"""


def skip_unless_available() -> None:
    if reason := available():
        pytest.skip(reason)


def first_line(process: subprocess.Popen[Any], timeout: float) -> str:
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline() if readable and process.stdout else ""


def serve(lab: Netlab, role: str) -> None:
    reflector = lab.popen(role, [sys.executable, "-c", REFLECTOR, str(REFLECTOR_PORT)], stdout=subprocess.PIPE, text=True)
    assert first_line(reflector, 10) == "listening\n", f"the reflector on {role} did not start"


def ask(lab: Netlab, role: str, local_port: int, *servers: str) -> list[str]:
    """The addresses the reflectors on `servers` saw `role` call from, from `local_port` (0: any)."""
    reflectors = [f"{lab.ip(server)}:{REFLECTOR_PORT}" for server in servers]
    result = lab.run(role, [sys.executable, "-c", ASK, str(local_port), *reflectors], capture_output=True, text=True,
                     timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def dial(lab: Netlab, role: str, host: str, port: int) -> subprocess.CompletedProcess[str]:
    return lab.run(role, [sys.executable, "-c", DIAL, host, str(port), "1.5"], capture_output=True, text=True, timeout=10)


@pytest.fixture(scope="module")
def lab() -> Iterator[Netlab]:
    skip_unless_available()
    started = time.monotonic()
    with Netlab() as lab:
        print(f"netlab built in {time.monotonic() - started:.2f} s")
        for role in ("coop", "coop2", "hostA"):
            serve(lab, role)
        yield lab


def test_a_home_node_reaches_the_coop_through_its_routers_nat_keeping_its_port(lab):
    assert ask(lab, "hostA", 41001, "coop") == ["198.51.100.20:41001"]


def test_nothing_reaches_into_a_home_unasked(lab):
    assert dial(lab, "wallboxA", lab.ip("hostA"), REFLECTOR_PORT).returncode == 0  # hostA does listen
    lan = dial(lab, "coop", lab.ip("hostA"), REFLECTOR_PORT)
    assert lan.returncode != 0, "the coop reached hostA's LAN address"
    wan = dial(lab, "coop", lab.ip("routerA"), REFLECTOR_PORT)
    assert "TimeoutError" in wan.stderr, f"routerA let the coop in or refused it, rather than drop it: {wan.stderr}"


def test_a_cone_nat_shows_one_port_to_every_destination(lab):
    assert ask(lab, "hostA", 41011, "coop", "coop2") == ["198.51.100.20:41011"] * 2


def test_a_symmetric_nat_shows_a_new_port_to_each_destination(lab):
    seen = ask(lab, "driverC", 41003, "coop", "coop2")
    hosts, ports = zip(*(address.split(":") for address in seen))
    assert hosts == ("198.51.100.40",) * 2
    assert ports[0] != ports[1] and "41003" not in ports, seen


def test_the_phone_reaches_the_coop_through_two_nats(lab):
    [seen] = ask(lab, "phone", 0, "coop")
    assert seen.split(":")[0] == "198.51.100.50"


def test_neighbours_on_a_home_lan_meet_directly(lab):
    [seen] = ask(lab, "wallboxA", 0, "hostA")
    assert seen.split(":")[0] == "192.168.1.20"


def test_two_port_restricted_cones_let_a_tcp_hole_be_punched(lab):
    punchers = [lab.popen(role, [sys.executable, "-c", PUNCH, role, str(port), lab.ip(router), str(peer_port)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for role, port, router, peer_port in (("hostA", 40001, "routerB", 40002),
                                                      ("driverB", 40002, "routerA", 40001))]
    outcomes = [puncher.communicate(timeout=15) for puncher in punchers]
    assert any(puncher.returncode == 0 for puncher in punchers), outcomes
    assert "heard driverB" in outcomes[0][0] or "heard hostA" in outcomes[1][0], outcomes


def test_leaving_the_lab_removes_its_namespaces_and_processes():
    skip_unless_available()
    with pytest.raises(RuntimeError, match="the test failed"), Netlab() as lab:
        shell = lab.popen("hostA", ["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
        sleeper = int(first_line(shell, 10))
        raise RuntimeError("the test failed")
    assert shell.returncode is not None
    deadline = time.monotonic() + 5
    while not gone(sleeper) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(sleeper), f"the lab's sleep {sleeper} still runs"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True).stdout
    assert lab.prefix not in listed


def gone(pid: int) -> bool:
    """Whether the process is dead: no more, or a zombie waiting for its new parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
