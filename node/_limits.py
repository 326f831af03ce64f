"""Per-peer rate limits: a token bucket per remote key (DESIGN.md, "What bad input gets":
the offending peer can be rate-limited).

Each peer may make `burst` requests at once, then one every `1 / rate` seconds; a
refused request costs nothing. Real time, never the node's domain clock: by default
trio's clock (`trio.current_time`, so a test under `MockClock` moves it), or any `now`
callable a test or node passes in.
Idle full buckets are forgotten, so a crowd of one-time peers cannot grow the table.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

MAX_PEERS = 4096


class RateLimiter:
    def __init__(self, burst: int = 10, rate: float = 0.5, now: Callable[[], float] = trio.current_time) -> None:
        self.burst = burst
        self.rate = rate
        self.now = now
        self._buckets: dict[bytes, tuple[float, float]] = {}  # peer -> (tokens, at)

    def _tokens(self, peer: bytes, now: float) -> float:
        tokens, at = self._buckets.get(peer, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def has_tokens(self, peer: bytes) -> bool:
        """Whether `peer` could make a request now (without spending anything)."""
        return self._tokens(peer, self.now()) >= 1

    def allow(self, peer: bytes) -> bool:
        now = self.now()
        tokens = self._tokens(peer, now)
        if tokens < 1:
            self._buckets[peer] = (tokens, now)
            return False
        self._buckets[peer] = (tokens - 1, now)
        if len(self._buckets) > MAX_PEERS:
            self._forget_idle(now)
        return True

    def _forget_idle(self, now: float) -> None:
        full = [p for p, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for peer in full:
            del self._buckets[peer]
