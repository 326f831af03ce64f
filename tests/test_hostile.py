"""Hostile peers: a node that misbehaves on purpose, on every protocol, against one honest
node. For each case: what the honest node does (refuse with a reason code, dispute, keep
evidence, turn away), that an honest neighbour is served meanwhile, and that the culprit
is named: in the honest node's record of misconduct (`Node.conduct`), and for lies about
money or history, by the audit of its ledger."""

import hashlib
from contextlib import AsyncExitStack

import pytest
import trio
from fixtures import WALLBOX_PASSWORD, ManualTime, at, make_ad, ocpp_endpoint, run_bounded, shared_value_bomb

from wattshare import protocol as p
from wattshare.ledger import (
    Batch,
    Entry,
    EntryKind,
    FeedHead,
    FeedSize,
    Have,
    LedgerStore,
    MerkleLog,
    Rule,
    SettlementClaim,
    Want,
    audit,
    leaf_hash,
)
from wattshare.node import (
    AD_PROTOCOL,
    BOOKING_PROTOCOL,
    DIAL_BACK_PROTOCOL,
    SESSION_PROTOCOL,
    SYNC_PROTOCOL,
    BookingRejected,
    FrameStream,
    Node,
    StreamEnded,
    admin_call,
    fetch_ads,
    request_booking,
)
from wattshare.node._clock import Clock
from wattshare.node._conduct import MISCONDUCT_RATE, STREAMS_BURST, STREAMS_RATE, Conduct
from wattshare.node._framing import Refusal, varint
from wattshare.node._gossip import HEADS_TOPIC
from wattshare.node._sync import SYNC_FRAME
from wattshare.node._wallbox import Curve, Wallbox
from wattshare.protocol._envelope import signing_input
from wattshare.testing import SampleWorld

PROTOCOLS = [AD_PROTOCOL, BOOKING_PROTOCOL, SESSION_PROTOCOL, SYNC_PROTOCOL, DIAL_BACK_PROTOCOL]
BOMB = shared_value_bomb()  # 300 bytes that stand for a billion items once expanded
BAD = {
    "garbage": (varint(4) + b"\xff\x00\xfe\x01", p.Reason.MALFORMED),
    "value-sharing bomb": (varint(len(BOMB)) + BOMB, p.Reason.MALFORMED),
    "oversize": (varint(SYNC_FRAME + 1), p.Reason.OVERSIZE),
    "wrong kind": (None, p.Reason.UNEXPECTED_TYPE),
    "half-closed": (b"", None),
}
ACCESS = p.AccessInfo(address="12 Acacia Avenue", code="4711")
START, END = at("2026-11-28T22:00"), at("2026-11-28T23:00")


def identity(name):
    return p.Identity(hashlib.sha256(name.encode()).digest())


def key(node):
    return node.identity.public_key


def send_frame(frame):
    data = p.encode_frame(frame)
    return varint(len(data)) + data


async def probe(client, server, protocol, payload):
    """Send `payload` raw (None: a frame of a kind no protocol starts with); return the
    server's ErrorReply, or None if it closed without one."""
    if payload is None:
        payload = send_frame(p.AdList(ads=()))
    with trio.fail_after(15):
        stream = await client.host.new_stream(server.host.get_id(), [protocol])
        if payload:
            await stream.write(payload)
        else:
            await stream.close_write()
        try:
            reply = await FrameStream(stream, max_size=SYNC_FRAME).receive(p.AdRequest)
        except StreamEnded:
            reply = None
        await stream.close()
    return reply


