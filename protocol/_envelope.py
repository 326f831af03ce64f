"""Signed envelopes: a message, its exact signed bytes, the signer and the signature.

Theory of operation (DESIGN.md, "Canonical encoding and signatures"):

- The signature is Ed25519 over `DOMAIN || type || 0x00 || body`, where DOMAIN is
  `b"wattshare/v1\\0"`, `type` the registered message type name (ASCII, never contains
  NUL) and `body` the message's canonical CBOR. The domain keeps our signatures from
  ever meaning anything to another protocol; the type keeps a booking signature from
  being replayed as a settlement, even if two bodies happened to coincide.
- On the wire an envelope is the CBOR map `{type, body, signer, sig}` with `body` as a
  byte string: the signed bytes travel verbatim, nothing is re-encoded before checking.
- `Signed.decode` / `from_wire` verify before trusting: known type, 32-byte signer,
  64-byte signature, signature valid, body canonical and a valid record of that type,
  and, for messages that name their author (`AUTHOR`), the author is the signer.
- `digest` (SHA-256 of the envelope's encoding) names a signed object: booking ids,
  receipt chains and ledger entries refer to each other by it.
- `vouched_by(key)`: while decoding something that `key` signed as a whole (a ledger
  entry embedding its author's own receipts), envelopes by that same key inside it are
  not verified again: the outer signature already binds their bytes. Their signer
  field is still checked wherever a rule names one; envelopes by anyone else are
  always verified.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from nacl.exceptions import BadSignatureError

from . import _codec
from ._errors import DecodeError, InvalidValue, Reason, SignatureError
from ._identity import Identity, verify_key
from ._record import MESSAGE_TYPES, Message, require_keys

DOMAIN = b"wattshare/v1\0"
SIGNATURE_SIZE = 64
_ENVELOPE_KEYS = ["sig", "body", "type", "signer"]  # in key order

M = TypeVar("M", bound=Message, covariant=True)
N = TypeVar("N", bound=Message)
_vouched: ContextVar[bytes | None] = ContextVar("vouched", default=None)


@contextmanager
def vouched_by(signer: bytes) -> Iterator[None]:
    """Skip re-verifying `signer`'s envelopes nested in an object `signer` signed (see above)."""
    token = _vouched.set(signer)
    try:
        yield
    finally:
        _vouched.reset(token)


@functools.lru_cache(maxsize=1024)
def _head(major: int, length: int) -> bytes:
    """The shortest CBOR head of a major type and length (RFC 8949 section 3)."""
    if length < 24:
        return bytes([major << 5 | length])
    for marker, size in ((24, 1), (25, 2), (26, 4)):
        if length < 1 << (8 * size):
            return bytes([major << 5 | marker]) + length.to_bytes(size, "big")
    raise ValueError("an envelope part of 4 GiB or more")


def signing_input(type_name: str, body: bytes) -> bytes:
    """The exact bytes an envelope's signature covers."""
    return DOMAIN + type_name.encode("ascii") + b"\0" + body


