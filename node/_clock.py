"""Domain time of a node and its wallbox: UTC seconds, real, accelerated or jumped.

Theory of operation (DESIGN.md, "Time"): everything a booking or session decides by
(windows, grace, meter timestamps, no-show deadlines, settlement times, ad expiry,
checkpoints) reads a `Clock`, while network deadlines stay in real seconds (trio's own
clock, which tests may replace with `trio.testing.MockClock`). A clock at `speed` 1 is
the wall clock; a faster one maps real time to domain time linearly from an `anchor`
(a real instant) at which domain time was `origin`. Processes given the same three
numbers (`$WATTSHARE_CLOCK`) agree on the time, so a demo's nodes and wallboxes can run
a night in a minute together.

`advance(seconds)` jumps one process's clock forward, as a laptop waking from sleep
sees it: every `sleep_until` wakes, looks at the time again and returns if its moment
has passed, so a task sleeping towards tomorrow's re-signing does it at once after a
jump past it (and only once, however far the jump). Tests use it to live a month of
daemon uptime in seconds. This module is the only reader of the machine's wall clock
besides `protocol.wall_time`, which it uses.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from wattshare.protocol import wall_time


class Clock:
    def __init__(self, speed: float = 1.0, origin: float | None = None, anchor: float | None = None,
                 real: Callable[[], float] = wall_time) -> None:
        """`real` is the real time it runs from: the wall clock, or trio's (`trio.current_time`,
        so a test under `trio.testing.MockClock` lives a night in a moment)."""
        if not speed > 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.real = real
        self.anchor = real() if anchor is None else anchor
        self.origin = self.anchor if origin is None else origin
        self._moved = trio.Event()

    def __call__(self) -> float:
        return self.origin + (self.real() - self.anchor) * self.speed

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock's time take in real time."""
        return max(0.0, seconds) / self.speed

    def advance(self, seconds: float) -> None:
        """Jump forward by `seconds` of domain time, waking every sleeper (see the module doc)."""
        if not seconds >= 0:
            raise ValueError("a clock only moves forward")
        self.origin += seconds
        self._moved.set()
        self._moved = trio.Event()

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self() + seconds)

    async def sleep_until(self, t: float) -> None:
        while (left := t - self()) > 0:
            moved = self._moved
            with trio.move_on_after(self.real_seconds(left)):
                await moved.wait()
