"""The app's gate on its own (in memory, no sockets): which requests reach a route, and
the pairing secret's storage and its limit on wrong tries."""

import trio
import trio.testing

from wattshare.cli.web._gate import COOKIE, PAIR_TRIES, Gate, Pairing, host_allowed

CSRF = "page-token"


def test_an_app_answers_only_at_an_ip_address_or_localhost_with_its_port():
    assert host_allowed("127.0.0.1:8470", 8470) and host_allowed("localhost:8470", 8470)
    assert host_allowed("[::1]:8470", 8470) and host_allowed("192.168.1.10:8470", 8470)
    assert not host_allowed("rebound.example:8470", 8470)  # DNS rebinding
    assert not host_allowed("127.0.0.1:8471", 8470) and not host_allowed("127.0.0.1", 8470) and not host_allowed("", 8470)


def call(gate, method, path, headers):
    """The status the gate (or the app behind it) answers."""
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path,
             "headers": [(k.encode(), v.encode()) for k, v in {"host": "192.168.1.10:8470", **headers}.items()]}
    gate.app = app
    trio.run(gate, scope, receive, send)
    start = sent[0]
    assert (b"x-content-type-options", b"nosniff") in start["headers"]  # on every answer
    return start["status"]


def test_a_paired_app_lets_in_only_devices_with_the_homes_secret(tmp_path):
    pairing = Pairing(tmp_path / "app-pairing")
    token = pairing.new()
    assert (tmp_path / "app-pairing").stat().st_mode & 0o777 == 0o600 and token not in (tmp_path / "app-pairing").read_text()
    gate = Gate(None, port=8470, scheme="https", csrf=CSRF, pairing=pairing)
    own = {"origin": "https://192.168.1.10:8470", "x-csrf-token": CSRF, "content-type": "application/json"}
    assert call(gate, "GET", "/", {}) == 200  # the page itself, to show how to pair
    assert call(gate, "GET", "/api/session", {}) == 200
    assert call(gate, "GET", "/api/host/status", {}) == 401
    assert call(gate, "GET", "/api/host/status", {"cookie": f"{COOKIE}=guess"}) == 401
    assert call(gate, "GET", "/api/host/status", {"cookie": f"other=1; {COOKIE}={token}"}) == 200
    paired = {**own, "cookie": f"{COOKIE}={token}"}
    assert call(gate, "POST", "/api/host/charger", paired) == 200
    assert call(gate, "POST", "/api/host/charger", {**paired, "origin": "https://evil.example"}) == 403
    assert call(gate, "POST", "/api/host/charger", {**paired, "x-csrf-token": "old"}) == 403
    assert call(gate, "POST", "/api/host/charger", {**paired, "content-type": "text/plain"}) == 415
    assert call(gate, "POST", "/api/pair", own) == 200  # pairing itself needs the page's token, not the cookie
    pairing.new()  # `wattshare app pair`: every device pairs again
    assert call(gate, "GET", "/api/host/status", {"cookie": f"{COOKIE}={token}"}) == 401


def test_wrong_pairing_tokens_are_limited_per_minute(tmp_path):
    pairing = Pairing(tmp_path / "app-pairing")
    token = pairing.new()

    async def guesses():
        verdicts = [pairing.try_pair(f"guess{n}") for n in range(PAIR_TRIES)]
        assert verdicts == [False] * PAIR_TRIES
        assert pairing.try_pair(token) is None  # even the right one, until the minute is over
        await trio.sleep(61)
        assert pairing.try_pair(token) is True

    trio.run(guesses, clock=trio.testing.MockClock(autojump_threshold=0))
