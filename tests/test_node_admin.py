"""The admin socket: owner-only, one JSON line each way, bad requests answered, manual approval."""

import hashlib
import stat
from contextlib import AsyncExitStack

import trio
from fixtures import at, make_ad, pinned_clock, run_bounded

from wattshare import protocol as p
from wattshare.node import Approval, Node, admin_call
from wattshare.testing import FaultHooks

ACCESS = p.AccessInfo(address="12 Acacia Avenue", code="4711")
NIGHT = (at("2026-11-28T23:00"), at("2026-11-29T06:00"))


def identity(name):
    return p.Identity(hashlib.sha256(name.encode()).digest())


def test_admin_socket(tmp_path):
    socket_path = tmp_path / "run" / "admin.sock"
    clock = pinned_clock()
    host = Node(identity("admin-host"), access=ACCESS, approval=Approval.MANUAL, admin=socket_path,
                approval_timeout=20, clock=clock)
    host.admin_commands |= FaultHooks(host).commands  # as `host run --fault-hooks` does
    driver = Node(identity("admin-driver"), clock=clock)
    seen = {}

    async def scenario():
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(host.running())
            await stack.enter_async_context(driver.running())
            await driver.join([host.address])
            seen["mode"] = stat.S_IMODE(socket_path.stat().st_mode), stat.S_IMODE(socket_path.parent.stat().st_mode)
            ad = (await host.publish(make_ad(host=host.identity.public_key))).message
            seen["status"] = await admin_call(socket_path, {"cmd": "status"})
            seen["ads"] = await admin_call(socket_path, {"cmd": "ads"})
            seen["unknown"] = await admin_call(socket_path, {"cmd": "reboot"})
            seen["bad id"] = await admin_call(socket_path, {"cmd": "approve", "booking": "zz"})
            async with trio.open_nursery() as nursery:
                async def book():
                    seen["booking"] = await driver.book(ad, *NIGHT, spend_cap=1_000)

                nursery.start_soon(book)
                with trio.fail_after(10):
                    while not (await admin_call(socket_path, {"cmd": "status"}))["data"]["pending"]:
                        await trio.sleep(0.05)
                pending = (await admin_call(socket_path, {"cmd": "status"}))["data"]["pending"][0]
                seen["approve"] = await admin_call(socket_path, {"cmd": "approve", "booking": pending})
            seen["bookings"] = await admin_call(socket_path, {"cmd": "bookings"})
            seen["bad peer"] = await admin_call(socket_path, {"cmd": "link-drop", "peer": "nobody"})
            seen["bad time"] = await admin_call(socket_path, {"cmd": "link-delay", "peer": driver.identity.peer_id,
                                                              "seconds": "nan"})
            seen["drop"] = await admin_call(socket_path, {"cmd": "link-drop", "peer": driver.identity.peer_id})
            with trio.fail_after(5):
                while driver.host.get_id() in host.host.get_connected_peers():
                    await trio.sleep(0.05)
            stream = await trio.open_unix_socket(str(socket_path))
            await stream.send_all(b"not json\n")
            seen["garbage"] = await stream.receive_some(4096)
            await stream.aclose()

    run_bounded(scenario)
    assert seen["mode"] == (0o600, 0o700)
    assert seen["status"]["ok"] and seen["status"]["data"]["peer_id"] == host.identity.peer_id
    assert seen["ads"]["data"][0]["connector"] == "Type 2"
    assert not seen["unknown"]["ok"] and "one of: ads, approve" in seen["unknown"]["error"]
    assert not seen["bad id"]["ok"] and "wattshare host bookings" in seen["bad id"]["error"]
    assert seen["approve"] == {"ok": True, "data": {"booking": seen["booking"].id.hex(), "approved": True}}
    [row] = seen["bookings"]["data"]
    assert (row["state"], row["driver"]) == ("confirmed", driver.identity.peer_id)
    assert not seen["bad peer"]["ok"] and "peer id" in seen["bad peer"]["error"]
    assert not seen["bad time"]["ok"] and "0-3600 seconds" in seen["bad time"]["error"]
    assert seen["drop"] == {"ok": True, "data": {"dropped": driver.identity.peer_id, "seconds": 2.0}}
    assert b'"ok": false' in seen["garbage"]
    assert not socket_path.exists()  # removed when the node stops
