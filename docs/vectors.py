"""Test vectors of the wire format (`vectors/*.json`), built from fixed keys by the code itself.

Every signed message type, every frame kind and the ledger's entry kinds get valid
examples with their exact bytes, the seed of the key that signed them (Ed25519 is
deterministic, so another implementation can sign the same bytes), the signing input
and digest, and what they decode to. Invalid examples carry the reason code (or ledger
rule) a conforming decoder must refuse them with: bad signatures, wrong signers, unknown
and unexpected types, non-canonical encodings, floats, tags, indefinite lengths, missing
and extra keys, oversize frames. The JSON form of a decoded value is written down in
`vectors/README.md`. Run it to rewrite the files; `--check` says which are stale
(`tests/test_vectors.py` holds the files to it and checks every vector):

    python docs/vectors.py          # rewrite vectors/*.json
    python docs/vectors.py --check  # exit 1 naming any stale file
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import cbor2

from wattshare import protocol as p
from wattshare.ledger import EntryKind, FeedHead, Hold, LedgerStore
from wattshare.ledger._accounts import AccountProof, AccountQuery
from wattshare.ledger._light import prove, sign_checkpoint
from wattshare.ledger._replication import Batch, FeedRange, FeedSize, Have, Want
from wattshare.protocol import Identity
from wattshare.protocol._envelope import signing_input
from wattshare.protocol._record import MESSAGE_TYPES
from wattshare.protocol._wire import FRAMES
from wattshare.testing import EPOCH, TZ, SampleWorld

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "vectors"
SAFE = 2**53  # integers a JSON number carries exactly in every language


def to_json(value: Any) -> Any:
    """The JSON form of a decoded CBOR value (see vectors/README.md)."""
    if type(value) is bytes:
        return {"$bytes": value.hex()}
    if type(value) is int and not -SAFE < value < SAFE:
        return {"$int": str(value)}
    if type(value) is list:
        return [to_json(v) for v in value]
    if type(value) is dict:
        return {k: to_json(v) for k, v in value.items()}
    return value


def _identity(world: SampleWorld, key: bytes) -> Identity:
    """The sample world's identity of the public `key`."""
    return next(i for i in [world.coop, world.treasurer, world.witness, *world.hosts, *world.drivers]
                if i.public_key == key)


def _valid_envelope(world: SampleWorld, name: str, signed: p.Signed[Any]) -> dict[str, Any]:
    data = signed.encode()
    return {
        "name": name, "type": signed.type, "seed": _identity(world, signed.signer).seed.hex(), "hex": data.hex(),
        "signing_input": signing_input(signed.type, signed.body).hex(), "digest": hashlib.sha256(data).hexdigest(),
        "body": to_json(cbor2.loads(signed.body)),
    }


