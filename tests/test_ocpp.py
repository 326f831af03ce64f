"""OCPP 1.6J: frame parsing, tolerant readers, the central system's answers to bad frames
over a real WebSocket, and interop with a third-party charge point (PyPI `ocpp`)."""

import json
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from fixtures import EVERY_DAY, WALLBOX_PASSWORD, make_ad, ocpp_endpoint, run_bounded
from test_node_session import ACCESS, identity
from trio_websocket import ConnectionRejected, HandshakeError, open_websocket

from wattshare import protocol as p
from wattshare.node import (
    Node,
    OcppEndpoint,
    Wallbox,
    basic_auth,
    client_context,
    fingerprint,
    make_certificate,
    server_context,
)
from wattshare.node import _ocpp as ocpp
from wattshare.node._central import CentralSystem
from wattshare.node._clock import Clock

HERE = Path(__file__).parent


def test_frames_parse_and_bad_ones_carry_their_callerror_code():
    assert ocpp.parse_frame('[2, "a1", "Heartbeat", {}]') == ocpp.Call("a1", "Heartbeat", {})
    assert ocpp.parse_frame('[3, "a1", {"x": 1}]') == ocpp.CallResult("a1", {"x": 1})
    assert ocpp.parse_frame('[4, "a1", "NotImplemented", "no", {}]') == ocpp.CallError("a1", "NotImplemented", "no")
    for text, code, message_id in [
        ("not json", "FormationViolation", None),
        ("{}", "FormationViolation", None),
        ('[2, 7, "Heartbeat", {}]', "FormationViolation", None),
        ('[2, "a2", "Heartbeat"]', "FormationViolation", "a2"),
        ('[2, "a3", "Heartbeat", []]', "FormationViolation", "a3"),
        ("[2, \"a4\", \"Heartbeat\", {\"x\": \"" + "y" * 70_000 + "\"}]", "ProtocolError", None),
    ]:
        with pytest.raises(ocpp.OcppError) as caught:
            ocpp.parse_frame(text)
        assert (caught.value.code, caught.value.message_id) == (code, message_id)


def test_energy_readings_tolerate_what_real_chargers_send():
    values = [
        {"timestamp": "2026-11-28T22:05:00Z", "sampledValue": [{"value": "1234"}]},  # no measurand: the register
        {"timestamp": "2026-11-28T22:10:00.750+00:00", "sampledValue": [
            {"value": "230.1", "measurand": "Voltage", "unit": "V"},
            {"value": "1.5005", "measurand": "Energy.Active.Import.Register", "unit": "kWh", "extra": True},
            {"value": "500", "measurand": "Energy.Active.Import.Register", "phase": "L1"},  # a phase: not the total
        ]},
        {"timestamp": "2026-11-28T22:15:00", "sampledValue": [{"value": "1600", "unit": "kvarh"}]},  # odd unit, no zone
    ]
    t = 1_795_903_500  # 2026-11-28T22:05:00Z
    assert ocpp.energy_readings(values, "MeterValues") == [(t, 1234), (t + 300, 1500), (t + 600, 1600)]
    for bad in ("x", [{"timestamp": "late", "sampledValue": []}], [{"timestamp": "2026-11-28T22:05:00Z",
                                                                      "sampledValue": [{"value": "-5"}]}],
                [{"timestamp": "2026-11-28T22:05:00Z", "sampledValue": [{"value": 12}]}]):
        with pytest.raises(ocpp.OcppError):
            ocpp.energy_readings(bad, "MeterValues")


class Ledgerless:
    """The transactions side, for the central system alone: knows no booking."""

    def authorize(self, charger, tag):
        return False

    def start_transaction(self, charger, tag, meter_start, t):
        return 0, False

    def meter_values(self, charger, transaction, readings):
        self.seen = readings

    def stop_transaction(self, charger, transaction, meter_stop, t, readings):
        pass


LOGIN = [(b"Authorization", basic_auth("garage", WALLBOX_PASSWORD).encode())]


def connect(central, headers=LOGIN, charger="garage", subprotocol="ocpp1.6"):
    return open_websocket("127.0.0.1", central.port, f"/ocpp/{charger}", use_ssl=False, subprotocols=[subprotocol],
                          extra_headers=headers)


