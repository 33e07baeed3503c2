"""engine.crypto.secret: SecretBytes, secure_zero, scrub_bytes (memory is inspected)."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os

import pytest

from engine.crypto.secret import SecretBytes, scrub_bytes, secure_zero
from engine.errors import CryptoError

SECRET = bytes(range(1, 33))


def test_close_zeroes_the_buffer_in_memory() -> None:
    secret = SecretBytes(SECRET)
    address = secret.buffer_address()
    assert ctypes.string_at(address, len(SECRET)) == SECRET
    secret.close()
    assert ctypes.string_at(address, len(SECRET)) == bytes(len(SECRET))
    assert secret.closed
    secret.close()  # idempotent


def test_context_exit_zeroes() -> None:
    with SecretBytes(SECRET) as secret:
        address = secret.buffer_address()
    assert ctypes.string_at(address, len(SECRET)) == bytes(len(SECRET))


def test_context_exit_zeroes_on_exception() -> None:
    secret = SecretBytes(SECRET)
    buffer = secret._buf
    with pytest.raises(RuntimeError), secret:
        raise RuntimeError("boom")
    assert buffer == bytes(len(SECRET))


def test_finalisation_zeroes() -> None:
    secret = SecretBytes(SECRET)
    buffer = secret._buf  # keep the buffer alive to inspect it after the owner dies
    del secret
    gc.collect()
    assert buffer == bytes(len(SECRET))


def test_bytearray_argument_is_wiped_other_inputs_are_not() -> None:
    source = bytearray(SECRET)
    secret = SecretBytes(source)
    assert source == bytes(len(SECRET))
    assert secret.reveal() == SECRET
    backing = bytearray(SECRET)
    SecretBytes(memoryview(backing))
    assert backing == SECRET  # memoryview: copied, caller's buffer untouched


def test_access_only_through_view_and_reveal() -> None:
    secret = SecretBytes(SECRET)
    with secret.view() as view:
        assert view.readonly
        assert bytes(view) == SECRET
        with pytest.raises(TypeError):
            view[0] = 0  # type: ignore[index]
    with pytest.raises(ValueError, match="released"):
        bytes(view)
    assert secret.reveal() == SECRET
    assert len(secret) == len(SECRET)


def test_closed_secret_refuses_access() -> None:
    secret = SecretBytes(SECRET)
    secret.close()
    with pytest.raises(CryptoError, match="closed"):
        secret.reveal()
    with pytest.raises(CryptoError, match="closed"), secret.view():
        pass


def test_repr_never_shows_the_secret() -> None:
    secret = SecretBytes(b"hunter2-hunter2")
    for text in (repr(secret), str(secret), f"{secret}"):
        assert "hunter2" not in text
        assert b"hunter2".hex() not in text
    assert repr(secret) == "<SecretBytes 15 bytes>"
    secret.close()
    assert repr(secret) == "<SecretBytes closed>"


def test_equality_is_by_content_and_unhashable() -> None:
    assert SecretBytes(SECRET) == SecretBytes(SECRET)
    assert SecretBytes(SECRET) != SecretBytes(bytes(32))
    assert SecretBytes(SECRET) != SecretBytes(SECRET[:-1])
    assert SecretBytes(SECRET) != SECRET  # no comparison with plain bytes
    with pytest.raises(TypeError):
        hash(SecretBytes(SECRET))


def test_mlock_is_best_effort() -> None:
    # Whether the lock succeeds depends on RLIMIT_MEMLOCK; it must never raise.
    secrets = [SecretBytes(os.urandom(32)) for _ in range(200)]
    assert all(isinstance(s.locked, bool) for s in secrets)
    assert not SecretBytes(SECRET, lock=False).locked
    assert not SecretBytes(b"").locked
    for s in secrets:
        s.close()


def test_empty_secret() -> None:
    with SecretBytes(b"") as secret:
        assert len(secret) == 0
        assert secret.reveal() == b""


# -- secure_zero ----------------------------------------------------------------------------------


def test_secure_zero_bytearray_and_writable_views() -> None:
    buf = bytearray(SECRET)
    secure_zero(buf)
    assert buf == bytes(len(SECRET))
    buf = bytearray(SECRET)
    secure_zero(memoryview(buf)[4:8])
    assert buf == SECRET[:4] + bytes(4) + SECRET[8:]
    secure_zero(bytearray())


def test_secure_zero_refuses_read_only() -> None:
    with pytest.raises(CryptoError, match="read-only"):
        secure_zero(memoryview(SECRET))


# -- scrub_bytes ----------------------------------------------------------------------------------


def test_scrub_bytes_zeroes_a_fresh_unshared_object() -> None:
    digest = hashlib.sha256(b"scrub me").digest()
    address = id(digest) + bytes.__basicsize__ - 1
    assert ctypes.string_at(address, 32) == hashlib.sha256(b"scrub me").digest()
    assert scrub_bytes(digest)
    assert digest == bytes(32)
    assert ctypes.string_at(address, 32) == bytes(32)


def test_scrub_bytes_refuses_shared_or_special_objects() -> None:
    fresh = hashlib.sha256(b"x").digest()
    alias = fresh  # a second reference: someone else could be looking at it
    assert not scrub_bytes(fresh)
    assert alias != bytes(32)
    assert not scrub_bytes(b"a")  # single-byte objects are cached singletons
    assert not scrub_bytes(b"")
    assert not scrub_bytes(bytearray(b"abc"))  # type: ignore[arg-type]
    constant = b"a module constant"
    assert not scrub_bytes(constant)
    assert constant == b"a module constant"