class _Sample:
    """One of every message of a booking and its session, from a sample world."""

    def __init__(self) -> None:
        self.world = world = SampleWorld(seed=18, hosts=1, drivers=2)
        host, driver = world.hosts[0], world.drivers[0]
        start = EPOCH + 22 * 3600
        session = world.session(host, driver, start, hours=1)
        self.sealed = bytes(range(80))  # stands for a SealedBox (random by design): only its digest is signed
        self.confirmation = p.sign(host, session.booking.confirmation.message.replace(
            access_digest=p.access_digest(self.sealed)))
        booking = p.Booking(request=session.booking.request, confirmation=self.confirmation)
        self.session = session = dataclasses.replace(session, booking=booking)
        self.ad = p.sign(host, p.ChargerAd(
            host=host.public_key, charger_id="driveway", seq=1, expires=EPOCH + 6 * 86_400, geohash="u33dc0r",
            country="DEU", tz=TZ, connector=p.Connector.TYPE_2, max_power_w=11_000, tariff=world.tariff,
            terms=world.terms,
            availability=(p.WeeklyWindow(days=tuple(p.DayOfWeek), start="22:00", end="07:00"),),
        ))
        bid, t = booking.id, start
        self.rejection = p.sign(host, p.BookingRejection(booking_id=bid, reason=p.Reason.SLOT_TAKEN,
                                                         detail="another booking holds an overlapping window"))
        self.cancel = p.sign(driver, p.Cancel(booking_id=bid, t=t - 7200))
        self.no_show = p.sign(host, p.NoShow(booking_id=bid, t=t + 3600))
        self.start = p.sign(driver, p.StartRequest(booking_id=bid, t=t))
        self.stop = p.sign(driver, p.StopRequest(booking_id=bid, t=t + 3000))
        settled = session.settlement
        self.ack = p.sign(driver, p.SettlementAck(booking_id=bid, settlement=settled.digest, t=settled.message.t + 60))
        self.dispute = p.sign(driver, p.Dispute(booking_id=bid, settlement=settled.digest, t=settled.message.t + 60,
                                                reason=p.Reason.MISPRICED, detail="the meter read less"))
        founded = world.founding()
        self.entries = {
            "coop charter": founded[0], "admission": founded[1],
            "deposit": world.money(driver, 4_000, EPOCH + 60),
            "hold": world.entry(driver, EntryKind.HOLD, Hold(request=booking.request), start - 3600),
            "settlement": world.settlement_entry(session),
            "ack": world.ack_entry(session),
        }
        head = FeedHead(author=driver.public_key, size=3, root=bytes(range(32)), t=start + 7200)
        self.head = p.sign(driver, head)

    def envelopes(self) -> dict[str, p.Signed[Any]]:
        s = self.session
        return {
            "charger_ad": self.ad, "booking_request": s.booking.request, "booking_confirmation": self.confirmation,
            "booking_rejection": self.rejection, "cancel": self.cancel, "no_show": self.no_show,
            "start_request": self.start, "stop_request": self.stop, "meter_receipt": s.receipts[1],
            "settlement": s.settlement, "settlement_ack": self.ack, "dispute": self.dispute,
            "feed_head": self.head, "ledger_entry": self.entries["deposit"],
        }

    def account_proof(self) -> AccountProof:
        """The driver's account at a witness's checkpoint of a ledger of the sample entries."""
        world = self.world
        with tempfile.TemporaryDirectory() as folder:
            ledger = LedgerStore(Path(folder) / "ledger.db", world.coop.public_key, clock=world.clock)
            ledger.ingest([*(e.encode() for e in world.founded), *(e.encode() for e in self.entries.values())])
            assert world.charter is not None
            sign_checkpoint(ledger, world.witness, world.charter, int(world.clock()))
            proof = prove(ledger, world.drivers[0].public_key)
            ledger.close()
        assert proof is not None
        return proof

    def frames(self) -> dict[str, p.Record]:
        s, driver = self.session, self.world.drivers[0].public_key
        return {
            "error": p.ErrorReply(reason=p.Reason.RATE_LIMITED, detail="too many streams: wait a second"),
            "ad_request": p.AdRequest(), "ads": p.AdList(ads=(self.ad,)),
            "booking_offer": p.BookingOffer(request=s.booking.request),
            "booking_answer": p.BookingAnswer(confirmation=self.confirmation, access=self.sealed),
            "cancel_offer": p.CancelOffer(cancel=self.cancel), "cancel_answer": p.CancelAnswer(fee=200),
            "session_offer": p.SessionOffer(start=self.start), "session_update": p.SessionUpdate(receipt=s.receipts[0]),
            "stop_offer": p.StopOffer(stop=self.stop), "session_answer": p.SessionAnswer(ack=self.ack),
            "dial_back": p.DialBack(port=4001), "dialed_back": p.DialedBack(observed="127.0.0.1", reachable=True),
            "sync_have": Have(sizes=(FeedSize(author=driver, size=3, root=self.head.message.root),),
                              heads=(self.head,)),
            "sync_want": Want(ranges=(FeedRange(author=driver, start=0, end=3),)),
            "sync_batch": Batch(entries=(self.entries["deposit"].encode(),)),
            "account_query": AccountQuery(member=driver), "account_proof": self.account_proof(),
        }


def _resigned(world: SampleWorld, signed: p.Signed[Any], body: bytes, type_name: str | None = None) -> bytes:
    """An envelope of `body` (any bytes), validly signed by `signed`'s signer."""
    type_name = type_name or signed.type
    sig = _identity(world, signed.signer).sign(signing_input(type_name, body))
    return cbor2.dumps({"sig": sig, "body": body, "type": type_name, "signer": signed.signer})


