"""Identities: RFC 8032 known answers, libp2p peer ids, key files at 0600, sealed boxes."""

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattshare.protocol import (
    DecodeError,
    Identity,
    InvalidValue,
    KeyFileError,
    peer_id,
    public_key_from_peer_id,
    seal_to,
    write_private,
)

RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_EMPTY_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)
PEER_ID = "12D3KooWQK1wnefoLrcVHbbnf5tLzbopUd3K3bFAoJpA7YJgL5pV"


def test_rfc8032_test_1():
    identity = Identity(RFC8032_SEED)
    assert identity.public_key == RFC8032_PUBLIC
    assert identity.sign(b"") == RFC8032_EMPTY_SIG


def test_fixed_seed_gives_fixed_peer_id():
    assert Identity(RFC8032_SEED).peer_id == PEER_ID
    assert public_key_from_peer_id(PEER_ID) == RFC8032_PUBLIC


@given(st.binary(min_size=32, max_size=32))
def test_peer_id_matches_py_libp2p(seed):
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.peer.id import ID

    ours = Identity(seed)
    theirs = ID.from_pubkey(Ed25519PrivateKey.new(seed).get_public_key())
    assert ours.peer_id == theirs.to_base58()
    assert public_key_from_peer_id(theirs.to_base58()) == ours.public_key


@pytest.mark.parametrize(
    "text",
    [
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # an RSA-style sha256 peer id
        "12D3KooW0",  # '0' is not base58
        "",
        "12D3KooWQK1wnefoLrcVHbbnf5tLzbopUd3K3bFAoJpA7YJgL5p",  # one character short
    ],
)
def test_not_an_ed25519_peer_id(text):
    with pytest.raises(DecodeError):
        public_key_from_peer_id(text)


def test_bad_seed_and_key_lengths():
    with pytest.raises(InvalidValue):
        Identity(b"short")
    with pytest.raises(InvalidValue):
        peer_id(b"\x01" * 31)


def test_key_file_round_trip_at_mode_0600(tmp_path):
    identity = Identity.generate()
    path = tmp_path / "keys" / "node.key"
    identity.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Identity.load(path).public_key == identity.public_key
    assert not (tmp_path / "keys" / "node.key.tmp").exists()


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "node.key"
    Identity.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        Identity.load(path)


@pytest.mark.parametrize("content", ["", "zz" * 32, "ab" * 31])
def test_malformed_key_file(tmp_path, content):
    path = tmp_path / "node.key"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="32-byte hex seed"):
        Identity.load(path)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read"):
        Identity.load(tmp_path / "absent.key")


def test_sealed_box_opens_only_for_its_recipient():
    driver, other = Identity.generate(), Identity.generate()
    sealed = seal_to(driver.public_key, b"12 Acacia Avenue, code 4711")
    assert b"Acacia" not in sealed
    assert driver.open_sealed(sealed) == b"12 Acacia Avenue, code 4711"
    with pytest.raises(DecodeError):
        other.open_sealed(sealed)


def test_private_files_are_owner_only_from_their_first_byte_whatever_the_umask(tmp_path):
    path = tmp_path / "home" / "config.toml"
    path.parent.mkdir()
    path.write_text("old = 1\n")
    path.chmod(0o644)  # as a config written by an older version was
    old_umask = os.umask(0)
    try:
        created = []
        real_open = os.open

        def watch(name, flags, mode=0o777, **kw):
            fd = real_open(name, flags, mode, **kw)
            created.append((str(name), stat.S_IMODE(os.fstat(fd).st_mode)))  # the mode it is born with
            return fd

        os.open = watch
        try:
            write_private(path, b"address = 'Kollwitzstr. 1'\n")
        finally:
            os.open = real_open
    finally:
        os.umask(old_umask)
    assert created == [(str(path) + ".tmp", 0o600)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"address = 'Kollwitzstr. 1'\n"
