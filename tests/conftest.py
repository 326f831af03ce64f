"""Test-wide settings: hypothesis without wall-clock deadlines (CI machines are slow), and
derandomized under CI (a fixed example stream, so a run is reproducible; local runs keep
exploring new examples)."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "wattshare",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=bool(os.environ.get("CI")),
)
settings.load_profile("wattshare")
