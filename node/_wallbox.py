"""A simulated wallbox: an OCPP 1.6J charge point on a real WebSocket, for tests and the demo.

Theory of operation (DESIGN.md, "OCPP": the simulator speaks the same OCPP, so the path
from meter to receipt is one path):

- Physics runs whether or not the wallbox is connected: every `meter_interval` seconds
  of its `Clock` the energy register advances by the `Curve` (full power up to the
  taper point, then falling linearly to zero at a full battery), and during a
  transaction a MeterValues reading is queued.
- Transaction messages (MeterValues, StopTransaction) wait in an in-order queue and
  leave it only when the central system confirms them, as OCPP 1.6 asks of a charge
  point: a wallbox that drops its link keeps charging, then delivers the queue on
  reconnect (BootNotification first).
- It answers RemoteStartTransaction (then Authorize-free StartTransaction with the
  given idTag), RemoteStopTransaction, ReserveNow and CancelReservation; any other
  CALL gets `NotImplemented`.
- It authenticates as a real one must (HTTP Basic auth with its password).
- `drop(seconds)` cuts the link for a while: the test hook for a wallbox that reconnects
  mid-session.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket

from . import _ocpp as ocpp
from ._central import SUBPROTOCOL, basic_auth
from ._clock import Clock

CALL_TIMEOUT = 10.0
RECONNECT_DELAY = 0.2
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Curve:
    """The car's charging curve behind the wallbox."""

    power_w: int = 7_400
    battery_wh: int = 60_000
    start_percent: float = 30.0
    taper_percent: float = 80.0

    def power(self, percent: float) -> float:
        if percent >= 100:
            return 0.0
        if percent <= self.taper_percent:
            return float(self.power_w)
        return self.power_w * (100 - percent) / (100 - self.taper_percent)