def test_central_system_answers_bad_frames_with_callerror_and_keeps_the_link():
    async def scenario():
        central = CentralSystem(Ledgerless(), Clock(), ocpp_endpoint("garage"))
        async with trio.open_nursery() as nursery:
            await nursery.start(central.serve)
            with pytest.raises(ConnectionRejected):
                async with connect(central, subprotocol="ocpp2.0.1"):
                    pass
            answers = []
            async with connect(central) as ws:
                for frame in [
                    "garbage",
                    '[2, "m1", "MeterValues", {"connectorId": 1, "transactionId": 3, "meterValue": "x"}]',
                    '[2, "m2", "StartTransaction", {"connectorId": 1, "idTag": "t"}]',
                    '[2, "m3", "Teleport", {}]',
                    '[2, "m4", "BootNotification", {"chargePointVendor": "' + "v" * 40 + '", '
                    '"chargePointModel": "m", "firmwareColour": "blue"}]',
                    '[2, "m5", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", '
                    '"status": "Dancing"}]',
                    '[2, "m6", "Heartbeat", {}]',
                    '[2, "m7", "MeterValues", {"connectorId": 1, "transactionId": 3, "meterValue": [{"timestamp": '
                    '"2026-11-28T22:05:00Z", "sampledValue": [{"value": "1e1500000"}]}]}]',  # stalled int(Decimal())
                ]:
                    await ws.send_message(frame)
                    answers.append(json.loads(await ws.get_message()))
                assert central.links["garage"].status == {1: "Dancing"}  # unknown enum kept, survived
            nursery.cancel_scope.cancel()
        return answers

    answers = run_bounded(scenario, 20)
    assert [a[0] for a in answers] == [4, 4, 4, 4, 3, 3, 3, 4]
    assert [a[2] for a in answers[:4]] == ["FormationViolation", "TypeConstraintViolation",
                                          "OccurenceConstraintViolation", "NotImplemented"]
    assert answers[4][2]["status"] == "Accepted" and "currentTime" in answers[6][2]
    assert answers[7][2] == "TypeConstraintViolation"


def test_only_the_charger_with_its_password_connects_and_nothing_replaces_its_live_link():
    async def scenario():
        central = CentralSystem(Ledgerless(), Clock(), ocpp_endpoint("garage"))
        refused = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(central.serve)
            for name, headers, charger in [
                ("no password", [], "garage"),
                ("wrong password", [(b"Authorization", basic_auth("garage", "guess").encode())], "garage"),
                ("another charger's id", [(b"Authorization", basic_auth("carport", WALLBOX_PASSWORD).encode())],
                 "carport"),
                ("a web page", [*LOGIN, (b"Origin", b"https://evil.example")], "garage"),
            ]:
                with pytest.raises(ConnectionRejected) as rejected:
                    async with connect(central, headers, charger):
                        pass
                refused[name] = rejected.value.status_code
            async with connect(central) as real:
                await real.send_message('[2, "b1", "Heartbeat", {}]')
                assert json.loads(await real.get_message())[0] == 3
                with pytest.raises(ConnectionRejected) as second:  # even with the password: the link is alive
                    async with connect(central):
                        pass
                refused["while the wallbox is connected"] = second.value.status_code
                await real.send_message('[2, "b2", "Heartbeat", {}]')  # the real one still serves
                still = json.loads(await real.get_message())
            with trio.fail_after(5):
                while "garage" in central.links:  # the link is gone once the wallbox hangs up
                    await trio.sleep(0.01)
            async with connect(central) as back:  # and it may connect again
                await back.send_message('[2, "b3", "Heartbeat", {}]')
                again = json.loads(await back.get_message())
            nursery.cancel_scope.cancel()
        return refused, still, again

    refused, still, again = run_bounded(scenario, 20)
    assert refused == {"no password": 401, "wrong password": 401, "another charger's id": 401, "a web page": 403,
                       "while the wallbox is connected": 409}
    assert still[0] == 3 and again[0] == 3


