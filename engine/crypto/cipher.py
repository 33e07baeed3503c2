"""The v1 stream cipher: ChaCha20-Poly1305 with a random 96-bit nonce per message.

Wire format of one encrypted payload: ``nonce(12) || ciphertext || tag(16)``, no
associated data. The nonce is drawn from ``os.urandom`` for every message; callers cannot
supply one (a reused nonce under one key reveals the XOR of two plaintexts and lets an
attacker forge tags). Random 96-bit nonces stay safe for about 2**40 messages per key
(birthday bound with a comfortable margin), hence :data:`NONCE_WARNING_THRESHOLD`; see
docs/security.md.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from engine.crypto.secret import SecretBytes
from engine.errors import CipherClosedError, CryptoError, DecryptionError

__all__ = [
    "CIPHER_OVERHEAD",
    "KEY_SIZE",
    "NONCE_SIZE",
    "NONCE_WARNING_THRESHOLD",
    "TAG_SIZE",
    "Cipher",
]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
CIPHER_OVERHEAD = NONCE_SIZE + TAG_SIZE
"""Bytes an encrypted payload adds to its plaintext (28)."""

NONCE_WARNING_THRESHOLD = 2**40
"""Messages under one key after which random-nonce collisions stop being negligible."""


class Cipher:
    """ChaCha20-Poly1305 with random nonces, for one stream key.

    Args:
        key: the 32-byte key. The cipher keeps its own :class:`SecretBytes` copy (the
            caller's object is left untouched and remains the caller's to close).

    Raises:
        CryptoError: the key is not 32 bytes.

    ``close()`` zeroes the key copy and drops the AEAD object (OpenSSL frees, and clears,
    its context when the object is collected); any later use raises
    :class:`CipherClosedError`. The cipher is a context manager.
    """

    __slots__ = ("__weakref__", "_aead", "_encrypted", "_key")

    def __init__(self, key: SecretBytes | bytes | bytearray) -> None:
        if len(key) != KEY_SIZE:
            raise CryptoError(f"cipher key must be {KEY_SIZE} bytes, got {len(key)}")
        if isinstance(key, SecretBytes):
            with key.view() as view:
                self._key = SecretBytes(view)
        else:
            # A memoryview, so SecretBytes copies without zeroing the caller's buffer.
            self._key = SecretBytes(memoryview(key))
        with self._key.view() as view:
            self._aead: ChaCha20Poly1305 | None = ChaCha20Poly1305(view)
        self._encrypted = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._aead is None

    @property
    def messages_encrypted(self) -> int:
        """Messages encrypted so far (compare with :data:`NONCE_WARNING_THRESHOLD`)."""
        return self._encrypted

    def encrypt(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """Encrypt one message under a fresh random nonce.

        Args:
            plaintext: the message (may be empty).

        Returns:
            ``nonce || ciphertext || tag`` (``len(plaintext) + 28`` bytes).

        Raises:
            CipherClosedError: the cipher was closed.
        """
        aead = self._aead
        if aead is None:
            raise CipherClosedError("cipher is closed")
        nonce = os.urandom(NONCE_SIZE)
        self._encrypted += 1
        return nonce + aead.encrypt(nonce, plaintext, None)

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """Authenticate and decrypt one ``nonce || ciphertext || tag`` payload.

        Args:
            data: the encrypted payload.

        Returns:
            The plaintext.

        Raises:
            DecryptionError: the payload is shorter than 28 bytes, was modified, or was
                encrypted under another key (the cases are deliberately not told apart).
            CipherClosedError: the cipher was closed.
        """
        aead = self._aead
        if aead is None:
            raise CipherClosedError("cipher is closed")
        if len(data) < CIPHER_OVERHEAD:
            raise DecryptionError("encrypted payload is truncated", details={"length": len(data)})
        try:
            return aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], None)
        except InvalidTag:
            raise DecryptionError("message authentication failed") from None

    def close(self) -> None:
        """Zero the key copy and make the cipher unusable. Idempotent."""
        self._aead = None
        self._key.close()

    def __enter__(self) -> Cipher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Cipher {'closed' if self._aead is None else 'open'}>"


# -- known-answer tests only ---------------------------------------------------------------
#
# Not part of the API: a caller-chosen nonce is exactly the footgun this module exists to
# remove. The test suite uses these to reproduce RFC 8439 and the wire-v1 vectors.


def _encrypt_with_nonce(
    cipher: Cipher,
    nonce: bytes,
    plaintext: bytes,
    associated_data: bytes | None = None,
) -> bytes:
    aead = cipher._aead
    if aead is None:
        raise CipherClosedError("cipher is closed")
    return nonce + aead.encrypt(nonce, plaintext, associated_data)


def _decrypt_with_associated_data(cipher: Cipher, data: bytes, associated_data: bytes) -> bytes:
    aead = cipher._aead
    if aead is None:
        raise CipherClosedError("cipher is closed")
    try:
        return aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], associated_data)
    except InvalidTag:
        raise DecryptionError("message authentication failed") from None