class Street:
    """The honest node (a host with its wallbox and a ledger), an honest neighbour, and
    the hostile peer (which can host too), on one fast clock (1800x, from 20:00)."""

    def __init__(self, stack, tmp_path):
        self.stack, self.tmp_path = stack, tmp_path
        self.world = SampleWorld(seed=71)
        self.founding = [e.encode() for e in self.world.founding(members=tuple(  # admitted, with 50.00 EUR of credit each
            identity(name).public_key for name in ("honest", "neighbour", "hostile")))]
        self.clock = Clock(speed=1800, origin=at("2026-11-28T20:00"))
        self.door_time = ManualTime()  # the honest node's rate limits refill only when a case says so

    def ledger(self, name):
        store = LedgerStore(self.tmp_path / f"{name}-ledger.db", self.world.coop.public_key)
        store.ingest(self.founding)
        return store

    async def open(self, wallbox=False):
        t = self.tmp_path
        self.honest = Node(identity("honest"), state=t / "honest.db", access=ACCESS, ledger=self.ledger("honest"),
                           ocpp=ocpp_endpoint(), clock=self.clock, sync_interval=3600, admin=t / "run" / "admin.sock",
                           conduct=Conduct(now=self.door_time))
        self.neighbour = Node(identity("neighbour"), state=t / "neighbour.db", ledger=self.ledger("neighbour"),
                              clock=self.clock, sync_interval=3600)
        self.hostile = Node(identity("hostile"), state=t / "hostile.db", access=ACCESS, ledger=self.ledger("hostile"),
                            clock=self.clock, sync_interval=3600)
        await self.stack.enter_async_context(self.honest.running())
        self.ad = (await self.honest.publish(make_ad(host=key(self.honest), max_power_w=7_000))).message
        for node in (self.neighbour, self.hostile):
            await self.stack.enter_async_context(node.running())
            await node.join([self.honest.address])
        self.hostile_ad = (await self.hostile.publish(make_ad(host=key(self.hostile), charger_id="carport"))).message
        if wallbox:
            box = Wallbox(self.ad.charger_id, self.honest.sessions.central.port, self.clock, WALLBOX_PASSWORD,
                          meter_interval=300, curve=Curve(power_w=self.ad.max_power_w))  # as fast as its ad says
            nursery = await self.stack.enter_async_context(trio.open_nursery())
            self.stack.callback(nursery.cancel_scope.cancel)
            nursery.start_soon(box.run)
            await box.connected.wait()
        return self

    async def neighbour_is_served(self):
        """The honest neighbour gets the honest node's ads and ledger, promptly."""
        with trio.fail_after(10):
            info = self.honest.host.get_peerstore().peer_info(self.honest.host.get_id())
            ads = await fetch_ads(self.neighbour.host, info)
            await self.neighbour.sync.pull(self.neighbour.host, self.honest.host.get_id())
        assert [a.message for a in ads] == [self.ad]
        assert self.neighbour.ledger.sizes() == self.honest.ledger.sizes()

    def misconduct(self, protocol=None):
        """What the honest node holds against the hostile peer: {(protocol, reason): count}."""
        return {(proto, reason): count for (peer, proto, reason), count in self.honest.conduct.counts.items()
                if peer == key(self.hostile) and protocol in (None, proto)}

    def script(self, protocol, frames_to_send):
        """Replace the hostile peer's handler of `protocol` with one that reads the opening
        frame, sends `frames_to_send(opening)` and keeps what the honest node answers."""
        answers = []

        async def handler(stream):
            frames = FrameStream(stream, max_size=SYNC_FRAME)
            opening = await frames.read()
            for frame in frames_to_send(opening):
                await stream.write(frame if isinstance(frame, bytes) else send_frame(frame))
            try:
                answers.append(await frames.read())
            except Exception:  # noqa: BLE001 - the honest node may have hung up on us
                pass
            await stream.close()

        self.hostile.host.set_stream_handler(protocol, handler)
        return answers

    def serve_feed(self, entries):
        """The hostile peer serves `entries` (envelopes of its own feed, from seq 0) as its ledger."""
        log = MerkleLog()
        for envelope in entries:
            log.append(leaf_hash(envelope))
        have = Have(sizes=(FeedSize(author=key(self.hostile), size=len(entries), root=log.root()),), heads=())

        async def handler(stream):
            frames = FrameStream(stream, max_size=SYNC_FRAME)
            await frames.receive(Have)
            await frames.send(have)
            await frames.receive(Want)
            await frames.send(Batch(entries=tuple(entries)))
            await frames.send(Batch(entries=()))
            await stream.close()

        self.hostile.host.set_stream_handler(SYNC_PROTOCOL, handler)

    async def pull_from_hostile(self):
        with trio.fail_after(15):
            await self.honest.sync.pull(self.honest.host, self.hostile.host.get_id())

    def culprits_in_audit(self):
        return {(v.rule, v.author) for v in audit(self.honest.ledger.path).violations}


