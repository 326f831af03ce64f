"""A third-party OCPP 1.6J charge point for the interop test: the PyPI `ocpp` package's
v16 ChargePoint on asyncio and `websockets`, in a process of its own.

    python tests/third_party_wallbox.py PORT CHARGER_ID PASSWORD

It logs in with HTTP Basic auth (OCPP security profile 1), boots, waits for
RemoteStartTransaction, starts a transaction, reports the energy register (+250 Wh)
about once a second, stops on RemoteStopTransaction and exits. Each
step is printed, one word per line, for the test to follow.
"""

import asyncio
import base64
import datetime as dt
import sys

import websockets
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as BaseChargePoint
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, RegistrationStatus, RemoteStartStopStatus


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ChargePoint(BaseChargePoint):
    def __init__(self, charge_point_id, connection):
        super().__init__(charge_point_id, connection)
        self.register = 5_000
        self.stop_asked = asyncio.Event()
        self.done = asyncio.Event()

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, **_):
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, id_tag, **_):
        asyncio.create_task(self.charge(id_tag))

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id, **_):
        self.stop_asked.set()
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)

    async def charge(self, id_tag):
        started = await self.call(call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=self.register,
                                                        timestamp=now()))
        transaction = started.transaction_id
        print("started", flush=True)
        while not self.stop_asked.is_set():
            await asyncio.sleep(1.1)
            self.register += 250
            await self.call(call.MeterValues(connector_id=1, transaction_id=transaction, meter_value=[{
                "timestamp": now(),
                "sampled_value": [{"value": str(self.register), "measurand": "Energy.Active.Import.Register",
                                   "unit": "Wh"}],
            }]))
            print("metered", flush=True)
        await self.call(call.StopTransaction(meter_stop=self.register, timestamp=now(), transaction_id=transaction,
                                             reason="Remote"))
        print("stopped", flush=True)
        self.done.set()


async def main(port: int, charge_point_id: str, password: str) -> None:
    login = base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()
    async with websockets.connect(f"ws://127.0.0.1:{port}/ocpp/{charge_point_id}", subprotocols=["ocpp1.6"],
                                  additional_headers={"Authorization": f"Basic {login}"}) as ws:
        point = ChargePoint(charge_point_id, ws)
        listener = asyncio.create_task(point.start())
        boot = await point.call(call.BootNotification(charge_point_model="interop", charge_point_vendor="pypi-ocpp"))
        print("booted" if boot.status == RegistrationStatus.accepted else "refused", flush=True)
        await asyncio.wait_for(point.done.wait(), timeout=60)
        listener.cancel()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
