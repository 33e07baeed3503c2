"""Cryptography for Glueberry: identities, peer ids, key agreement, the stream cipher."""

from engine.crypto.identity import Identity, PeerId
from engine.crypto.secret import SecretBytes, secure_zero

__all__ = ["Identity", "PeerId", "SecretBytes", "secure_zero"]