def hostile_entry(street, seq, prev, kind, body, t):
    """An entry of the hostile peer's own feed, signed by it."""
    return p.sign(street.hostile.identity, Entry(author=key(street.hostile), seq=seq, prev=prev, t=t, kind=kind,
                                                 body=body.encode()))


def hostile_receipts(street, booking, count, step_wh=500):
    out, prev = [], p.GENESIS
    for seq in range(count):
        out.append(p.sign(street.hostile.identity, p.MeterReceipt(
            booking_id=booking.id, seq=seq, t=START + 300 * seq, energy_wh=seq * step_wh, prev=prev)))
        prev = out[-1].digest
    return out


def scenario_on(tmp_path, case, seconds=60, wallbox=False):
    """Run `case(street)` in a fresh street; returns the street and what the case returned."""
    async def scenario():
        async with AsyncExitStack() as stack:
            street = await Street(stack, tmp_path).open(wallbox=wallbox)
            result = await case(street)
            await street.neighbour_is_served()
            return street, result

    return run_bounded(scenario, seconds)


# --- frames ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_frames_on_every_protocol_get_a_reason_and_name_the_sender(case, tmp_path):
    payload, reason = BAD[case]

    async def send_everywhere(street):
        return {protocol: await probe(street.hostile, street.honest, protocol, payload) for protocol in PROTOCOLS}

    street, replies = scenario_on(tmp_path, send_everywhere)
    for protocol in PROTOCOLS:
        got = replies[protocol]
        assert (got.reason if got is not None else None) is reason, (protocol, got)
    expected = {(protocol, reason): 1 for protocol in PROTOCOLS} if reason is not None else {}
    assert street.misconduct() == expected  # a peer that just hangs up has done nothing wrong


def test_a_have_of_one_head_repeated_in_4_mib_is_refused_unverified_and_its_sender_named(tmp_path):
    async def flood(street):
        head = p.sign(street.hostile.identity, FeedHead(author=key(street.hostile), size=1, root=bytes(32), t=START))
        data = p.encode_cbor({"sync_have": {"sizes": [], "heads": [head.to_wire()] * 18_000, "forks": [], "only": None,
                                            "since": None, "mark": None}})
        assert len(data) < SYNC_FRAME
        return await probe(street.hostile, street.honest, SYNC_PROTOCOL, varint(len(data)) + data)

    street, reply = scenario_on(tmp_path, flood)
    assert reply.reason is p.Reason.OVERSIZE and "more than" in reply.detail
    assert street.misconduct() == {(SYNC_PROTOCOL, p.Reason.OVERSIZE): 1}


def test_a_cyclic_cbor_value_gossiped_as_a_head_is_refused_and_its_publisher_named(tmp_path):
    cycle = bytes.fromhex("d81c81d81d00")  # shareable([sharedref(0)]): six bytes that made `host run` exit

    async def gossip(street):
        with trio.fail_after(10):  # the hostile peer is in the honest node's heads mesh
            while key(street.hostile) not in {pid.extract_public_key().to_bytes()
                                              for pid in street.honest.gossip.pubsub.peers}:
                await trio.sleep(0.05)
        await street.hostile.gossip.pubsub.publish(HEADS_TOPIC, cycle)
        with trio.fail_after(10):
            while not street.misconduct(HEADS_TOPIC):
                await trio.sleep(0.05)

    street, _ = scenario_on(tmp_path, gossip)
    assert street.misconduct() == {(HEADS_TOPIC, p.Reason.MALFORMED): 1}