def _invalid(sample: _Sample) -> list[dict[str, Any]]:
    world, request = sample.world, sample.session.booking.request
    wire = request.message.to_wire()
    body = request.body
    flipped = bytearray(request.signature)
    flipped[0] ^= 1

    def case(name: str, data: bytes, reason: p.Reason, expect: str = "booking_request", decoder: str = "envelope") -> dict:
        return {"name": name, "decoder": decoder, "expect": expect, "hex": data.hex(), "reason": str(reason)}

    def body_case(name: str, value: Any, reason: p.Reason, *, raw: bytes | None = None) -> dict:
        return case(name, _resigned(world, request, raw if raw is not None else cbor2.dumps(value, canonical=True)), reason)

    missing = {k: v for k, v in wire.items() if k != "nonce"}
    extra = {**wire, "zz": 1}
    reordered = dict(sorted(wire.items()))
    omitted = copy.deepcopy(wire)
    del omitted["tariff"]["elements"][0]["restrictions"]["max_wh"]
    as_float = {**wire, "spend_cap": float(wire["spend_cap"])}
    long_head = body.replace(b"\x69spend_cap\x19", b"\x69spend_cap\x1a\x00\x00", 1)
    stranger = world.drivers[1]
    envelope = request.to_wire()
    return [
        case("a signature with one bit flipped", cbor2.dumps({**envelope, "sig": bytes(flipped)}), p.Reason.BAD_SIGNATURE),
        case("a valid signature by a key that is not the request's driver",
             _resigned(world, request, request.message.replace(driver=stranger.public_key).encode()),
             p.Reason.WRONG_SIGNER),
        case("unknown message type", _resigned(world, request, body, "booking_wish"), p.Reason.UNKNOWN_TYPE),
        case("a charger ad where a request is expected", sample.ad.encode(), p.Reason.UNEXPECTED_TYPE),
        case("envelope keys in alphabetical order", cbor2.dumps(dict(sorted(envelope.items()))), p.Reason.NON_CANONICAL),
        case("bytes after the envelope", request.encode() + b"\x00", p.Reason.NON_CANONICAL),
        case("envelope as an indefinite-length map", b"\xbf" + request.encode()[1:] + b"\xff", p.Reason.MALFORMED),
        case("envelope inside a tag", b"\xd8\x18" + request.encode(), p.Reason.MALFORMED),
        body_case("a body missing a key", missing, p.Reason.MALFORMED),
        body_case("a body with an unknown key", extra, p.Reason.MALFORMED),
        body_case("body keys sorted alphabetically, not length-first", None, p.Reason.NON_CANONICAL,
                  raw=cbor2.dumps(reordered)),
        body_case("an integer written as a float", as_float, p.Reason.MALFORMED),
        body_case("an integer in a longer head than it needs", None, p.Reason.NON_CANONICAL, raw=long_head),
        body_case("an optional field (a tariff restriction's max_wh) omitted instead of null", omitted, p.Reason.MALFORMED),
        case("a frame of two kinds", cbor2.dumps({"ad_request": {}, "dial_back": {"port": 1}}, canonical=True),
             p.Reason.MALFORMED, "ad_request", "frame"),
        case("an unknown frame kind", cbor2.dumps({"ad_wish": {}}, canonical=True), p.Reason.UNKNOWN_TYPE, "ad_request", "frame"),
        case("a booking offer where an ad request is expected",
             p.encode_frame(p.BookingOffer(request=request)), p.Reason.UNEXPECTED_TYPE, "ad_request", "frame"),
        case("a length prefix above the 64 KiB cap (65,537)", b"\x81\x80\x04", p.Reason.OVERSIZE, "ad_request", "stream"),
        case("a length prefix longer than the cap could need", b"\x80\x80\x80\x01", p.Reason.OVERSIZE, "ad_request",
             "stream"),
        case("a length prefix that is not minimal", b"\x82\x00" + bytes(2), p.Reason.MALFORMED, "ad_request", "stream"),
        case("a reason code that does not exist", cbor2.dumps({"error": {"reason": "bored", "detail": ""}}, canonical=True),
             p.Reason.MALFORMED, "ad_request", "frame"),
    ]


def _entries(sample: _Sample) -> list[dict[str, Any]]:
    out = [{**_valid_envelope(sample.world, name, signed), "kind": str(signed.message.kind)}
           for name, signed in sample.entries.items()]
    lie = sample.world.overclaim_entry(sample.session, 100)
    out.append({**_valid_envelope(sample.world, "a settlement claiming more than its receipts price to", lie),
                "kind": str(lie.message.kind), "rule": "mispriced"})
    return out


def build() -> dict[str, Any]:
    """Every vector file's content, by file name."""
    sample = _Sample()
    envelopes = sample.envelopes()
    assert set(envelopes) == set(MESSAGE_TYPES), set(MESSAGE_TYPES) ^ set(envelopes)
    frames = sample.frames()
    assert set(frames) == set(FRAMES), set(FRAMES) ^ set(frames)
    return {
        "envelopes.json": [_valid_envelope(sample.world, name, signed) for name, signed in envelopes.items()],
        "frames.json": [{"name": kind, "kind": kind, "hex": p.encode_frame(frame).hex(),
                         "value": to_json(cbor2.loads(p.encode_frame(frame)))} for kind, frame in frames.items()],
        "invalid.json": _invalid(sample),
        "entries.json": _entries(sample),
    }


def render(content: Any) -> str:
    return json.dumps(content, indent=1) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say which vector files are stale")
    args = parser.parse_args()
    files = {name: render(content) for name, content in build().items()}
    stale = [name for name, text in files.items()
             if not (VECTORS / name).exists() or (VECTORS / name).read_text() != text]
    if args.check:
        if stale:
            sys.exit(f"vectors are stale ({', '.join(stale)}): run python docs/vectors.py")
        return
    VECTORS.mkdir(exist_ok=True)
    for name in stale:
        (VECTORS / name).write_text(files[name])
    print(f"vectors: {len(stale)} file(s) rewritten{': ' + ', '.join(stale) if stale else ''}")


if __name__ == "__main__":
    main()