class Wallbox:
    def __init__(self, charge_point_id: str, port: int, clock: Clock, password: str, *, host: str = "127.0.0.1",
                 curve: Curve = Curve(), meter_interval: int = 60, unit: str = "Wh",
                 register_wh: float = 1_000_000.0, tls: ssl.SSLContext | None = None) -> None:
        """`password` is the charge point's (OCPP security profile 1); with `tls` (trusting
        the host node's certificate) it connects over wss:// (profile 2)."""
        self.charge_point_id = charge_point_id
        self.host, self.port = host, port
        self.password = password
        self.tls = tls
        self.clock = clock
        self.curve = curve
        self.meter_interval = meter_interval
        self.unit = unit
        self.register = register_wh
        self.percent = curve.start_percent
        self.transaction: int | None = None
        self.charging = False  # from the start reading on, even before the transaction id is known
        self.reservations: dict[int, str] = {}
        self.received: list[str] = []  # the actions of the CALLs it was sent, in order
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.connected = trio.Event()
        self._ws: WebSocketConnection | None = None
        self._queued = trio.Event()
        self._pending: dict[str, tuple[trio.Event, list[ocpp.Frame]]] = {}
        self._offline_until = 0.0
        self._last = int(clock())
        self._nursery: trio.Nursery | None = None
        self._link = trio.CancelScope()  # the current connection's

    # --- physics -------------------------------------------------------------------

    def _advance(self, now: int | None = None) -> None:
        """Run the physics up to `now` (whole seconds of the clock; default: the present)."""
        now = max(self._last, int(self.clock()) if now is None else now)
        if self.charging:
            hours = (now - self._last) / 3600
            wh = self.curve.power(self.percent) * hours
            self.register += wh
            self.percent = min(100.0, self.percent + 100 * wh / self.curve.battery_wh)
        self._last = now

    def _reading(self) -> dict[str, Any]:
        wh = int(self.register)
        value = f"{wh / 1000:.3f}" if self.unit == "kWh" else str(wh)
        return {"timestamp": ocpp.iso(self._last), "sampledValue": [
            {"value": value, "context": "Sample.Periodic", "measurand": ocpp.ENERGY, "unit": self.unit}]}

    def _enqueue(self, action: str, payload: dict[str, Any]) -> None:
        self.queue.append((action, payload))
        self._queued.set()

    async def _meter(self) -> None:
        """Clock-aligned readings (OCPP's ClockAlignedDataInterval): at each multiple of
        the interval, the register as it stands at that exact second."""
        while True:
            due = (int(self.clock()) // self.meter_interval + 1) * self.meter_interval
            await self.clock.sleep_until(due)
            self._advance(due)
            if self.transaction is not None:
                self._enqueue("MeterValues", {"connectorId": 1, "transactionId": self.transaction,
                                              "meterValue": [self._reading()]})

    # --- link ----------------------------------------------------------------------

    async def run(self) -> None:
        """Charge and stay connected (reconnecting as needed) until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._meter)
            while True:
                await trio.sleep(max(0.0, self._offline_until - trio.current_time()))
                try:
                    with trio.CancelScope() as self._link:
                        async with open_websocket(
                                self.host, self.port, f"/ocpp/{self.charge_point_id}", use_ssl=self.tls or False,
                                subprotocols=[SUBPROTOCOL],
                                extra_headers=[(b"Authorization", basic_auth(self.charge_point_id, self.password)
                                                .encode())]) as ws:
                            await self._connected(ws)
                except* (ConnectionClosed, HandshakeError, OSError, ocpp.OcppError) as group:
                    log.info("wallbox %s link down: %s", self.charge_point_id, group.exceptions[0])
                finally:
                    self._ws = None
                    self.connected = trio.Event()
                await trio.sleep(RECONNECT_DELAY)

    async def _connected(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, ws)
            await self.call("BootNotification", {"chargePointVendor": "wattshare", "chargePointModel": "simulated"})
            await self.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                   "status": "Charging" if self.transaction else "Available"})
            self.connected.set()
            await self._flush()

    async def _flush(self) -> None:
        while True:
            while self.queue:
                action, payload = self.queue[0]
                await self.call(action, payload)
                self.queue.pop(0)
            self._queued = trio.Event()
            await self._queued.wait()

    async def _read(self, ws: WebSocketConnection) -> None:
        while True:
            frame = ocpp.parse_frame(await ws.get_message())
            if isinstance(frame, ocpp.Call):
                await ws.send_message(self._answer(frame))
            elif frame.message_id in self._pending:
                event, box = self._pending[frame.message_id]
                box.append(frame)
                event.set()

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a CALL and wait for its result; OcppError if refused or unanswered."""
        if self._ws is None:
            raise ocpp.OcppError("GenericError", "not connected")
        message_id = str(uuid.uuid4())
        event, box = trio.Event(), []
        self._pending[message_id] = (event, box)
        try:
            await self._ws.send_message(ocpp.call(message_id, action, payload))
            with trio.move_on_after(CALL_TIMEOUT):
                await event.wait()
        finally:
            del self._pending[message_id]
        if not box or isinstance(box[0], ocpp.CallError):
            raise ocpp.OcppError("GenericError", f"{action} not confirmed")
        return box[0].payload

    def drop(self, seconds: float) -> None:
        """Cut the link now and stay offline for `seconds` (real)."""
        self._offline_until = trio.current_time() + seconds
        self._link.cancel()

    # --- CALLs from the central system -----------------------------------------------

    def _answer(self, frame: ocpp.Call) -> str:
        p = frame.payload
        self.received.append(frame.action)
        if frame.action == "RemoteStartTransaction":
            accepted = self.transaction is None and isinstance(p.get("idTag"), str)
            if accepted:
                assert self._nursery is not None
                self._nursery.start_soon(self._start, p["idTag"])
            return ocpp.call_result(frame.message_id, {"status": "Accepted" if accepted else "Rejected"})
        if frame.action == "RemoteStopTransaction":
            accepted = self.transaction is not None and p.get("transactionId") == self.transaction
            if accepted:
                self.stop("Remote")
            return ocpp.call_result(frame.message_id, {"status": "Accepted" if accepted else "Rejected"})
        if frame.action == "ReserveNow":
            self.reservations[int(p.get("reservationId", 0))] = str(p.get("idTag", ""))
            return ocpp.call_result(frame.message_id, {"status": "Accepted"})
        if frame.action == "CancelReservation":
            found = self.reservations.pop(p.get("reservationId"), None) is not None  # type: ignore[arg-type]
            return ocpp.call_result(frame.message_id, {"status": "Accepted" if found else "Rejected"})
        return ocpp.call_error(frame.message_id, "NotImplemented", f"{frame.action} is not simulated")

    async def _start(self, tag: str) -> None:
        self._advance()
        self.charging = True
        try:
            result = await self.call("StartTransaction", {"connectorId": 1, "idTag": tag,
                                                          "meterStart": int(self.register),
                                                          "timestamp": ocpp.iso(self._last)})
        except ocpp.OcppError as error:
            log.info("wallbox %s could not start: %s", self.charge_point_id, error)
            result = {}
        if result.get("idTagInfo", {}).get("status") == "Accepted":
            self.transaction = result["transactionId"]
        else:
            self._advance()
            self.charging = False

    def stop(self, reason: str = "Local") -> None:
        """End the transaction here (the driver unplugged, or the central system asked)."""
        if self.transaction is None:
            return
        self._advance()
        reading = self._reading()
        self._enqueue("StopTransaction", {"transactionId": self.transaction, "meterStop": int(self.register),
                                          "timestamp": reading["timestamp"], "reason": reason,
                                          "transactionData": [reading]})
        self.transaction = None
        self.charging = False