def test_slow_loris_on_every_protocol_is_cut_off_while_others_are_served(tmp_path):
    replies, hanging, gave_up = {}, [], []
    all_hanging = trio.Event()

    async def trickle(street, protocol):
        """A frame announced at 100 bytes, sent one byte every half second."""
        stream = await street.hostile.host.new_stream(street.honest.host.get_id(), [protocol])
        async with trio.open_nursery() as nursery:
            async def drip():
                await stream.write(varint(100))
                hanging.append(protocol)
                if len(hanging) == len(PROTOCOLS):
                    all_hanging.set()
                for _ in range(60):
                    await trio.sleep(0.5)
                    try:
                        await stream.write(b"\xa1")
                    except Exception:  # noqa: BLE001 - the server has hung up on us: that is the point
                        return
                gave_up.append(protocol)  # 60 bytes in 30 s and still no answer

            nursery.start_soon(drip)
            try:
                replies[protocol] = (await FrameStream(stream, timeout=60).receive(p.AdRequest),
                                     protocol in gave_up)
            except StreamEnded:
                replies[protocol] = (None, protocol in gave_up)
            nursery.cancel_scope.cancel()

    async def lorises(street):
        async with trio.open_nursery() as nursery:
            for protocol in PROTOCOLS:
                nursery.start_soon(trickle, street, protocol)
            await all_hanging.wait()  # every protocol has a loris hanging on it now
            await street.neighbour_is_served()
            return len(replies)  # no loris answered yet

    street, answered_while_hanging = scenario_on(tmp_path, lorises)
    assert answered_while_hanging == 0
    for protocol, (reply, loris_gave_up) in replies.items():
        assert reply is not None and reply.reason is p.Reason.TIMEOUT, (protocol, reply)  # told why
        assert not loris_gave_up, protocol  # the server's deadline ended it while the loris still dripped
    assert street.misconduct() == {(protocol, p.Reason.TIMEOUT): 1 for protocol in PROTOCOLS}


def test_a_peer_that_keeps_misbehaving_is_turned_away_at_every_door_then_forgiven(tmp_path):
    garbage = BAD["garbage"][0]

    async def keep_at_it(street):
        first = [(await probe(street.hostile, street.honest, AD_PROTOCOL, garbage)).reason for _ in range(25)]
        elsewhere = (await probe(street.hostile, street.honest, SYNC_PROTOCOL, garbage)).reason
        await street.neighbour_is_served()  # meanwhile
        street.door_time.advance(2.5 / MISCONDUCT_RATE)  # two misconduct tokens back
        later = (await probe(street.hostile, street.honest, AD_PROTOCOL, garbage)).reason
        status = await admin_call(street.honest.admin, {"cmd": "status"})  # what `wattshare host status` shows
        return first, elsewhere, later, status["data"]["misbehaving_peers"]

    street, (first, elsewhere, later, shown) = scenario_on(tmp_path, keep_at_it)
    assert first[:20] == [p.Reason.MALFORMED] * 20 and first[20:] == [p.Reason.RATE_LIMITED] * 5
    assert elsewhere is p.Reason.RATE_LIMITED  # turned away on another protocol too, unread
    assert later is p.Reason.MALFORMED  # heard again (and refused again) once forgiven
    assert street.misconduct(AD_PROTOCOL) == {(AD_PROTOCOL, p.Reason.MALFORMED): 21,
                                              (AD_PROTOCOL, p.Reason.RATE_LIMITED): 5}
    hostile = street.hostile.identity.peer_id
    assert shown == [{"peer": hostile, "protocol": AD_PROTOCOL, "reason": "malformed", "count": 21},
                     {"peer": hostile, "protocol": AD_PROTOCOL, "reason": "rate_limited", "count": 5},
                     {"peer": hostile, "protocol": SYNC_PROTOCOL, "reason": "rate_limited", "count": 1}]


def test_a_flood_of_honest_looking_streams_is_turned_away_past_the_stream_limit(tmp_path):
    async def flood(street):
        info = street.honest.host.get_peerstore().peer_info(street.honest.host.get_id())
        outcomes = []

        async def ask(count):
            for _ in range(count):
                try:
                    await fetch_ads(street.hostile.host, info)
                    outcomes.append("answered")
                except Refusal as refused:
                    outcomes.append(refused.reason)

        await ask(STREAMS_BURST + 30)
        street.door_time.advance(1.0)  # a second later: STREAMS_RATE more
        await ask(int(STREAMS_RATE) + 1)
        return outcomes

    street, outcomes = scenario_on(tmp_path, flood)
    burst, later = outcomes[:STREAMS_BURST + 30], outcomes[STREAMS_BURST + 30:]
    answered = burst.index(p.Reason.RATE_LIMITED)  # the join's ledger pull may have taken a stream or two
    assert STREAMS_BURST - 2 <= answered <= STREAMS_BURST and set(burst[answered:]) == {p.Reason.RATE_LIMITED}
    assert later == ["answered"] * int(STREAMS_RATE) + [p.Reason.RATE_LIMITED]  # then STREAMS_RATE a second
    limited = len(burst) - answered + 1
    assert street.misconduct() == {(AD_PROTOCOL, p.Reason.RATE_LIMITED): limited}


