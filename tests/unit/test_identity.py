"""engine.crypto.identity: identities, key files, peer ids (cross-checked with py-libp2p)."""

from __future__ import annotations

import ctypes
import os
import random
import stat
import warnings
from pathlib import Path
from types import SimpleNamespace

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from engine.crypto.identity import (
    Identity,
    PeerId,
    decode_public_key_proto,
    encode_public_key_proto,
)
from engine.errors import (
    CryptoError,
    InsecureKeyFileError,
    InvalidPeerIdError,
    InvalidPublicKeyError,
    KeyFileError,
)


@pytest.fixture(scope="module")
def libp2p() -> SimpleNamespace:
    """py-libp2p's key and peer id classes (test-only dependency, imported lazily).

    py-libp2p imports deprecated websockets modules at import time; that is its business,
    not a failure of ours, so its import-time warnings are silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from libp2p.crypto.ed25519 import Ed25519PrivateKey as LibP2PKey
        from libp2p.crypto.serialization import deserialize_public_key
        from libp2p.peer.id import ID
    return SimpleNamespace(Key=LibP2PKey, ID=ID, deserialize_public_key=deserialize_public_key)


# -- peer ids -----------------------------------------------------------------------------------


def test_peer_ids_equal_py_libp2p(libp2p: SimpleNamespace) -> None:
    rng = random.Random(1234)
    for _ in range(200):
        seed = rng.randbytes(32)
        ours = Identity.from_seed(seed)
        theirs = libp2p.Key.new(seed)
        public = theirs.get_public_key()
        assert ours.public_key == public.to_bytes()
        assert encode_public_key_proto(ours.public_key) == public.serialize()
        their_id = libp2p.ID.from_pubkey(public)
        assert ours.peer_id.to_string() == their_id.to_base58()
        assert ours.peer_id.multihash == their_id.to_bytes()
        # And back: the key embedded in the id is the same key.
        assert PeerId.from_string(their_id.to_base58()).public_key == public.to_bytes()


def test_py_libp2p_verifies_our_signatures(libp2p: SimpleNamespace) -> None:
    ident = Identity.generate()
    public = libp2p.deserialize_public_key(encode_public_key_proto(ident.public_key))
    assert public.verify(b"data", ident.sign(b"data"))
    assert not public.verify(b"other", ident.sign(b"data"))


def test_key_file_written_by_py_libp2p_loads(libp2p: SimpleNamespace, tmp_path: Path) -> None:
    theirs = libp2p.Key.new(bytes(range(32)))
    path = tmp_path / "py-libp2p.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(theirs.serialize())  # PrivateKey{Type: Ed25519, Data: seed (32 bytes)}
    ours = Identity.load(path)
    assert ours.public_key == theirs.get_public_key().to_bytes()
    assert ours.peer_id.to_string() == libp2p.ID.from_pubkey(theirs.get_public_key()).to_base58()


def test_known_peer_id() -> None:
    # RFC 8032 TEST 1 key (also the first wire vector).
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    peer_id = Identity.from_seed(seed).peer_id
    assert str(peer_id) == "12D3KooWQK1wnefoLrcVHbbnf5tLzbopUd3K3bFAoJpA7YJgL5pV"
    assert repr(peer_id) == "PeerId('12D3KooWQK1wnefoLrcVHbbnf5tLzbopUd3K3bFAoJpA7YJgL5pV')"


def test_peer_id_round_trips() -> None:
    ident = Identity.generate()
    text = ident.peer_id.to_string()
    assert text.startswith("12D3KooW")
    assert PeerId.from_string(text) == ident.peer_id
    assert PeerId.from_bytes(ident.peer_id.multihash) == ident.peer_id
    assert hash(PeerId.from_string(text)) == hash(ident.peer_id)
    assert PeerId.from_public_key(ident.public_key) == ident.peer_id


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x" * 200,
        "0OIl",  # not base58
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # sha256 multihash (RSA-era id)
        "12D3KooWQK1wnefoLrcVHbbnf5tLzbopUd3K3bFAoJpA7YJgL5p",  # truncated
        "1",
    ],
)
def test_invalid_peer_ids(text: str) -> None:
    with pytest.raises(InvalidPeerIdError) as info:
        PeerId.from_string(text)
    assert info.value.code == "invalid_peer_id"


def test_peer_id_from_non_string() -> None:
    with pytest.raises(InvalidPeerIdError):
        PeerId.from_string(b"12D3KooW")  # type: ignore[arg-type]


def test_public_key_proto() -> None:
    raw = Identity.generate().public_key
    proto = encode_public_key_proto(raw)
    assert proto[:4] == b"\x08\x01\x12\x20"
    assert decode_public_key_proto(proto) == raw
    with pytest.raises(InvalidPublicKeyError):
        encode_public_key_proto(raw[:31])
    for bad in (proto[:-1], b"\x08\x00" + proto[2:], proto + b"\x00", b""):
        with pytest.raises(InvalidPublicKeyError):
            decode_public_key_proto(bad)


def test_signatures() -> None:
    ident = Identity.generate()
    signature = ident.sign(b"message")
    assert ident.peer_id.verify(signature, b"message")
    assert not ident.peer_id.verify(signature, b"massage")
    assert not ident.peer_id.verify(b"\x00" * 64, b"message")
    assert not Identity.generate().peer_id.verify(signature, b"message")
    # RFC 8032 sec. 7.1 TEST 1: empty message.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert Identity.from_seed(seed).sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_identity_matches_cryptography() -> None:
    seed = os.urandom(32)
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert Identity.from_seed(seed).public_key == expected


def test_close_zeroes_seed() -> None:
    ident = Identity.generate()
    address = ident.seed.buffer_address()
    assert ctypes.string_at(address, 32) != bytes(32)
    ident.close()
    assert ctypes.string_at(address, 32) == bytes(32)


def test_closed_identity_refuses_to_sign() -> None:
    with Identity.generate() as ident:
        assert not ident.closed
        assert "closed" not in repr(ident)
        assert str(ident.peer_id) in repr(ident)
    assert ident.closed
    assert repr(ident).endswith(" closed>")
    with pytest.raises(CryptoError, match="closed"):
        ident.sign(b"x")
    ident.close()  # idempotent
    assert ident.peer_id.to_string().startswith("12D3KooW")  # public parts stay usable


def test_bad_seed_length() -> None:
    with pytest.raises(KeyFileError):
        Identity(b"\x01" * 31)


# -- key files ------------------------------------------------------------------------------------


def test_save_writes_0600_and_round_trips(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "sub" / "identity.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the file's mode
    try:
        ident.save(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert len(data) == 68  # go-libp2p format: PrivateKey{Ed25519, seed || public key}
    assert data[:4] == b"\x08\x01\x12\x40"
    assert data[4:36] == ident.seed.reveal()
    assert data[36:] == ident.public_key
    loaded = Identity.load(path)
    assert loaded.peer_id == ident.peer_id
    assert loaded.seed == ident.seed
    assert not list(tmp_path.glob("sub/.*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o070, 0o601])
def test_loading_group_or_world_accessible_key_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "identity.key"
    Identity.generate().save(path)
    path.chmod(mode)
    with pytest.raises(InsecureKeyFileError) as info:
        Identity.load(path)
    assert info.value.code == "key_file_insecure"
    assert info.value.details["mode"] == f"{mode:04o}"
    assert "chmod 600" in str(info.value)
    with pytest.raises(InsecureKeyFileError):
        Identity.load_or_create(path)


def test_0400_key_loads(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    ident = Identity.generate()
    ident.save(path)
    path.chmod(0o400)
    assert Identity.load(path).peer_id == ident.peer_id


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot open"):
        Identity.load(tmp_path / "nope.key")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key",
        b"\x08\x01\x12\x40" + bytes(63),  # short
        b"\x08\x01\x12\x40" + bytes(65),  # long
        b"\x08\x00\x12\x40" + bytes(64),  # RSA type
        b"\x08\x01\x12\x20" + bytes(31),
        bytes(1000),
    ],
)
def test_malformed_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "identity.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(KeyFileError) as info:
        Identity.load(path)
    assert type(info.value) is KeyFileError


def test_key_path_is_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "identity.key"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="cannot read"):
        Identity.load(directory)


def test_key_file_with_mismatched_public_key(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    Identity.generate().save(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(KeyFileError, match="public key mismatch"):
        Identity.load(path)


def test_load_or_create(tmp_path: Path) -> None:
    path = tmp_path / "data" / "identity.key"
    first = Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = Identity.load_or_create(path)
    assert first.peer_id == second.peer_id


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    Identity.generate().save(path)
    replacement = Identity.generate()
    replacement.save(path)
    assert Identity.load(path).peer_id == replacement.peer_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_where_the_directory_cannot_exist(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")  # a file where the key's directory should be
    with pytest.raises(KeyFileError, match="cannot write"):
        Identity.generate().save(blocker / "identity.key")


@pytest.mark.parametrize("pad", ["\n", " ", "\t"])
def test_peer_id_text_with_white_space_is_refused(pad: str) -> None:
    text = str(Identity.generate().peer_id)
    for bad in (text + pad, pad + text):
        with pytest.raises(InvalidPeerIdError, match="white space"):
            PeerId.from_string(bad)


def test_parsed_peer_id_renders_as_the_text_it_was_parsed_from() -> None:
    peer = Identity.generate().peer_id
    text = base58.b58encode(peer.multihash).decode()
    parsed = PeerId.from_string(text)
    assert parsed == peer
    assert hash(parsed) == hash(peer)
    assert str(parsed) == text
    assert str(PeerId(parsed.multihash)) == text  # computed afresh: the same text
