"""Test-wide settings: hypothesis without wall-clock deadlines (CI machines are slow), and
derandomized under CI (a fixed example stream, so a run is reproducible; local runs keep
exploring new examples). And the fixtures of more than one file: `internet`, the
simulated internet (`netlab`) with the walkthrough's street in it."""

import os

import pytest
from hypothesis import HealthCheck, settings

from wattshare.testing import netlab

settings.register_profile(
    "wattshare",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("wattshare")


@pytest.fixture
def internet(tmp_path):
    if (reason := netlab.available()) is not None:
        pytest.skip(reason)
    with netlab.Netlab() as lab:
        from test_nat import Internet  # the street of the NAT tests: one definition

        town = Internet(tmp_path, lab)
        yield town
        for process in town.daemons:
            if process.poll() is None:
                process.kill()