# --- bookings and ads --------------------------------------------------------------------


def test_a_repeated_request_gets_its_first_answer_and_a_borrowed_one_is_rejected(tmp_path):
    async def replay(street):
        honest = street.honest.host.get_id()
        booking = await street.hostile.book(street.ad, START, END, 1_000)
        rows = len(street.honest.store.bookings())
        again = [await request_booking(street.hostile.host, honest, booking.request) for _ in range(3)]
        borrowed = p.sign(street.neighbour.identity, booking.request.message.replace(
            driver=key(street.neighbour), start=END, end=END + 3600, nonce=bytes(16)))
        with pytest.raises(BookingRejected) as rejected:
            await request_booking(street.hostile.host, honest, borrowed)
        mine = await street.neighbour.book(street.ad, END + 3600, END + 7200, 1_000)  # served meanwhile
        return booking, rows, again, len(street.honest.store.bookings()), rejected.value.reason, mine

    street, (booking, rows, again, rows_after, borrowed, mine) = scenario_on(tmp_path, replay)
    assert [answer[0] for answer in again] == [booking] * 3  # the host's first answer, nothing new signed or held
    assert rows_after == rows + 1  # the neighbour's booking, and no other
    assert borrowed is p.Reason.WRONG_SIGNER
    assert mine.confirmation.signer == key(street.honest)
    assert street.misconduct() == {(BOOKING_PROTOCOL, p.Reason.WRONG_SIGNER): 1}


def test_forged_ads_for_another_hosts_charger_are_dropped_and_their_server_named(tmp_path):
    async def forge(street):
        own = street.hostile.board.ads["carport"]
        copied = street.honest.board.ads["driveway"]  # the honest host's own signed ad, served by another
        lie = make_ad(host=key(street.honest), charger_id="garage")  # naming the honest host, signed by the hostile
        body = lie.encode()
        forged = p.Signed(message=lie, signer=key(street.hostile), body=body,
                          signature=street.hostile.identity.sign(signing_input(lie.TYPE, body)))
        lat, lon = p.geo.decode(street.ad.geohash)
        query = p.Query(lat_e6=int(lat * 1e6), lon_e6=int(lon * 1e6), radius_m=2_000, start=START, end=END)
        found = []
        for served in ((own, copied), (own, forged)):
            street.script(AD_PROTOCOL, lambda opening, served=served: [p.AdList(ads=served)])
            found.append([r.ad.message for r in await street.honest.search(query)])
        return found

    street, (copied, forged) = scenario_on(tmp_path, forge)
    assert copied == [street.hostile_ad]  # its own ad stands; the copy of another's is dropped
    assert forged == []  # a list with a forgery in it does not even decode
    assert street.misconduct() == {(AD_PROTOCOL, p.Reason.WRONG_SIGNER): 2}


# --- sessions: the hostile peer hosts, the honest node drives -----------------------------