def test_profile_2_serves_only_tls_with_the_hosts_own_certificate_and_still_wants_the_password(tmp_path):
    """OCPP security profile 2: wss:// with the certificate the host made. A wallbox that
    trusts it (and only it) logs in with its password; a plain ws:// client, a client
    that trusts another certificate, and one without the password get nothing."""
    key, cert = tmp_path / "ocpp-key.pem", tmp_path / "ocpp-cert.pem"
    printed = make_certificate("127.0.0.1", key, cert, now=1_795_000_000)
    other_key, other_cert = tmp_path / "other-key.pem", tmp_path / "other-cert.pem"
    make_certificate("127.0.0.1", other_key, other_cert, now=1_795_000_000)
    endpoint = OcppEndpoint({"garage": WALLBOX_PASSWORD}, tls=server_context(key, cert))

    async def scenario():
        central = CentralSystem(Ledgerless(), Clock(), endpoint)
        refused = {}
        async with trio.open_nursery() as nursery:
            await nursery.start(central.serve)
            for name, tls, headers in [("plain ws://", False, LOGIN), ("another certificate", client_context(other_cert),
                                       LOGIN), ("no password", client_context(cert), [])]:
                with pytest.raises((ConnectionRejected, HandshakeError, OSError, trio.TooSlowError)) as caught:
                    with trio.fail_after(3):  # a plain ws:// request gets no answer from a TLS server
                        async with open_websocket("127.0.0.1", central.port, "/ocpp/garage", use_ssl=tls,
                                                  subprotocols=["ocpp1.6"], extra_headers=headers):
                            pass
                refused[name] = getattr(caught.value, "status_code", type(caught.value).__name__)
            box = Wallbox("garage", central.port, Clock(), WALLBOX_PASSWORD, tls=client_context(cert))
            nursery.start_soon(box.run)
            with trio.fail_after(10):
                await central.wait_connected("garage")
            nursery.cancel_scope.cancel()
        return refused

    refused = run_bounded(scenario, 30)
    assert refused["no password"] == 401 and refused["plain ws://"] == "TooSlowError"
    assert isinstance(refused["another certificate"], str)  # no HTTP answer: the TLS handshake failed first
    assert printed == fingerprint(cert) and len(printed) == 95 and key.stat().st_mode & 0o077 == 0


def test_third_party_charge_point_boots_starts_meters_and_stops():
    """Boot -> remote start -> meter values -> stop, with the `ocpp` package's ChargePoint."""

    async def scenario():
        async with AsyncExitStack() as stack:
            host = Node(identity(20), access=ACCESS, ocpp=ocpp_endpoint())
            await stack.enter_async_context(host.running())
            all_day = (p.WeeklyWindow(days=EVERY_DAY, start="00:00", end="00:00"),)
            now = int(host.clock())  # the wall clock, which the third-party charge point stamps its readings by
            ad = (await host.publish(make_ad(host=identity(20).public_key, availability=all_day,  # 250 Wh a second
                                             expires=now + 86_400, max_power_w=1_000_000))).message
            driver = Node(identity(21))
            await stack.enter_async_context(driver.running())
            await driver.join([host.address])
            point = await trio.lowlevel.open_process(
                [sys.executable, str(HERE / "third_party_wallbox.py"), str(host.sessions.central.port), ad.charger_id,
                 WALLBOX_PASSWORD],
                stdout=subprocess.PIPE)
            try:
                await host.sessions.central.wait_connected(ad.charger_id)
                booking = await driver.book(ad, now, now + 3600, spend_cap=5_000)
                stop = trio.Event()
                charging = await driver.charge(booking, stop=stop,
                                               on_update=lambda c: stop.set() if c.energy_wh >= 500 else None)
                with trio.fail_after(10):
                    await point.wait()
                output = b""
                while chunk := await point.stdout.receive_some(4096):  # to the end: it has exited
                    output += chunk
                output = output.decode().split()
            finally:
                if point.returncode is None:
                    point.kill()
            return booking, charging, output

    booking, charging, output = run_bounded(scenario, 60)
    assert output[0] == "booted" and output[1] == "started" and output[-1] == "stopped" and "metered" in output
    receipts = charging.machine.receipts
    p.check_session(booking, receipts, charging.settlement)
    assert receipts[-1].message.energy_wh >= 500 and receipts[-1].message.energy_wh % 250 == 0
    assert isinstance(charging.answer.message, p.SettlementAck)
