"""Cryptography for Glueberry: identities, peer ids, key agreement, the stream cipher."""

from engine.crypto.cipher import CIPHER_OVERHEAD, NONCE_WARNING_THRESHOLD, Cipher
from engine.crypto.identity import Identity, PeerId
from engine.crypto.keys import (
    STREAM_KEY_INFO,
    STREAM_KEY_SIZE,
    derive_stream_key,
    ed25519_public_to_x25519,
    ed25519_seed_to_x25519,
    hkdf_sha256,
    x25519,
    x25519_public_key,
)
from engine.crypto.secret import SecretBytes, scrub_bytes, secure_zero

__all__ = [
    "CIPHER_OVERHEAD",
    "NONCE_WARNING_THRESHOLD",
    "STREAM_KEY_INFO",
    "STREAM_KEY_SIZE",
    "Cipher",
    "Identity",
    "PeerId",
    "SecretBytes",
    "derive_stream_key",
    "ed25519_public_to_x25519",
    "ed25519_seed_to_x25519",
    "hkdf_sha256",
    "scrub_bytes",
    "secure_zero",
    "x25519",
    "x25519_public_key",
]
