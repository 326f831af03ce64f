"""Identities: one Ed25519 key per participant, its libp2p peer id, and sealed boxes.

Theory of operation (DESIGN.md, "Identity"):

- A participant (host, driver, co-op) is its 32-byte Ed25519 public key. The same key
  signs bookings, receipts and ledger entries and is the libp2p identity, so "who
  signed this" and "who is on the other end of the stream" are one fact.
- The libp2p peer id of an Ed25519 key is the identity multihash (code 0x00, length
  36) of the protobuf `PublicKey{Type: Ed25519 (1), Data: key}`, written in base58btc
  ("12D3KooW..."). It is computed here without importing libp2p (this package is
  sans-IO); a test checks it against py-libp2p's own `ID.from_pubkey`.
- The secret is the 32-byte seed, stored hex-encoded in a file created with mode 0600
  and refused on load if group or others can read it (as ssh does).
- Access information is sealed to a driver with a NaCl SealedBox on the X25519 form of
  the driver's Ed25519 key: only that driver can open it, and the host learns nothing
  new from the driver's side.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.public import SealedBox
from nacl.signing import SigningKey, VerifyKey

from ._errors import DecodeError, InvalidValue, LocalProtocolError, Reason

SEED_SIZE = 32
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])  # identity mh + protobuf head
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


class KeyFileError(LocalProtocolError):
    """A key file that is missing, unreadable, malformed or too widely readable."""


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, digit = divmod(number, 58)
        out.append(_B58[digit])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise DecodeError(Reason.MALFORMED, f"{char!r} is not a base58 character")
        number = number * 58 + _B58_INDEX[char]
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * zeros + body


def peer_id(public_key: bytes) -> str:
    """The libp2p peer id string ("12D3KooW...") of an Ed25519 public key."""
    if len(public_key) != 32:
        raise InvalidValue(f"an Ed25519 public key has 32 bytes, got {len(public_key)}")
    return _b58encode(_PEER_ID_PREFIX + public_key)


def public_key_from_peer_id(text: str) -> bytes:
    """Recover the Ed25519 public key from a peer id string; DecodeError if it is not one."""
    raw = _b58decode(text)
    if len(raw) != len(_PEER_ID_PREFIX) + 32 or not raw.startswith(_PEER_ID_PREFIX):
        raise DecodeError(Reason.MALFORMED, f"{text!r} is not an Ed25519 libp2p peer id")
    return raw[len(_PEER_ID_PREFIX) :]


@functools.lru_cache(maxsize=4096)
def verify_key(public_key: bytes) -> VerifyKey:
    """A pynacl VerifyKey; DecodeError for bytes that are not a usable Ed25519 key."""
    try:
        return VerifyKey(public_key)
    except (CryptoError, ValueError, TypeError) as exc:
        raise DecodeError(Reason.MALFORMED, f"not an Ed25519 public key: {exc}") from None


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, readable by the owner only from its first byte: a file
    made mode 0600 (whatever the umask), written, synced, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Identity:
    """A participant's signing key, with its public key and peer id."""

    __slots__ = ("_signing_key", "public_key", "peer_id")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise InvalidValue(f"an Ed25519 seed has {SEED_SIZE} bytes, got {len(seed)}")
        self._signing_key = SigningKey(seed)
        self.public_key: bytes = bytes(self._signing_key.verify_key)
        self.peer_id: str = peer_id(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(SEED_SIZE))

    @property
    def seed(self) -> bytes:
        return bytes(self._signing_key)

    def sign(self, data: bytes) -> bytes:
        """Raw 64-byte Ed25519 signature of `data` (callers add the domain, see _envelope)."""
        return self._signing_key.sign(data).signature

    def save(self, path: Path) -> None:
        """Write the seed to a new file readable by the owner only (mode 0600)."""
        write_private(Path(path), self.seed.hex().encode() + b"\n")

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key saved by `save`; KeyFileError says what is wrong and how to fix it."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip()
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"key file {path} is accessible by other users; run: chmod 600 {path}"
            )
        try:
            seed = bytes.fromhex(text)
        except ValueError:
            seed = b""
        if len(seed) != SEED_SIZE:
            raise KeyFileError(f"key file {path} does not hold a 32-byte hex seed")
        return cls(seed)

    def open_sealed(self, sealed: bytes) -> bytes:
        """Open a SealedBox made for this identity by `seal_to`."""
        box = SealedBox(self._signing_key.to_curve25519_private_key())
        try:
            return box.decrypt(sealed)
        except CryptoError:
            raise DecodeError(Reason.MALFORMED, "sealed data does not open with this key") from None

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"


def seal_to(public_key: bytes, plaintext: bytes) -> bytes:
    """Encrypt `plaintext` so only the holder of `public_key`'s secret can read it."""
    return SealedBox(verify_key(public_key).to_curve25519_public_key()).encrypt(plaintext)
