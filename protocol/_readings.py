"""The packed form of a receipt chain: how a ledger entry carries a session's receipts.

Theory of operation (DESIGN.md, "Ledger": a settlement embeds its receipts): a chain of
signed MeterReceipts repeats in every receipt what the chain itself fixes: the booking
id, the seq, the previous receipt's digest, the signer, the envelope's keys (246 bytes
a receipt). Packed, a receipt is its reading and its signature only, `PACKED.size` = 76
bytes: t (8 bytes, big-endian), energy_wh (4), the host's signature (64).

`unpack_receipts` rebuilds the exact signed receipts from the booking id and the host's
key: the same messages, bodies and signatures, so the same digests, and the settlement's
`last_receipt` and the driver's own copies name them as before. Each signature is
verified as a decoded envelope's is (`Signed.assemble`): not again inside an object its
signer signed as a whole (`vouched_by`: a ledger entry by the host). Only a chain can be
packed (`chain_problem`): seq from 0, each naming the one before, all of one booking by
its host; anything else the packed form could not say, so it is refused when built.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from . import _codec
from ._envelope import Signed
from ._errors import DecodeError, Reason
from ._messages import GENESIS, MeterReceipt

PACKED = struct.Struct(">QI64s")  # t, energy_wh, signature
MAX_RECEIPTS = 2000


def chain_problem(receipts: Sequence[Signed[MeterReceipt]], booking_id: bytes, host: bytes) -> str | None:
    """Why `receipts` is not one booking's chain signed by its host, or None."""
    prev = GENESIS
    for seq, signed in enumerate(receipts):
        receipt = signed.message
        if signed.signer != host or receipt.booking_id != booking_id or receipt.seq != seq or receipt.prev != prev:
            return f"receipt {seq} is not the next of the booking host's chain"
        if receipt.t >= 1 << 64 or receipt.energy_wh >= 1 << 32:
            return f"receipt {seq} does not fit the packed form"
        prev = signed.digest
    return None


def pack_receipts(receipts: Sequence[Signed[MeterReceipt]]) -> bytes:
    """The packed form of a chain (`chain_problem` must have found none)."""
    return b"".join(PACKED.pack(r.message.t, r.message.energy_wh, r.signature) for r in receipts)


def unpack_receipts(data: bytes, booking_id: bytes, host: bytes) -> tuple[Signed[MeterReceipt], ...]:
    """The signed receipts `data` packs; DecodeError (or SignatureError) if it packs none."""
    count, rest = divmod(len(data), PACKED.size)
    if rest or not 1 <= count <= MAX_RECEIPTS:
        raise DecodeError(Reason.MALFORMED, f"packed receipts are 1 to {MAX_RECEIPTS} of {PACKED.size} bytes each")
    out: list[Signed[MeterReceipt]] = []
    prev = GENESIS
    for seq, (t, energy_wh, signature) in enumerate(PACKED.iter_unpack(data)):
        wire = {"t": t, "seq": seq, "prev": prev, "energy_wh": energy_wh, "booking_id": booking_id}  # key order
        signed = Signed.assemble(MeterReceipt.from_wire(wire), host, signature, _codec.encode(wire, checked=True))
        out.append(signed)
        prev = signed.digest
    return tuple(out)
