"""Live charging in the app: sessions followed by the wallet daemon, pushed to pages as server-sent events.

Theory of operation: `Live.follow` starts (or re-attaches to) a booking's session in the
daemon's nursery through the same `wallet_job` and `Node.charge` as `wattshare wallet
start`, so a page that closes leaves the car charging and a page that opens later sees
it. Each followed session keeps its latest `snapshot` (state, energy, power, cost
against the cap, then the settlement or what went wrong) and wakes its watchers when it
changes. `stream` turns any source of snapshots into an event stream: one `data:` line
of JSON per change, a comment every `KEEPALIVE` seconds so phones keep the connection,
at most `MAX_WATCHERS` at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from starlette.responses import StreamingResponse

from wattshare.node import Charging, Node, SessionLost
from wattshare.protocol import Booking, RemoteProtocolError

from .. import _wallet_jobs as jobs
from .._errors import Refusal, fail
from ._api import log

KEEPALIVE = 15.0
MAX_WATCHERS = 32
KEEP_ENDED = 16  # ended sessions whose last snapshot a page may still ask for


class Followed:
    """One session the daemon follows, and its latest snapshot."""

    def __init__(self, booking: Booking) -> None:
        r = booking.request.message
        self.booking = booking
        self.stop = trio.Event()
        self.changed = trio.Event()
        self.snapshot: dict[str, Any] = {"booking": booking.id.hex(), "state": "starting", "energy_wh": 0,
                                         "power_w": 0, "cost": 0, "cap": r.spend_cap, "currency": r.tariff.currency,
                                         "receipts": 0, "t": None, "settlement": None, "error": None}

    @property
    def done(self) -> bool:
        return self.snapshot["state"] in ("settled", "failed")

    def update(self, **changes: Any) -> None:
        self.snapshot = self.snapshot | changes
        self.changed.set()
        self.changed = trio.Event()

    def saw(self, charging: Charging) -> None:
        last = [signed.message for signed in charging.machine.receipts[-2:]]
        power = 0
        if len(last) == 2 and last[1].t > last[0].t:
            power = (last[1].energy_wh - last[0].energy_wh) * 3600 // (last[1].t - last[0].t)
        self.update(state="charging", energy_wh=charging.energy_wh, cost=charging.cost, power_w=power,
                    receipts=len(charging.machine.receipts), t=last[-1].t if last else None)


class Live:
    """The sessions this wallet daemon follows (see the module doc)."""

    def __init__(self, node: Node, coop: bytes, nursery: trio.Nursery) -> None:
        self.node, self.coop, self.nursery = node, coop, nursery
        self.followed: dict[bytes, Followed] = {}

    def follow(self, booking: Booking, *, stop_now: bool = False, attach: bool = False) -> dict[str, Any]:
        """Start following `booking`'s session (stopping it at once with `stop_now`)."""
        current = self.followed.get(booking.id)
        if current is None or current.done:
            ended = [key for key, followed in self.followed.items() if followed.done]
            for key in ended[:max(0, len(ended) - KEEP_ENDED)]:  # a daemon that runs for a year keeps the latest
                del self.followed[key]
            current = self.followed[booking.id] = Followed(booking)
            self.nursery.start_soon(self._run, current, attach)
        if stop_now:
            current.stop.set()
        return current.snapshot

    async def _run(self, followed: Followed, attach: bool) -> None:
        async def job(node: Node) -> Charging:
            return await node.charge(followed.booking, stop=followed.stop, on_update=followed.saw, attach=attach)

        try:
            charging = await jobs.wallet_job(self.node, self.coop, job)
            followed.update(state="settled", settlement=jobs.charged(charging, followed.booking))
        except RemoteProtocolError as refused:
            followed.update(state="failed", error=f"the host refused ({refused.reason}): {refused.message}")
        except (SessionLost, Refusal, trio.TooSlowError) as lost:
            followed.update(state="failed", error=f"{lost}; it may still be charging: watch it again")
        except Exception as error:  # noqa: BLE001 - logged and shown; the daemon goes on
            log.exception("following booking %s failed", followed.booking.id.hex()[:12])
            followed.update(state="failed", error=f"the node lost the session ({type(error).__name__}); see its log")

    def watch(self, booking_id: bytes) -> Callable[[], AsyncIterator[dict[str, Any] | None]]:
        """The snapshots of a followed session, for `Watchers.stream`."""
        followed = self.followed.get(booking_id)
        if followed is None:
            fail("the app follows no session of this booking: start it, or watch it")
        return lambda: self._snapshots(followed)

    @staticmethod
    async def _snapshots(followed: Followed) -> AsyncIterator[dict[str, Any] | None]:
        """The session's snapshot now and at each change until it ends; None after
        KEEPALIVE seconds without one."""
        while True:
            changed = followed.changed
            yield followed.snapshot
            if followed.done:
                return
            while not changed.is_set():
                with trio.move_on_after(KEEPALIVE):
                    await changed.wait()
                if not changed.is_set():
                    yield None


class Watchers:
    """How many event streams are open, capped at MAX_WATCHERS."""

    def __init__(self) -> None:
        self.open = 0

    def stream(self, snapshots: Callable[[], AsyncIterator[Any]]) -> StreamingResponse:
        if self.open >= MAX_WATCHERS:
            fail(f"at most {MAX_WATCHERS} live views at once; close one")
        source = snapshots()

        async def events() -> AsyncIterator[bytes]:
            self.open += 1
            try:
                async for snapshot in source:
                    yield b": still here\n\n" if snapshot is None else f"data: {json.dumps(snapshot)}\n\n".encode()
            finally:
                self.open -= 1

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})


async def changes(read: Callable[[], Any], interval: float = 1.0) -> AsyncIterator[Any]:
    """`read()` now and whenever it changes, looked at every `interval` seconds (the
    host's sessions, which its node keeps current); None after KEEPALIVE seconds without."""
    last: Any = object()
    quiet = 0.0
    while True:
        value = read()
        if value != last or quiet >= KEEPALIVE:
            yield value if value != last else None
            last, quiet = value, 0.0
        await trio.sleep(interval)
        quiet += interval
