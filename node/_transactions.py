"""The wallbox's OCPP transactions, as session events: the central system's `Transactions`.

Theory of operation (DESIGN.md, "OCPP"): the central system calls these for the
wallbox's Authorize, StartTransaction, MeterValues and StopTransaction. Each finds the
session by the booking's id tag (a transaction not started yet) or by its transaction id,
and feeds the desk's choke point (`SessionDesk.apply`) one event: WallboxStarted (with a
new transaction id, stored with receipt 0), WallboxReadings, WallboxStopped. A write the
disk refuses raises, so the wallbox gets InternalError and sends the call again; the
session's receipts skip what they already hold, so nothing is counted twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wattshare.protocol import WallboxReadings, WallboxStarted, WallboxStopped

if TYPE_CHECKING:
    from ._sessions import Live, SessionDesk

log = logging.getLogger(__name__)


def id_tag(booking_id: bytes) -> str:
    """The OCPP idTag (CiString20) of a booking's session."""
    return booking_id.hex()[:20]


class WallboxTransactions:
    """The desk's sessions as the central system sees them (see the module doc)."""

    def __init__(self, desk: SessionDesk) -> None:
        self.desk = desk

    def _by(self, charger: str, *, tag: str | None = None, transaction: int | None = None) -> Live | None:
        for live in self.desk.live.values():
            ours = live.session.transaction
            if live.charger == charger and (id_tag(live.session.booking_id) == tag or
                                            (ours is not None and ours[0] == transaction)):
                return live
        return None

    def authorize(self, charger: str, tag: str) -> bool:
        live = self._by(charger, tag=tag)
        return live is not None and live.session.running

    def start_transaction(self, charger: str, tag: str, meter_start: int, t: int) -> tuple[int, bool]:
        live = self._by(charger, tag=tag)
        if live is None or not live.session.running:
            return 0, False
        if live.session.transaction is None:  # not a resent StartTransaction
            transaction = self.desk.store.new_transaction_id()
            self.desk.apply(live, WallboxStarted(transaction=transaction, meter_start=meter_start, t=t))
            live.started.set()
        return live.session.transaction[0], True  # type: ignore[index]

    def meter_values(self, charger: str, transaction: int, readings: list[tuple[int, int]]) -> None:
        live = self._by(charger, transaction=transaction)
        if live is None:
            log.info("%s reported meter values of unknown transaction %s", charger, transaction)
            return
        self.desk.apply(live, WallboxReadings(readings=tuple(readings)))

    def stop_transaction(self, charger: str, transaction: int, meter_stop: int, t: int,
                         readings: list[tuple[int, int]]) -> None:
        live = self._by(charger, transaction=transaction)
        if live is not None:  # else not ours
            self.desk.apply(live, WallboxStopped(t=t, meter_stop=meter_stop, readings=tuple(readings)))
