"""The node as an OCPP 1.6J central system: the host's wallbox connects here.

Theory of operation (DESIGN.md, "OCPP"; OCPP-J 1.6):

- A WebSocket server (trio-websocket) on a local address; a charge point connects to
  `/ocpp/<charge point id>` offering subprotocol `ocpp1.6` (anything else is refused
  at the handshake). The charge point id is the charger id of the host's ad.
- Security (OCPP 1.6J security profile 1, `OcppEndpoint`): every charge point
  authenticates with HTTP Basic auth, user its id and password the one `host init`
  generated for it (compared in constant time). A request carrying an `Origin` header (a web
  page, through the browser) is refused: charge points send none. A new connection for
  a charger replaces its link only if the old one no longer answers a ping within
  `LIVENESS_TIMEOUT` (a wallbox reconnecting after its link died); while the old link
  is alive the newcomer is refused, so nothing can take a live wallbox's place.
  Security profile 2 adds TLS with the host node's own certificate (`_tls`): the same
  server, the same passwords, over wss://.
- Each link answers every CALL from the charge point: BootNotification, Heartbeat,
  StatusNotification, Authorize, StartTransaction, MeterValues, StopTransaction,
  DataTransfer and the status notifications are handled; any other action gets
  `NotImplemented`; a malformed frame or payload gets the CALLERROR its `OcppError`
  names; a fault of ours gets `InternalError`. The link keeps running in every case.
- Transaction actions go to a `Transactions` object (the session desk), synchronously:
  it persists what it learns before the CALLRESULT goes back, so a charger that
  retries an unconfirmed message after a crash is not lost (and a duplicate is
  recognised there).
- `call` sends a CALL to a charge point (RemoteStartTransaction, RemoteStopTransaction,
  ReserveNow, CancelReservation) and waits, with a deadline, for its result.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from . import _ocpp as ocpp
from ._clock import Clock

SUBPROTOCOL = "ocpp1.6"
CALL_TIMEOUT = 10.0
LIVENESS_TIMEOUT = 2.0  # real seconds the live link of a charger has to answer a ping
HEARTBEAT = 300
_CHARGE_POINT = re.compile(r"/ocpp/([A-Za-z0-9._:-]{1,48})")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OcppEndpoint:
    """Where a host's wallboxes connect and how they prove who they are (see the module
    doc): `passwords` maps each charge point id to its password."""

    passwords: Mapping[str, str]
    host: str = "127.0.0.1"
    port: int = 0
    tls: ssl.SSLContext | None = None  # security profile 2 (`_tls`): wss:// with the host's certificate

    def authenticated(self, charger: str, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Does the request carry HTTP Basic credentials of `charger` (user = its id)?"""
        expected = self.passwords.get(charger)
        token = basic_auth(charger, expected).encode() if expected is not None else b"\0"
        offered = next((value for name, value in headers if name.lower() == b"authorization"), b"")
        return expected is not None and hmac.compare_digest(offered, token)


