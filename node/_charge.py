"""The driver's side of a charging session over `/wattshare/session/1.0.0`.

Theory of operation (DESIGN.md, "Session and metering"): the driver signs a
StartRequest for its booking and follows the host's updates through its own copy of
the protocol's SessionMachine, so every receipt is checked (signer, chain, time, energy)
as it arrives and the live energy and cost are the driver's own computation. Setting
the `stop` event sends a signed StopRequest. When the settlement comes, the driver
checks it the same way: if it is the receipts' price within the cap, it acks
(countersigns); otherwise it disputes with the reason code the check gave. The answer
goes back to the host and, with a ledger, onto the driver's own feed. Calling `charge`
again for the same booking re-attaches: the host replays the session so far.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio
from libp2p.abc import IHost
from libp2p.network.stream.exceptions import StreamError

from wattshare.ledger import EntryKind, LedgerStore, check_entry
from wattshare.protocol import (
    Booking,
    Dispute,
    ErrorReply,
    Identity,
    Reason,
    RemoteProtocolError,
    SessionAnswer,
    SessionMachine,
    SessionOffer,
    SessionUpdate,
    Settlement,
    SettlementAck,
    Signed,
    StartRequest,
    StopOffer,
    StopRequest,
    sign,
)

from ._clock import Clock
from ._conduct import at_fault
from ._framing import FrameStream, Refusal, close_quietly
from ._host import peer_of
from ._session_stream import SESSION_PROTOCOL

CONNECT_TIMEOUT = 10.0
log = logging.getLogger(__name__)


@dataclass
class Charging:
    """What the driver knows of its session."""

    machine: SessionMachine
    answer: Signed[SettlementAck] | Signed[Dispute] | None = None
    settlement: Signed[Settlement] | None = None

    @property
    def energy_wh(self) -> int:
        return self.machine.receipts[-1].message.energy_wh if self.machine.receipts else 0

    @property
    def cost(self) -> int:
        """The receipts' price so far, in minor units, capped at the spend cap."""
        return self.machine.expected_price().total if self.machine.receipts else 0


async def charge(host: IHost, identity: Identity, booking: Booking, clock: Clock, *,
                 stop: trio.Event | None = None, on_update: Callable[[Charging], None] | None = None,
                 ledger: LedgerStore | None = None, timeout: float = 3600.0,
                 answered: Signed[SettlementAck] | Signed[Dispute] | None = None, attach: bool = False,
                 blame: Callable[[bytes, Reason], None] = lambda host, reason: None) -> Charging:
    """Start (or re-attach to) `booking`'s session and follow it to its settlement.

    `attach`: only re-attach, never start a session. `timeout` bounds the wait for any
    one update, in real seconds. `answered` is this
    driver's answer from an earlier run (it is sent again, not re-signed). Refusal
    carries the host's refusal (TOO_EARLY, CHARGER_OFFLINE, ...); another
    RemoteProtocolError a receipt or frame the host got wrong, for which, as for a
    settlement the driver disputes, the host is `blame`d."""
    host_key = booking.request.message.host
    start = sign(identity, StartRequest(booking_id=booking.id, t=int(clock())))
    charging = Charging(SessionMachine(booking, start), answer=answered)
    with trio.fail_after(CONNECT_TIMEOUT):
        stream = await host.new_stream(peer_of(booking.request.message.host), [SESSION_PROTOCOL])
    frames = FrameStream(stream, timeout=timeout)
    error: Exception | None = None
    try:
        await frames.send(SessionOffer(start=start, attach=attach))
        async with trio.open_nursery() as nursery:
            if stop is not None:
                nursery.start_soon(_send_stop, frames, identity, charging, clock, stop)
            try:
                await _follow(frames, identity, charging, clock, on_update)
            except Exception as exc:  # noqa: BLE001 - re-raised below, outside the nursery's group
                error = exc
            nursery.cancel_scope.cancel()
    finally:
        await close_quietly(stream)
    if error is not None:
        if at_fault(error):
            blame(host_key, error.reason)  # type: ignore[attr-defined]
        raise error
    answer = charging.answer
    if answer is not None and isinstance(answer.message, Dispute):
        blame(host_key, answer.message.reason)
    if ledger is not None and answer is not None and not _on_feed(ledger, identity.public_key, answer.message):
        kind = EntryKind.ACK if isinstance(answer.message, SettlementAck) else EntryKind.DISPUTE
        ledger.append(identity, [(kind, answer.message)])  # dated now, by the ledger's (the node's) clock
    return charging


def _on_feed(ledger: LedgerStore, driver: bytes, answer: SettlementAck | Dispute) -> bool:
    """Is an answer to this settlement already on the driver's feed (from a run that
    crashed after writing it)?"""
    return any(check_entry(envelope).settlement == answer.settlement
               for envelope in ledger.entries(driver, 0, ledger.sizes().get(driver, 0)))


async def _follow(frames: FrameStream, identity: Identity, charging: Charging, clock: Clock,
                  on_update: Callable[[Charging], None] | None) -> None:
    while charging.settlement is None:
        update = await frames.receive(SessionUpdate)
        if isinstance(update, ErrorReply):
            raise Refusal(update.reason, update.detail)
        if update.settlement is not None:
            charging.settlement = update.settlement
            charging.answer = _answer(identity, charging, update.settlement, clock, charging.answer)
            answer = charging.answer
            try:
                await frames.send(SessionAnswer(ack=answer) if isinstance(answer.message, SettlementAck)
                                  else SessionAnswer(dispute=answer))  # type: ignore[arg-type]
            except StreamError:
                log.info("the host closed the session stream before our answer (it may hold it already)")
        else:
            charging.machine.receive(update.receipt or update.stop)  # type: ignore[arg-type]
        if on_update is not None:
            on_update(charging)


def _answer(identity: Identity, charging: Charging, settlement: Signed[Settlement], clock: Clock,
            answered: Signed[SettlementAck] | Signed[Dispute] | None) -> Signed[SettlementAck] | Signed[Dispute]:
    """Ack a settlement that checks out; dispute one that does not, saying why (or keep
    the answer this driver already gave it)."""
    machine, t = charging.machine, max(int(clock()), settlement.message.t)
    try:
        machine.receive(settlement)
    except RemoteProtocolError as refusal:
        if answered is not None and answered.message.settlement == settlement.digest:
            return answered
        log.warning("disputing the settlement: %s", refusal)
        return sign(identity, Dispute(booking_id=machine.booking_id, t=t, settlement=settlement.digest,
                                      reason=refusal.reason, detail=refusal.message[:200]))
    if answered is not None and answered.message.settlement == settlement.digest:
        machine.receive(answered)
        return answered
    ack = sign(identity, SettlementAck(booking_id=machine.booking_id, t=t, settlement=settlement.digest))
    machine.send(ack)
    return ack


async def _send_stop(frames: FrameStream, identity: Identity, charging: Charging, clock: Clock,
                     stop: trio.Event) -> None:
    await stop.wait()
    request = sign(identity, StopRequest(booking_id=charging.machine.booking_id, t=int(clock())))
    await frames.send(StopOffer(stop=request))
