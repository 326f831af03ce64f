"""Domain time of a node and its wallbox: UTC seconds, real or accelerated.

Theory of operation: everything a booking or session decides by (windows, grace, meter
timestamps, no-show deadlines, settlement times) reads a `Clock`, while network
deadlines stay in real seconds. A clock at `speed` 1 is the wall clock; a faster one
maps real time to simulated time linearly from an `anchor` (a real instant) at which
simulated time was `origin`. Processes given the same three numbers agree on the time,
so a demo's nodes and wallboxes can run a night in a minute together.
"""

from __future__ import annotations

import time

import trio


class Clock:
    def __init__(self, speed: float = 1.0, origin: float | None = None, anchor: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.anchor = time.time() if anchor is None else anchor
        self.origin = self.anchor if origin is None else origin

    def __call__(self) -> float:
        return self.origin + (time.time() - self.anchor) * self.speed

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock's time take in real time."""
        return max(0.0, seconds) / self.speed

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(self.real_seconds(seconds))

    async def sleep_until(self, t: float) -> None:
        await self.sleep(t - self())