def basic_auth(user: str, password: str) -> str:
    """The Authorization header value of HTTP Basic auth (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class ChargerOffline(Exception):
    """The charge point is not connected, did not answer in time, or refused the call."""


class Transactions(Protocol):
    def authorize(self, charger: str, id_tag: str) -> bool: ...

    def start_transaction(self, charger: str, id_tag: str, meter_start: int, t: int) -> tuple[int, bool]: ...

    def meter_values(self, charger: str, transaction_id: int, readings: list[tuple[int, int]]) -> None: ...

    def stop_transaction(self, charger: str, transaction_id: int, meter_stop: int, t: int,
                         readings: list[tuple[int, int]]) -> None: ...


class ChargePointLink:
    """One connected charge point."""

    def __init__(self, charger: str, ws: WebSocketConnection) -> None:
        self.charger = charger
        self.ws = ws
        self.status: dict[int, str] = {}
        self._pending: dict[str, tuple[trio.Event, list[ocpp.Frame]]] = {}
        self._send_lock = trio.Lock()

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_message(text)

    async def call(self, action: str, payload: dict[str, Any], timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        event, box = trio.Event(), []
        self._pending[message_id] = (event, box)
        try:
            await self.send(ocpp.call(message_id, action, payload))
            with trio.move_on_after(timeout):
                await event.wait()
        except ConnectionClosed:
            pass
        finally:
            del self._pending[message_id]
        if not box:
            raise ChargerOffline(f"{self.charger} did not answer {action}")
        if isinstance(box[0], ocpp.CallError):
            raise ChargerOffline(f"{self.charger} refused {action}: {box[0].code} {box[0].description}")
        return box[0].payload

    async def alive(self) -> bool:
        """Does the charge point still answer a WebSocket ping on this link?"""
        with trio.move_on_after(LIVENESS_TIMEOUT):
            try:
                await self.ws.ping()
            except ConnectionClosed:
                return False
            return True
        return False

    async def run(self, answer: Callable[[ChargePointLink, ocpp.Call], dict[str, Any]]) -> None:
        """Serve the link until the charge point goes away."""
        while True:
            try:
                text = await self.ws.get_message()
            except ConnectionClosed:
                return
            try:
                frame = ocpp.parse_frame(text)
            except ocpp.OcppError as error:
                log.info("%s sent a bad frame: %s", self.charger, error)
                await self.send(ocpp.call_error(error.message_id or "-1", error.code, error.description))
                continue
            if isinstance(frame, ocpp.Call):
                await self.send(self._answer(answer, frame))
            elif frame.message_id in self._pending:
                event, box = self._pending[frame.message_id]
                box.append(frame)
                event.set()

    def _answer(self, answer: Callable[[ChargePointLink, ocpp.Call], dict[str, Any]], frame: ocpp.Call) -> str:
        try:
            return ocpp.call_result(frame.message_id, answer(self, frame))
        except ocpp.OcppError as error:
            log.info("%s: %s refused: %s", self.charger, frame.action, error)
            return ocpp.call_error(frame.message_id, error.code, error.description)
        except Exception:
            log.exception("%s: %s failed here", self.charger, frame.action)
            return ocpp.call_error(frame.message_id, "InternalError", "the central system failed; retry")


class CentralSystem:
    """The OCPP server of one host node (see the module doc)."""

    def __init__(self, transactions: Transactions, clock: Clock, endpoint: OcppEndpoint) -> None:
        self.transactions = transactions
        self.clock = clock
        self.endpoint = endpoint
        self.port = endpoint.port
        self.links: dict[str, ChargePointLink] = {}
        self._connected: dict[str, trio.Event] = {}

    async def serve(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._accept, self.endpoint.host, self.endpoint.port,
                                         self.endpoint.tls)
            self.port = server.port
            task_status.started(self.port)

    async def _accept(self, request: WebSocketRequest) -> None:
        match = _CHARGE_POINT.fullmatch(request.path)
        if match is None or SUBPROTOCOL not in request.proposed_subprotocols:
            await request.reject(404 if match is None else 400, body=b"connect to /ocpp/<id> with subprotocol ocpp1.6")
            return
        charger = match[1]
        if any(name.lower() == b"origin" for name, _ in request.headers):
            log.warning("refused a browser's connection as charge point %s", charger)
            await request.reject(403, body=b"web pages may not connect to the OCPP endpoint")
            return
        if not self.endpoint.authenticated(charger, request.headers):
            log.warning("refused charge point %s: no valid password (HTTP Basic auth)", charger)
            await request.reject(401, extra_headers=[(b"WWW-Authenticate", b'Basic realm="ocpp"')],
                                 body=b"authenticate with the charger's password (OCPP security profile 1)")
            return
        old = self.links.get(charger)
        if old is not None and await old.alive():
            log.warning("refused a second connection as charge point %s: its link is alive", charger)
            await request.reject(409, body=b"this charge point is connected already")
            return
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        link = ChargePointLink(charger, ws)
        old = self.links.get(charger)
        self.links[charger] = link
        if old is not None:
            await old.ws.aclose()
        self._connected.setdefault(charger, trio.Event()).set()
        log.info("charge point %s connected", charger)
        try:
            await link.run(self._answer)
        finally:
            if self.links.get(charger) is link:
                del self.links[charger]
                self._connected.pop(charger, None)
            log.info("charge point %s disconnected", charger)

    async def wait_connected(self, charger: str) -> None:
        if charger not in self.links:
            await self._connected.setdefault(charger, trio.Event()).wait()

    async def call(self, charger: str, action: str, payload: dict[str, Any], timeout: float = CALL_TIMEOUT) -> dict:
        link = self.links.get(charger)
        if link is None:
            raise ChargerOffline(f"charge point {charger} is not connected")
        return await link.call(action, payload, timeout)

    # --- CALLs from a charge point --------------------------------------------------

    def _answer(self, link: ChargePointLink, frame: ocpp.Call) -> dict[str, Any]:
        handler = getattr(self, f"_on_{frame.action}", None)
        if handler is None:
            raise ocpp.OcppError("NotImplemented", f"{frame.action[:40]} is not supported here")
        return handler(link, frame.payload)

    def _now(self) -> str:
        return ocpp.iso(self.clock())

    def _on_BootNotification(self, link: ChargePointLink, p: dict) -> dict:
        ocpp.field(p, "chargePointVendor", str, "BootNotification", max_len=20)
        ocpp.field(p, "chargePointModel", str, "BootNotification", max_len=20)
        return {"status": "Accepted", "currentTime": self._now(), "interval": HEARTBEAT}

    def _on_Heartbeat(self, link: ChargePointLink, p: dict) -> dict:
        return {"currentTime": self._now()}

    def _on_StatusNotification(self, link: ChargePointLink, p: dict) -> dict:
        connector = ocpp.field(p, "connectorId", int, "StatusNotification")
        link.status[connector] = ocpp.field(p, "status", str, "StatusNotification", max_len=20)
        ocpp.field(p, "errorCode", str, "StatusNotification", required=False, max_len=30)
        return {}

    def _on_Authorize(self, link: ChargePointLink, p: dict) -> dict:
        tag = ocpp.field(p, "idTag", str, "Authorize", max_len=20)
        return {"idTagInfo": {"status": "Accepted" if self.transactions.authorize(link.charger, tag) else "Invalid"}}

    def _on_StartTransaction(self, link: ChargePointLink, p: dict) -> dict:
        where = "StartTransaction"
        ocpp.field(p, "connectorId", int, where)
        tag = ocpp.field(p, "idTag", str, where, max_len=20)
        meter_start = ocpp.field(p, "meterStart", int, where)
        t = ocpp.timestamp(p, "timestamp", where)
        transaction, accepted = self.transactions.start_transaction(link.charger, tag, meter_start, t)
        return {"transactionId": transaction, "idTagInfo": {"status": "Accepted" if accepted else "Invalid"}}

    def _on_MeterValues(self, link: ChargePointLink, p: dict) -> dict:
        ocpp.field(p, "connectorId", int, "MeterValues")
        readings = ocpp.energy_readings(ocpp.field(p, "meterValue", list, "MeterValues"), "MeterValues")
        transaction = ocpp.field(p, "transactionId", int, "MeterValues", required=False)
        if transaction is not None:
            self.transactions.meter_values(link.charger, transaction, readings)
        return {}

    def _on_StopTransaction(self, link: ChargePointLink, p: dict) -> dict:
        where = "StopTransaction"
        transaction = ocpp.field(p, "transactionId", int, where)
        meter_stop = ocpp.field(p, "meterStop", int, where)
        t = ocpp.timestamp(p, "timestamp", where)
        ocpp.field(p, "reason", str, where, required=False, max_len=30)
        data = ocpp.field(p, "transactionData", list, where, required=False, default=[])
        self.transactions.stop_transaction(link.charger, transaction, meter_stop, t,
                                           ocpp.energy_readings(data, where))
        return {}

    def _on_DataTransfer(self, link: ChargePointLink, p: dict) -> dict:
        return {"status": "UnknownVendorId"}

    def _on_FirmwareStatusNotification(self, link: ChargePointLink, p: dict) -> dict:
        return {}

    def _on_DiagnosticsStatusNotification(self, link: ChargePointLink, p: dict) -> dict:
        return {}