def test_replayed_and_tampered_receipts_are_refused_and_their_host_named(tmp_path):
    async def replay(street):
        booking = await street.honest.book(street.hostile_ad, START, END, 1_000)
        r0, r1 = hostile_receipts(street, booking, 2)
        tampered = bytearray(send_frame(p.SessionUpdate(receipt=r1)))
        at_energy = tampered.index(b"energy_wh") + len(b"energy_wh")
        tampered[at_energy + 1] ^= 0x01  # 500 Wh -> 501 Wh, signature unchanged
        reasons = []
        for second in (p.SessionUpdate(receipt=r0), bytes(tampered)):
            street.script(SESSION_PROTOCOL, lambda opening, second=second: [p.SessionUpdate(receipt=r0), second])
            with pytest.raises(p.RemoteProtocolError) as refused:
                await street.honest.charge(booking)
            reasons.append(refused.value.reason)
        return reasons

    street, reasons = scenario_on(tmp_path, replay)
    assert reasons == [p.Reason.BROKEN_CHAIN, p.Reason.BAD_SIGNATURE]
    assert street.misconduct() == {(SESSION_PROTOCOL, p.Reason.BROKEN_CHAIN): 1,
                                   (SESSION_PROTOCOL, p.Reason.BAD_SIGNATURE): 1}


def test_a_stop_dated_before_the_last_receipt_is_refused_named_and_the_session_goes_on(tmp_path):
    """The driver's half of #7: a stop dated an hour before the readings it has already
    seen would make the host's final readings look late. The host refuses it (BAD_TIME,
    counted against the driver) and charges on; an honest stop then ends the session."""
    async def backdate(street):
        booking = await street.hostile.book(street.ad, START, END, 1_000)
        await street.clock.sleep_until(START - 30)
        stream = await street.hostile.host.new_stream(street.honest.host.get_id(), [SESSION_PROTOCOL])
        frames = FrameStream(stream, timeout=30)
        start = p.sign(street.hostile.identity, p.StartRequest(booking_id=booking.id, t=int(street.clock())))
        await frames.send(p.SessionOffer(start=start))
        update = await frames.receive(p.SessionUpdate)
        while update.receipt is None or update.receipt.message.seq < 1:
            update = await frames.receive(p.SessionUpdate)
        backdated = p.StopRequest(booking_id=booking.id, t=update.receipt.message.t - 3600)
        await frames.send(p.StopOffer(stop=p.sign(street.hostile.identity, backdated)))
        reply = await frames.receive(p.SessionUpdate)
        while not isinstance(reply, p.ErrorReply):
            reply = await frames.receive(p.SessionUpdate)
        running = street.honest.sessions.live[booking.id].machine.state
        stopping = trio.Event()
        charging = await street.hostile.charge(booking, stop=stopping, timeout=30, on_update=lambda c: stopping.set())
        return reply.reason, running, charging.settlement

    street, (reason, running, settlement) = scenario_on(tmp_path, backdate, seconds=90, wallbox=True)
    assert reason is p.Reason.BAD_TIME and running in (p.SessionState.STARTED, p.SessionState.METERING)
    assert street.misconduct(SESSION_PROTOCOL) == {(SESSION_PROTOCOL, p.Reason.BAD_TIME): 1}
    assert settlement is not None  # the honest stop that followed was taken and settled


IMPLAUSIBLE = {  # a third reading no charger of the hostile ad (11 kW) could make: (seconds, Wh) after the second
    p.Reason.OVER_POWER: (123, 100_000),  # 100 kWh in 123 s
    p.Reason.OUTSIDE_WINDOW: (2 * 86_400, 500),  # two days after a one-hour window
}


