"""The code's own checks: ruff over everything, mypy --strict over the sans-IO cores
(`protocol/`, `ledger/`), and the one private py-libp2p call the search relies on."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from libp2p.kad_dht.provider_store import ProviderStore

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "protocol", "ledger", "node", "cli",
                             "bench", "tests", "testing", "docs"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-5000:]


@pytest.mark.timeout(600)
def test_mypy_strict_finds_nothing_in_protocol_and_ledger(tmp_path):
    """The packages live under `wattshare.` only once installed (setuptools `package-dir`),
    which mypy cannot follow: it reads them through a tree of links."""
    package = tmp_path / "wattshare"
    package.mkdir()
    for name in ("protocol", "ledger"):
        (package / name).symlink_to(ROOT / name)
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
                             "--cache-dir", str(tmp_path / "cache"), "-p", "wattshare.protocol", "-p", "wattshare.ledger"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]


def test_the_private_py_libp2p_call_the_search_relies_on_is_still_there():
    """`node/_ads.py` `providers()` asks each peer for providers *and* closer peers, which
    py-libp2p 0.8.1 offers only privately. An upgrade that removes or reshapes it must
    fail here, by name, not as a search that quietly finds fewer chargers."""
    call = getattr(ProviderStore, "_get_providers_from_peer_with_closers", None)
    assert call is not None and inspect.iscoroutinefunction(call), \
        "py-libp2p lost ProviderStore._get_providers_from_peer_with_closers: port node/_ads.py providers()"
    assert list(inspect.signature(call).parameters) == ["self", "peer_id", "key"], \
        "ProviderStore._get_providers_from_peer_with_closers changed its parameters: port node/_ads.py providers()"


def test_the_private_py_libp2p_relay_parts_reachability_relies_on_are_still_there():
    """`node/_reach.py` reserves with `CircuitV2Transport._make_reservation` (the public
    `reserve` adds a refresher that misses relay restarts), refuses strangers in an override
    of `CircuitV2Protocol._handle_reserve`, closes each circuit's streams around
    `_relay_data` (instead of `_active_relays`), and filters DCUtR's
    `_get_observed_addrs`. An upgrade that moves them must fail here, by name."""
    from libp2p.relay.circuit_v2 import CircuitV2Protocol, CircuitV2Transport, DCUtRProtocol

    for owner, name, parameters in (
            (CircuitV2Transport, "_make_reservation", ["self", "stream", "relay_peer_id"]),
            (CircuitV2Protocol, "_handle_reserve", ["self", "stream", "msg"]),
            (CircuitV2Protocol, "_relay_data", ["self", "src_stream", "dst_stream", "peer_id", "deadline",
                                                "circuit_data_limit"]),
            (CircuitV2Protocol, "_send_status", ["self", "stream", "code", "message", "limit"]),
            (CircuitV2Protocol, "_close_stream", ["self", "stream"]),
            (DCUtRProtocol, "_get_observed_addrs", ["self"])):
        call = getattr(owner, name, None)
        assert call is not None and inspect.iscoroutinefunction(call), f"py-libp2p lost {owner.__name__}.{name}"
        assert list(inspect.signature(call).parameters) == parameters, f"{owner.__name__}.{name} changed"
    assert "_active_relays" in inspect.getsource(CircuitV2Protocol._relay_data)
