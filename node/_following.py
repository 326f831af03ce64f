"""The driver's side of a session as its node runs it: kept as it comes, resumed when the link goes.

Theory of operation: `follow` runs `_charge.charge` and keeps the driver's copy of every
message in the node's store as it arrives (a killed wallet resumes from it, `wallet
receipts` shows it). A link to the host can go in the middle of a night: a relayed one
is replaced by a direct one once DCUtR punches through (streams do not move), a relay
restarts, a phone changes networks. The host's session goes on regardless, so the
driver re-attaches (the host replays the session so far, which the driver checks again
from the first receipt) every RESUME_PAUSE for up to RESUME_WINDOW real seconds after
the last update, then gives up with SessionLost (`wallet watch` picks it up later).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from libp2p.host.exceptions import HostException
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamError

from wattshare.protocol import Booking

from ._charge import Charging, charge
from ._errors import SessionLost
from ._framing import StreamEnded
from ._session_stream import SESSION_PROTOCOL

if TYPE_CHECKING:
    from ._node import Node

RESUME_WINDOW = 90.0  # real seconds a driver keeps re-attaching to a session whose link went (a relay restart)
RESUME_PAUSE = 1.0
log = logging.getLogger(__name__)


async def follow(node: Node, booking: Booking, *, stop: trio.Event | None,
                 on_update: Callable[[Charging], None] | None, timeout: float, attach: bool,
                 resume: float = RESUME_WINDOW) -> Charging:
    """Start (or re-attach to) `booking`'s session and follow it to its settlement (see
    the module doc), re-attaching for up to `resume` real seconds after a lost link; the
    ack or dispute also goes onto the node's ledger feed, if any."""
    kept: set[bytes] = set()  # digests of the messages stored so far
    lost_at: float | None = None  # when the link to the host went, while we try to re-attach

    def keep(charging: Charging) -> None:
        nonlocal lost_at
        lost_at = None
        if not kept:
            node.store.open_session(booking.id, booking.request.message.charger_id, charging.machine.start)
            kept.add(charging.machine.start.digest)
        seen = [*charging.machine.history, charging.settlement, charging.answer]
        new = list({s.digest: s for s in seen if s is not None and s.digest not in kept}.values())
        node.store.keep_session(booking.id, new)
        kept.update(s.digest for s in new)
        if on_update is not None:
            on_update(charging)

    while True:
        stored = node.store.session(booking.id)
        await node.reach(booking.request.message.host)
        try:
            return await charge(node.host, node.identity, booking, node.clock, stop=stop, on_update=keep,
                                ledger=node.ledger, timeout=timeout, attach=attach,
                                answered=stored.answer if stored else None,  # type: ignore[arg-type]
                                blame=lambda host, reason: node.conduct.note(host, SESSION_PROTOCOL, reason))
        except (StreamEnded, StreamError, SwarmException, HostException, trio.TooSlowError) as error:
            lost_at = trio.current_time() if lost_at is None else lost_at
            if trio.current_time() - lost_at > resume:
                raise SessionLost(f"the link to the host's session ended ({str(error) or type(error).__name__}); "
                                  "the session goes on at the host") from error
            log.info("the link to the host's session ended (%r): re-attaching", error)
            attach = attach or bool(kept)  # the host took the session: only re-attach from now on
            await trio.sleep(RESUME_PAUSE)
