"""Signed messages: exact bytes, round trips, tamper and replay refusals, the double-signed booking."""

import hashlib

import cbor2
import pytest
from fixtures import DRIVER, HOST, SEALED_ACCESS, STRANGER, confirm, make_ad, make_booking, make_request
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey
from strategies import message_strategies, messages

from wattshare import protocol as p

PROTOCOL_TYPES = {name: cls for name, cls in p.MESSAGE_TYPES.items() if cls.__module__.startswith("wattshare.protocol")}
RFC8032 = p.Identity(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
BOOKING_ID = bytes(range(32))


def test_known_answer_start_request():
    signed = p.sign(RFC8032, p.StartRequest(booking_id=BOOKING_ID, t=1767225600))
    # Body by hand: map(2), "t" (sorts first: shorter key) -> uint32, "booking_id" -> bytes(32)
    body = bytes.fromhex("a2" "6174" "1a6955b900" "6a626f6f6b696e675f6964" "5820") + BOOKING_ID
    assert signed.body == body
    preimage = b"wattshare/v1\0" + b"start_request\0" + body
    assert p.signing_input("start_request", body) == preimage
    VerifyKey(RFC8032.public_key).verify(preimage, signed.signature)  # independent check
    assert signed.signature.hex() == (
        "dcb7c4e7ea6dd95f44e62d8855713a55a44a250414593e4e0d368c8212eaadd9"
        "a107257a33fa02ef4bf9d191327eacec2fabd9acc58f19085660c0ae5f4d4e03"
    )
    # Envelope by hand: map(4) with keys "sig", "body", "type", "signer" in canonical order
    envelope = (
        bytes.fromhex("a4" "63736967" "5840") + signed.signature
        + bytes.fromhex("64626f6479" "5835") + body
        + bytes.fromhex("6474797065" "6d") + b"start_request"
        + bytes.fromhex("667369676e6572" "5820") + RFC8032.public_key
    )
    assert signed.encode() == envelope
    assert signed.digest == hashlib.sha256(envelope).digest()
    assert p.Signed.decode(envelope) == signed


def test_strategies_cover_every_message_type():
    assert set(message_strategies(HOST.public_key)) == set(PROTOCOL_TYPES.values())


@pytest.mark.parametrize("kind", sorted(PROTOCOL_TYPES))
def test_every_message_type_round_trips(kind):
    cls = PROTOCOL_TYPES[kind]

    @settings(max_examples=25)
    @given(message_strategies(DRIVER.public_key)[cls])
    def round_trip(message):
        signed = p.sign(DRIVER, message)
        assert signed.encode() == p.encode_cbor(signed.to_wire())  # the direct writer is canonical CBOR
        assert signed.body == p.encode_cbor(message.to_wire())  # a record's maps come in canonical key order
        again = p.Signed.decode(signed.encode(), cls)
        assert again.message == message
        assert again == signed
        assert type(message).decode(message.encode()) == message

    round_trip()


@settings(max_examples=150)
@given(messages(DRIVER.public_key), st.data())
def test_any_single_byte_change_fails(message, data):
    encoded = p.sign(DRIVER, message).encode()
    index = data.draw(st.integers(0, len(encoded) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = encoded[:index] + bytes([encoded[index] ^ flip]) + encoded[index + 1 :]
    with pytest.raises(p.RemoteProtocolError):
        p.Signed.decode(tampered)


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_envelope_decoder(data):
    with pytest.raises(p.RemoteProtocolError):
        p.Signed.decode(data)


def forge(type_name: str, body: bytes, signer: p.Identity, signature: bytes | None = None) -> bytes:
    sig = signature if signature is not None else signer.sign(p.signing_input(type_name, body))
    return p.encode_cbor({"type": type_name, "body": body, "signer": signer.public_key, "sig": sig})


def test_start_signature_cannot_be_replayed_as_a_stop():
    start = p.sign(DRIVER, p.StartRequest(booking_id=BOOKING_ID, t=100))
    assert p.StopRequest.decode(start.body) == p.StopRequest(booking_id=BOOKING_ID, t=100)  # same shape
    with pytest.raises(p.SignatureError) as caught:
        p.Signed.decode(forge("stop_request", start.body, DRIVER, start.signature))
    assert caught.value.reason is p.Reason.BAD_SIGNATURE


def test_booking_signature_cannot_be_replayed_as_a_settlement():
    request = make_request()
    with pytest.raises(p.SignatureError) as caught:
        p.Signed.decode(forge("settlement", request.body, DRIVER, request.signature))
    assert caught.value.reason is p.Reason.BAD_SIGNATURE


def test_signature_without_the_domain_is_refused():
    body = p.StartRequest(booking_id=BOOKING_ID, t=5).encode()
    with pytest.raises(p.SignatureError):
        p.Signed.decode(forge("start_request", body, DRIVER, DRIVER.sign(body)))


def test_ad_signed_by_another_key_than_its_host():
    ad = make_ad()  # host is HOST
    with pytest.raises(p.InvalidValue):
        p.sign(STRANGER, ad)
    with pytest.raises(p.SignatureError) as caught:
        p.Signed.decode(forge("charger_ad", ad.encode(), STRANGER))
    assert caught.value.reason is p.Reason.WRONG_SIGNER


def test_unknown_and_unexpected_types():
    body = p.StartRequest(booking_id=BOOKING_ID, t=5).encode()
    with pytest.raises(p.DecodeError) as caught:
        p.Signed.decode(forge("teleport", body, DRIVER))
    assert caught.value.reason is p.Reason.UNKNOWN_TYPE
    signed = p.sign(DRIVER, p.StartRequest(booking_id=BOOKING_ID, t=5))
    with pytest.raises(p.DecodeError) as caught:
        p.Signed.decode(signed.encode(), p.Settlement)
    assert caught.value.reason is p.Reason.UNEXPECTED_TYPE
    dispute = p.sign(DRIVER, p.Dispute(booking_id=BOOKING_ID, settlement=BOOKING_ID, t=5, reason=p.Reason.MISPRICED))
    with pytest.raises(p.DecodeError) as caught:  # siblings share a base, never pass for each other
        p.Signed.decode(dispute.encode(), p.SettlementAck)
    assert caught.value.reason is p.Reason.UNEXPECTED_TYPE


@pytest.mark.parametrize(
    "wire, fragment",
    [
        ({"booking_id": BOOKING_ID}, "missing ['t']"),
        ({"booking_id": BOOKING_ID, "t": 1, "x": 0}, "unknown ['x']"),
        ({"booking_id": BOOKING_ID, "t": "1"}, "StartRequest.t: expected int"),
        ({"booking_id": BOOKING_ID, "t": True}, "StartRequest.t: expected int"),
        ({"booking_id": BOOKING_ID, "t": 1.5}, "floats and simple values other than false, true and null"),
        ({"booking_id": BOOKING_ID, "t": -1}, "t must be"),
        ({"booking_id": b"short", "t": 1}, "booking_id must have length"),
        ([1, 2], "expected a map"),
    ],
)
def test_malformed_bodies_name_the_field(wire, fragment):
    with pytest.raises(p.DecodeError, match=fragment.replace("[", r"\[").replace("]", r"\]")) as caught:
        p.StartRequest.decode(cbor2.dumps(wire, canonical=True))  # cbor2 directly: it also writes floats
    assert caught.value.reason is p.Reason.MALFORMED


@pytest.mark.parametrize("keys", [["t", "booking_id"], ["booking_id", "t"]])
def test_a_record_or_envelope_with_its_keys_in_another_order_is_not_canonical(keys):
    """Key order is checked on the parsed map (cbor2 keeps the order of the bytes)."""
    start = p.StartRequest(booking_id=BOOKING_ID, t=5)
    wire = start.to_wire()
    shuffled = cbor2.dumps({key: wire[key] for key in keys})
    if shuffled == start.encode():
        assert p.StartRequest.decode(shuffled) == start
        return
    with pytest.raises(p.DecodeError) as caught:
        p.StartRequest.decode(shuffled)
    assert caught.value.reason is p.Reason.NON_CANONICAL
    envelope = p.sign(DRIVER, start).to_wire()
    with pytest.raises(p.DecodeError) as caught:
        p.Signed.decode(cbor2.dumps(dict(reversed(envelope.items()))))
    assert caught.value.reason is p.Reason.NON_CANONICAL


@pytest.mark.parametrize(
    "change",
    [
        {"geohash": "u33dc0"},  # precision 6 would reveal less, but the wire format is fixed at 7
        {"geohash": "u33dc0a"},  # 'a' is not a geohash character
        {"tz": "Mars/Olympus"},
        {"max_power_w": 0},
        {"seq": -1},
        {"charger_id": ""},
        {"host": b"\x01" * 31},
        {"notes": "x" * 501},
    ],
)
def test_invalid_ads_cannot_be_built(change):
    with pytest.raises(p.InvalidValue):
        make_ad(**change)


def test_type_errors_at_construction_are_local():
    with pytest.raises(p.InvalidValue, match="expected int"):
        p.StartRequest(booking_id=BOOKING_ID, t=1.5)
    with pytest.raises(p.InvalidValue, match="expected tuple"):
        make_ad(availability=[])


def test_booking_is_signed_by_both_and_round_trips():
    booking = make_booking()
    assert booking.request.signer == DRIVER.public_key
    assert booking.confirmation.signer == HOST.public_key
    assert booking.id == booking.request.digest == booking.confirmation.message.booking_id
    assert p.Booking.decode(booking.encode()) == booking
    assert booking.confirmation.message.access_digest == p.access_digest(SEALED_ACCESS)
    assert p.open_access(DRIVER, SEALED_ACCESS) == p.AccessInfo(address="12 Acacia Avenue", code="4711")
    assert b"Acacia" not in booking.encode() and SEALED_ACCESS not in booking.encode()  # only its digest
    with pytest.raises(p.DecodeError):
        p.open_access(STRANGER, SEALED_ACCESS)


def test_the_sealed_access_travels_beside_the_confirmation_and_must_match_it():
    booking = make_booking()
    answer = p.BookingAnswer(confirmation=booking.confirmation, access=SEALED_ACCESS)
    assert p.decode_frame(p.encode_frame(answer), p.BookingAnswer) == answer
    other = p.seal_access(DRIVER.public_key, p.AccessInfo(address="13 Acacia Avenue", code="4711"))
    wire = p.encode_frame(answer).replace(SEALED_ACCESS, other)  # a blob the host did not sign
    with pytest.raises(p.DecodeError, match="not the one the confirmation signs"):
        p.decode_frame(wire, p.BookingAnswer)
    with pytest.raises(p.InvalidValue):
        p.BookingAnswer(confirmation=booking.confirmation)  # a confirmation without its access


def test_booking_parts_must_belong_together():
    request, other = make_request(), make_request(nonce=b"\x01" * 16)
    with pytest.raises(p.InvalidValue, match="another request"):
        p.Booking(request=request, confirmation=confirm(other))
    by_stranger = p.sign(STRANGER, confirm(request).message)
    with pytest.raises(p.InvalidValue, match="signed by the host"):
        p.Booking(request=request, confirmation=by_stranger)


def test_tampered_inner_signature_of_a_booking_is_refused():
    booking = make_booking()
    wire = booking.to_wire()
    wire["request"]["sig"] = bytes(64)
    with pytest.raises(p.SignatureError, match="signature does not verify"):
        p.Booking.decode(p.encode_cbor(wire))


def test_vouched_signer_is_not_reverified_but_others_are():
    start = p.sign(DRIVER, p.StartRequest(booking_id=BOOKING_ID, t=5))
    forged = p.encode_cbor({**start.to_wire(), "sig": bytes(64)})
    with pytest.raises(p.SignatureError):
        p.Signed.decode(forged)
    with p.vouched_by(HOST.public_key), pytest.raises(p.SignatureError):
        p.Signed.decode(forged)
    with p.vouched_by(DRIVER.public_key):
        assert p.Signed.decode(forged).message == start.message
    with pytest.raises(p.SignatureError):  # the context ended
        p.Signed.decode(forged)


@pytest.mark.parametrize("reason", [["slot_taken"], {"a": 1}, 5, "no_such_reason"])
def test_enum_fields_refuse_any_other_value(reason):
    with pytest.raises(p.DecodeError) as caught:
        p.ErrorReply.decode(cbor2.dumps({"reason": reason, "detail": ""}, canonical=True))
    assert caught.value.reason is p.Reason.MALFORMED
