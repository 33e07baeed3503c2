"""engine.crypto.cipher.Cipher: ChaCha20-Poly1305 with random nonces, closing, errors."""

from __future__ import annotations

import ctypes
import gc
import inspect
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine.crypto.cipher as cipher_module
from engine.crypto.cipher import CIPHER_OVERHEAD, NONCE_SIZE, TAG_SIZE, Cipher
from engine.crypto.secret import SecretBytes
from engine.errors import CipherClosedError, CryptoError, DecryptionError

KEY = bytes(range(32))


def test_round_trip_and_layout() -> None:
    with Cipher(KEY) as cipher:
        for size in (0, 1, 15, 16, 17, 1024, 70_000):
            plaintext = os.urandom(size)
            sealed = cipher.encrypt(plaintext)
            assert len(sealed) == size + CIPHER_OVERHEAD == size + NONCE_SIZE + TAG_SIZE
            assert cipher.decrypt(sealed) == plaintext
        assert cipher.messages_encrypted == 7


def test_accepts_buffer_types() -> None:
    with Cipher(KEY) as cipher:
        sealed = cipher.encrypt(bytearray(b"abc"))
        assert cipher.decrypt(memoryview(sealed)) == b"abc"
        assert cipher.decrypt(bytearray(cipher.encrypt(memoryview(b"xyz")))) == b"xyz"


def test_nonces_are_fresh() -> None:
    with Cipher(KEY) as cipher:
        nonces = {cipher.encrypt(b"same")[:NONCE_SIZE] for _ in range(2000)}
    assert len(nonces) == 2000


def test_two_ciphers_on_one_key_interoperate() -> None:
    # Both directions use the same key in v1.
    with Cipher(KEY) as a, Cipher(SecretBytes(KEY)) as b:
        assert b.decrypt(a.encrypt(b"ping")) == b"ping"
        assert a.decrypt(b.encrypt(b"pong")) == b"pong"


def test_no_public_api_takes_a_nonce() -> None:
    for name, member in inspect.getmembers(Cipher):
        if name.startswith("_") or not callable(member):
            continue
        assert "nonce" not in inspect.signature(member).parameters, name
    public = [n for n in dir(cipher_module) if not n.startswith("_")]
    assert not [n for n in public if "nonce" in n.lower() and callable(getattr(cipher_module, n))]


# -- authentication failures -----------------------------------------------------------------


@given(st.binary(max_size=64), st.data())
def test_any_single_bit_flip_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    with Cipher(KEY) as cipher:
        sealed = bytearray(cipher.encrypt(plaintext))
        index = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1))
        bit = data.draw(st.integers(min_value=0, max_value=7))
        sealed[index] ^= 1 << bit
        with pytest.raises(DecryptionError) as info:
            cipher.decrypt(bytes(sealed))
        assert info.value.code == "decryption_failed"


@pytest.mark.parametrize("region", ["nonce", "ciphertext", "tag"])
def test_tampered_regions(region: str) -> None:
    with Cipher(KEY) as cipher:
        sealed = bytearray(cipher.encrypt(b"attack at dawn"))
        index = {"nonce": 0, "ciphertext": NONCE_SIZE + 3, "tag": len(sealed) - 1}[region]
        sealed[index] ^= 0x80
        with pytest.raises(DecryptionError, match="authentication failed"):
            cipher.decrypt(sealed)


def test_wrong_key() -> None:
    sealed = Cipher(KEY).encrypt(b"secret")
    with pytest.raises(DecryptionError, match="authentication failed"):
        Cipher(bytes(32)).decrypt(sealed)


@pytest.mark.parametrize("length", [0, 1, NONCE_SIZE, CIPHER_OVERHEAD - 1])
def test_truncated_below_overhead(length: int) -> None:
    sealed = Cipher(KEY).encrypt(b"")
    with pytest.raises(DecryptionError, match="truncated") as info:
        Cipher(KEY).decrypt(sealed[:length])
    assert info.value.details == {"length": length}


def test_truncated_or_extended_ciphertext() -> None:
    with Cipher(KEY) as cipher:
        sealed = cipher.encrypt(b"hello world")
        for bad in (sealed[:-1], sealed[:CIPHER_OVERHEAD], sealed + b"\x00", sealed[1:]):
            with pytest.raises(DecryptionError):
                cipher.decrypt(bad)


def test_errors_leak_nothing() -> None:
    key = os.urandom(32)
    cipher = Cipher(key)
    sealed = cipher.encrypt(b"PLAINTEXT-MARKER")
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    text = repr(info.value.to_dict()) + str(info.value)
    assert key.hex() not in text
    assert sealed.hex()[:16] not in text
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert "PLAINTEXT" not in text
    assert repr(cipher) == "<Cipher open>"


# -- closing ------------------------------------------------------------------------------------


def test_close_zeroes_the_key_copy_in_memory() -> None:
    cipher = Cipher(KEY)
    secret = cipher._key  # the cipher's own copy (white-box: we inspect its memory)
    address = secret.buffer_address()
    assert ctypes.string_at(address, 32) == KEY
    cipher.close()
    assert ctypes.string_at(address, 32) == bytes(32)
    assert cipher.closed
    assert repr(cipher) == "<Cipher closed>"


def test_closed_cipher_refuses_use() -> None:
    cipher = Cipher(KEY)
    sealed = cipher.encrypt(b"x")
    cipher.close()
    cipher.close()  # idempotent
    with pytest.raises(CipherClosedError) as info:
        cipher.encrypt(b"x")
    assert info.value.code == "cipher_closed"
    with pytest.raises(CipherClosedError):
        cipher.decrypt(sealed)
    with pytest.raises(CipherClosedError):
        cipher_module._encrypt_with_nonce(cipher, bytes(12), b"x")


def test_context_exit_closes() -> None:
    with Cipher(KEY) as cipher:
        address = cipher._key.buffer_address()
    assert cipher.closed
    assert ctypes.string_at(address, 32) == bytes(32)


def test_callers_key_is_left_alone() -> None:
    owner = SecretBytes(KEY)
    raw = bytearray(KEY)
    Cipher(owner).close()
    Cipher(raw).close()
    assert owner.reveal() == KEY  # the caller closes its own secret
    assert raw == KEY  # a bytearray key is copied, not wiped under the caller's feet


def test_garbage_collected_cipher_zeroes_its_key() -> None:
    cipher = Cipher(KEY)
    buffer = cipher._key._buf  # keep the buffer alive to look at it after collection
    del cipher
    gc.collect()
    assert buffer == bytes(32)


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_bad_key_length(length: int) -> None:
    with pytest.raises(CryptoError, match="32 bytes"):
        Cipher(bytes(length))