@dataclasses.dataclass(frozen=True, slots=True)
class Signed(Generic[M]):
    """A message signed by `signer`; build with `sign`, parse with `Signed.decode`."""

    message: M
    signer: bytes
    signature: bytes
    body: bytes = dataclasses.field(repr=False)
    _encoded: bytes | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _digest: bytes | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def type(self) -> str:
        return self.message.TYPE

    def to_wire(self) -> dict[str, Any]:
        return {"sig": self.signature, "body": self.body, "type": self.type, "signer": self.signer}  # key order

    def encode(self) -> bytes:
        """The canonical envelope bytes (computed once: digests chain receipts and entries).

        Written directly: a map of four known keys in canonical order, which is exactly
        what `_codec.encode(self.to_wire())` gives (a test holds the two together)."""
        if self._encoded is None:
            kind = self.type.encode("ascii")
            data = b"".join((
                b"\xa4\x63sig", _head(2, len(self.signature)), self.signature,
                b"\x64body", _head(2, len(self.body)), self.body,
                b"\x64type", _head(3, len(kind)), kind,
                b"\x66signer", _head(2, len(self.signer)), self.signer,
            ))
            object.__setattr__(self, "_encoded", data)
        return self._encoded  # type: ignore[return-value]

    @property
    def digest(self) -> bytes:
        if self._digest is None:
            object.__setattr__(self, "_digest", hashlib.sha256(self.encode()).digest())
        return self._digest  # type: ignore[return-value]

    @staticmethod
    def wire_identity(value: Any) -> Any:
        """What names an envelope on the wire before it is parsed: its signature (a list
        holding one twice is refused unverified; see `_record`)."""
        return value.get("sig") if type(value) is dict and type(value.get("sig")) is bytes else id(value)

    @staticmethod
    def wire_accepts(value: Any, expect: builtins.type[Message] | None = None) -> bool:
        return isinstance(value, Signed) and (expect is None or isinstance(value.message, expect))

    @classmethod
    def from_wire(cls, value: Any, expect: builtins.type[M] | None = None) -> Signed[M]:
        if type(value) is not dict:
            raise DecodeError(Reason.MALFORMED, f"a signed envelope is a map of {_ENVELOPE_KEYS}")
        require_keys("signed envelope", value, _ENVELOPE_KEYS)
        type_name, body, signer, sig = value["type"], value["body"], value["signer"], value["sig"]
        if type(type_name) is not str or type(body) is not bytes:
            raise DecodeError(Reason.MALFORMED, "envelope type must be text and body bytes")
        message_cls = MESSAGE_TYPES.get(type_name)
        if message_cls is None:
            raise DecodeError(Reason.UNKNOWN_TYPE, f"unknown message type {type_name[:40]!r}")
        if expect is not None and not issubclass(message_cls, expect):
            raise DecodeError(Reason.UNEXPECTED_TYPE, f"expected {expect.TYPE}, got {type_name}")
        if type(signer) is not bytes or len(signer) != 32:
            raise DecodeError(Reason.MALFORMED, "signer must be a 32-byte Ed25519 key")
        if type(sig) is not bytes or len(sig) != SIGNATURE_SIZE:
            raise DecodeError(Reason.MALFORMED, "sig must be a 64-byte Ed25519 signature")
        _verify(type_name, body, signer, sig)
        message = message_cls.from_wire(_codec.decode(body, typed=True))
        author = getattr(message_cls, "AUTHOR", None)
        if author is not None and getattr(message, author) != signer:
            raise SignatureError(Reason.WRONG_SIGNER, f"{type_name} must be signed by its {author}")
        return cls(message=message, signer=signer, signature=sig, body=body)  # type: ignore[arg-type]

    @staticmethod
    def assemble(message: N, signer: bytes, signature: bytes, body: bytes | None = None) -> Signed[N]:
        """The envelope of `message` signed by `signer`, rebuilt from a compact stored form
        that keeps only the message's fields and the signature: verified as a decoded one
        is (unless vouched for). `body`, if given, must be `message.encode()`."""
        body = message.encode() if body is None else body
        _verify(message.TYPE, body, signer, signature)
        return Signed(message=message, signer=signer, signature=signature, body=body)

    @classmethod
    def decode(
        cls, data: bytes, expect: builtins.type[M] | None = None, *, max_size: int = _codec.MAX_MESSAGE_SIZE
    ) -> Signed[M]:
        """Parse and verify one envelope; raises a RemoteProtocolError subclass on any fault."""
        signed = cls.from_wire(_codec.decode(data, max_size=max_size, typed=True), expect)
        object.__setattr__(signed, "_encoded", data)  # canonical, so exactly what encode() gives
        return signed


def _verify(type_name: str, body: bytes, signer: bytes, signature: bytes) -> None:
    """SignatureError unless `signature` is `signer`'s over the body (see `vouched_by`)."""
    if signer != _vouched.get():
        try:
            verify_key(signer).verify(signing_input(type_name, body), signature)
        except BadSignatureError:
            raise SignatureError(Reason.BAD_SIGNATURE, f"{type_name} signature does not verify") from None


def sign(identity: Identity, message: N) -> Signed[N]:
    """Sign `message` as `identity`."""
    body = message.encode()
    author = getattr(type(message), "AUTHOR", None)
    if author is not None and getattr(message, author) != identity.public_key:
        raise InvalidValue(f"{message.TYPE} must be signed by its {author}, not {identity.peer_id}")
    signature = identity.sign(signing_input(message.TYPE, body))
    return Signed(message=message, signer=identity.public_key, signature=signature, body=body)