@pytest.mark.parametrize("lie", [p.Reason.MISPRICED, p.Reason.OVER_CAP, *IMPLAUSIBLE])
def test_a_host_claiming_more_than_it_may_is_disputed_and_its_signed_claim_kept_as_evidence(lie, tmp_path):
    cap = 20 if lie is p.Reason.OVER_CAP else 1_000

    async def overclaim(street):
        booking = await street.honest.book(street.hostile_ad, START, END, cap)
        receipts = hostile_receipts(street, booking, 3 if lie not in IMPLAUSIBLE else 2)
        if lie in IMPLAUSIBLE:
            seconds, wh = IMPLAUSIBLE[lie]
            last = receipts[-1]
            receipts.append(p.sign(street.hostile.identity, p.MeterReceipt(
                booking_id=booking.id, seq=2, t=last.message.t + seconds, energy_wh=last.message.energy_wh + wh,
                prev=last.digest)))
        fair = p.settlement_price(booking, receipts).lines
        if lie is p.Reason.MISPRICED:
            lines = (fair[0].replace(amount=fair[0].amount + 100), *fair[1:])
        elif lie is p.Reason.OVER_CAP:
            lines = fair[:-1]  # the price of the receipts without the line that caps it
        else:
            lines = fair  # priced right, and capped: but of readings no charger could make
        settlement = p.sign(street.hostile.identity, p.Settlement(
            booking_id=booking.id, last_receipt=receipts[-1].digest, energy_wh=receipts[-1].message.energy_wh,
            amount=sum(x.amount for x in lines), currency="EUR", breakdown=lines, t=receipts[-1].message.t))
        stop = p.sign(street.hostile.identity, p.StopRequest(booking_id=booking.id, t=receipts[-1].message.t))
        told = street.script(SESSION_PROTOCOL, lambda opening: [
            *(p.SessionUpdate(receipt=r) for r in receipts), p.SessionUpdate(stop=stop),
            p.SessionUpdate(settlement=settlement)])
        charging = await street.honest.charge(booking)
        claim = SettlementClaim(booking=booking, receipts=tuple(receipts), settlement=settlement)
        claimed = hostile_entry(street, 0, p.GENESIS, EntryKind.SETTLEMENT, claim, settlement.message.t)
        street.serve_feed([claimed.encode()])  # and it puts the claim on its feed
        await street.pull_from_hostile()
        return charging, told, claimed

    street, (charging, told, claimed) = scenario_on(tmp_path, overclaim)
    dispute = charging.answer.message
    assert isinstance(dispute, p.Dispute) and dispute.reason is lie
    assert p.decode_frame(told[0], p.SessionAnswer).dispute == charging.answer  # the host was told
    assert street.honest.ledger.sizes()[key(street.honest)] == 2  # its credit hold, and the dispute on its feed
    assert street.honest.ledger.evidence() == [claimed.encode()]
    assert key(street.hostile) not in street.honest.ledger.sizes()  # the claim moved no money
    assert street.culprits_in_audit() == {(Rule(lie.value), key(street.hostile))}
    assert street.misconduct() == {(SESSION_PROTOCOL, lie): 1, (SYNC_PROTOCOL, lie): 1}


# --- the ledger: the hostile peer as a member ------------------------------------------------


def test_a_driver_signing_two_different_acks_for_one_settlement_is_named_by_the_audit(tmp_path):
    async def answer_twice(street):
        booking = await street.hostile.book(street.ad, START, END, 1_000)
        await street.clock.sleep_until(START - 30)
        charging = await street.hostile.charge(booking, timeout=30)
        first = charging.answer.message
        second = first.replace(t=first.t + 60)  # another ack of the same settlement: other bytes, other digest
        street.hostile.ledger.append(street.hostile.identity, [(EntryKind.ACK, second)], t=second.t)
        await street.pull_from_hostile()
        return charging

    street, charging = scenario_on(tmp_path, answer_twice, seconds=90, wallbox=True)
    assert isinstance(charging.answer.message, p.SettlementAck)  # the first ack stands
    assert street.honest.ledger.sizes()[key(street.hostile)] == 3  # its credit hold and both acks
    assert street.culprits_in_audit() == {(Rule.DOUBLE_ANSWER, key(street.hostile))}


def test_a_member_forking_its_own_feed_is_frozen_and_named(tmp_path):
    async def fork(street):
        now = int(street.clock())  # dated now: a ledger takes no entry dated ahead of its clock
        answer = p.SettlementAck(booking_id=bytes(32), t=now, settlement=bytes(32))
        branches = [hostile_entry(street, 0, p.GENESIS, EntryKind.ACK, answer.replace(t=now + i), now + i)
                    for i in range(2)]
        for branch in branches:  # one history to the honest node, then another
            street.serve_feed([branch.encode()])
            await street.pull_from_hostile()
        return branches

    street, branches = scenario_on(tmp_path, fork)
    assert street.honest.ledger.frauds() == [tuple(sorted(b.encode() for b in branches))]
    assert street.honest.ledger.state.feeds[key(street.hostile)].frozen
    assert street.neighbour.ledger.frauds() == street.honest.ledger.frauds()  # the proof travels on
    assert street.culprits_in_audit() == {(Rule.FORK, key(street.hostile))}
