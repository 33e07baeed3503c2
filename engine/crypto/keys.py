"""Key agreement for wire protocol v1: Ed25519 -> X25519, X25519, HKDF, the stream key.

Both peers convert their Ed25519 identity keys to Montgomery form, run X25519, and feed
the shared secret to HKDF-SHA256 (empty salt, info ``glueberry-v1-stream-key``): the
32-byte result is the stream key, the same in both directions.

- Private conversion (as libsodium's ``crypto_sign_ed25519_sk_to_curve25519``): the first
  32 bytes of SHA-512(seed), clamped.
- Public conversion (as libsodium's ``crypto_sign_ed25519_pk_to_curve25519``): decode the
  Edwards point strictly (canonical ``y < p``, on the curve, ``x = 0`` only with sign 0),
  refuse small-order points and points outside the prime-order subgroup, then map
  ``u = (1 + y) / (1 - y) mod p``. The point checks run in pure Python (about 2 ms), so
  the outcome (result or refusal) is cached per key in a bounded LRU (1,024 keys).
- An all-zero X25519 result (a low-order peer key) is refused.

Secrets are returned as :class:`~engine.crypto.secret.SecretBytes`; intermediates we create
are zeroed (see docs/security.md for what remains out of our reach).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.crypto.identity import Identity
from engine.crypto.secret import SecretBytes, scrub_bytes
from engine.errors import CryptoError, InvalidPublicKeyError, WeakSharedSecretError

__all__ = [
    "STREAM_KEY_INFO",
    "STREAM_KEY_SIZE",
    "derive_stream_key",
    "ed25519_public_to_x25519",
    "ed25519_seed_to_x25519",
    "hkdf_sha256",
    "x25519",
    "x25519_public_key",
]

STREAM_KEY_INFO = b"glueberry-v1-stream-key"
"""HKDF ``info`` of the v1 stream key."""

STREAM_KEY_SIZE = 32
"""Length of the v1 stream key (a ChaCha20-Poly1305 key)."""

_KEY_LEN = 32
# Ed25519 -> X25519 public conversions remembered (public data only; ~200 B each).
_PUBLIC_CACHE_SIZE = 1024
_ZERO32 = bytes(32)

# -- Edwards25519 arithmetic (only what the public-key conversion needs) -------------------
#
# Extended twisted Edwards coordinates (X : Y : Z : T), x = X/Z, y = Y/Z, xy = T/Z, curve
# -x^2 + y^2 = 1 + d x^2 y^2 (RFC 8032, sec. 5.1). Variable time is fine: the inputs are
# public keys.
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_D2 = (2 * _D) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_L = 2**252 + 27742317777372353535851937790883648493  # order of the prime subgroup

_Point = tuple[int, int, int, int]


def _point_add(a: _Point, b: _Point) -> _Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = t1 * _D2 * t2 % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _point_double(a: _Point) -> _Point:
    x1, y1, z1, _ = a
    aa = x1 * x1 % _P
    bb = y1 * y1 % _P
    cc = 2 * z1 * z1 % _P
    h = aa + bb
    e = h - (x1 + y1) * (x1 + y1)
    g = aa - bb
    f = cc + g
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _is_identity(a: _Point) -> bool:
    x, y, z, _ = a
    return x % _P == 0 and (y - z) % _P == 0


def _scalar_mult(k: int, a: _Point) -> _Point:
    result: _Point = (0, 1, 1, 0)
    addend = a
    while k:
        if k & 1:
            result = _point_add(result, addend)
        addend = _point_double(addend)
        k >>= 1
    return result


def _decode_edwards_y(public: bytes) -> int:
    """Strictly decode an Ed25519 public key; return the point's ``y`` (affine).

    Raises:
        InvalidPublicKeyError: wrong length, non-canonical, not on the curve, small order,
            or not in the prime-order subgroup.
    """
    if len(public) != _KEY_LEN:
        raise InvalidPublicKeyError(f"Ed25519 public key must be 32 bytes, got {len(public)}")
    encoded = int.from_bytes(public, "little")
    sign = encoded >> 255
    y = encoded & ((1 << 255) - 1)
    if y >= _P:
        raise InvalidPublicKeyError("Ed25519 public key is not canonically encoded")
    # x^2 = (y^2 - 1) / (d y^2 + 1); square root as in RFC 8032 sec. 5.1.3.
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    vxx = v * x * x % _P
    if vxx == (-u) % _P:
        x = x * _SQRT_M1 % _P
    elif vxx != u:
        raise InvalidPublicKeyError("Ed25519 public key is not a point on the curve")
    if x == 0 and sign:
        raise InvalidPublicKeyError("Ed25519 public key is not canonically encoded")
    if x & 1 != sign:
        x = _P - x
    point: _Point = (x, y, 1, x * y % _P)
    # Small order: [8]A is the identity (this includes the identity, y = 1, and y = -1,
    # whose images u = 1/0 and u = 0 are degenerate).
    eight = _point_double(_point_double(_point_double(point)))
    if _is_identity(eight):
        raise InvalidPublicKeyError("Ed25519 public key has small order")
    if not _is_identity(_scalar_mult(_L, point)):
        raise InvalidPublicKeyError("Ed25519 public key is not in the prime-order subgroup")
    return y


def ed25519_public_to_x25519(public: bytes | bytearray | memoryview) -> bytes:
    """Convert an Ed25519 public key to the X25519 public key of the same key pair.

    Equal to libsodium's ``crypto_sign_ed25519_pk_to_curve25519``, which refuses the same
    keys.

    Args:
        public: the raw 32-byte Ed25519 public key.

    Returns:
        The 32-byte X25519 public key (Montgomery ``u``, little-endian).

    Raises:
        InvalidPublicKeyError: the key is malformed, not canonical, not on the curve, of
            small order or outside the prime-order subgroup.
    """
    outcome = _convert_public(bytes(public))
    if isinstance(outcome, str):  # the cached reason of a refusal
        raise InvalidPublicKeyError(outcome)
    return outcome


@functools.lru_cache(maxsize=_PUBLIC_CACHE_SIZE)
def _convert_public(public: bytes) -> bytes | str:
    # Pure function of public data, cached (the point checks cost ~2 ms in pure Python
    # and every stream-key derivation with the same peer repeats them). Refusals are
    # cached too, so a peer resending a bad key costs no more CPU.
    try:
        y = _decode_edwards_y(public)
    except InvalidPublicKeyError as exc:
        return exc.message
    # y != 1 (the identity has small order), so 1 - y is invertible.
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(_KEY_LEN, "little")


def ed25519_seed_to_x25519(seed: SecretBytes | bytes | bytearray) -> SecretBytes:
    """Convert an Ed25519 private seed to its X25519 private key.

    Equal to libsodium's ``crypto_sign_ed25519_sk_to_curve25519``: the first 32 bytes of
    SHA-512(seed), clamped (RFC 7748 sec. 5).

    Args:
        seed: the 32-byte Ed25519 seed (RFC 8032 secret key).

    Returns:
        The 32-byte X25519 private key, in a new :class:`SecretBytes` the caller closes.

    Raises:
        CryptoError: the seed is not 32 bytes.
    """
    if len(seed) != _KEY_LEN:
        raise CryptoError("Ed25519 seed must be 32 bytes")
    if isinstance(seed, SecretBytes):
        with seed.view() as view:
            digest = hashlib.sha512(view).digest()
    else:
        digest = hashlib.sha512(seed).digest()
    scalar = bytearray(memoryview(digest)[:_KEY_LEN])
    scrub_bytes(digest)
    del digest
    scalar[0] &= 248
    scalar[31] &= 127
    scalar[31] |= 64
    return SecretBytes(scalar)  # zeroes ``scalar``


def x25519_public_key(private: SecretBytes | bytes | bytearray) -> bytes:
    """The X25519 public key (``private * 9``) of a 32-byte X25519 private key."""
    key = _load_private(private)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _load_private(private: SecretBytes | bytes | bytearray) -> X25519PrivateKey:
    if len(private) != _KEY_LEN:
        raise CryptoError("X25519 private key must be 32 bytes")
    if isinstance(private, SecretBytes):
        with private.view() as view:
            return X25519PrivateKey.from_private_bytes(view)
    return X25519PrivateKey.from_private_bytes(private)


def x25519(private: SecretBytes | bytes | bytearray, public: bytes | bytearray) -> SecretBytes:
    """X25519 (RFC 7748) of our private key and a peer's public key.

    Args:
        private: our 32-byte X25519 private key (clamped internally, as RFC 7748 says).
        public: the peer's 32-byte X25519 public key.

    Returns:
        The 32-byte shared secret in a new :class:`SecretBytes` the caller closes.

    Raises:
        InvalidPublicKeyError: ``public`` is not 32 bytes.
        WeakSharedSecretError: the result is all zeros (``public`` has low order).
        CryptoError: ``private`` is not 32 bytes.
    """
    if len(public) != _KEY_LEN:
        raise InvalidPublicKeyError(f"X25519 public key must be 32 bytes, got {len(public)}")
    key = _load_private(private)
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
    except ValueError:
        # OpenSSL itself refuses to return the all-zero result.
        raise WeakSharedSecretError("X25519 produced the all-zero shared secret") from None
    finally:
        del key
    if hmac.compare_digest(shared, _ZERO32):
        raise WeakSharedSecretError("X25519 produced the all-zero shared secret")
    secret = SecretBytes(shared)
    scrub_bytes(shared)
    return secret


def hkdf_sha256(
    ikm: SecretBytes | bytes | bytearray, *, salt: bytes = b"", info: bytes, length: int
) -> SecretBytes:
    """HKDF-SHA256 (RFC 5869) extract-then-expand.

    Args:
        ikm: input keying material.
        salt: the salt (empty = HashLen zero bytes, as RFC 5869 specifies).
        info: context and application specific information.
        length: output length in bytes (1 .. 8160).

    Returns:
        The output keying material in a new :class:`SecretBytes`.
    """
    kdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info)
    if isinstance(ikm, SecretBytes):
        with ikm.view() as view:
            okm = kdf.derive(view)
    else:
        okm = kdf.derive(ikm)
    secret = SecretBytes(okm)
    scrub_bytes(okm)
    return secret


def derive_stream_key(identity: Identity, peer_ed25519_public: bytes) -> SecretBytes:
    """Derive the v1 stream key shared with a peer (the same key in both directions).

    ``HKDF-SHA256(salt="", info="glueberry-v1-stream-key", 32,
    X25519(x25519_private(our seed), x25519_public(peer key)))``.

    Args:
        identity: our identity (its seed is read, not consumed).
        peer_ed25519_public: the peer's raw 32-byte Ed25519 public key.

    Returns:
        The 32-byte stream key in a new :class:`SecretBytes` the caller closes.

    Raises:
        InvalidPublicKeyError: the peer key is invalid (see
            :func:`ed25519_public_to_x25519`).
        WeakSharedSecretError: the exchange gave the all-zero secret.
    """
    peer_x25519 = ed25519_public_to_x25519(peer_ed25519_public)
    with ed25519_seed_to_x25519(identity.seed) as private, x25519(private, peer_x25519) as shared:
        return hkdf_sha256(shared, info=STREAM_KEY_INFO, length=STREAM_KEY_SIZE)
