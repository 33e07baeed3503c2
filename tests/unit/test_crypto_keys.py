"""engine.crypto.keys: Ed25519 -> X25519 conversion, X25519, HKDF and the stream key."""

from __future__ import annotations

import os
import random

import pytest
from nacl.bindings import (
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import RuntimeError as NaclRuntimeError

from engine.crypto.identity import Identity
from engine.crypto.keys import (
    STREAM_KEY_SIZE,
    derive_stream_key,
    ed25519_public_to_x25519,
    ed25519_seed_to_x25519,
    hkdf_sha256,
    x25519,
    x25519_public_key,
)
from engine.crypto.secret import SecretBytes
from engine.errors import CryptoError, InvalidPublicKeyError, WeakSharedSecretError

P = 2**255 - 19


def nacl_pk_to_curve(public: bytes) -> bytes | None:
    """libsodium's conversion, or None where libsodium refuses the key."""
    try:
        return bytes(crypto_sign_ed25519_pk_to_curve25519(public))
    except (NaclRuntimeError, ValueError):
        return None


def ours_pk_to_curve(public: bytes) -> bytes | None:
    try:
        return ed25519_public_to_x25519(public)
    except InvalidPublicKeyError:
        return None


def test_conversion_equals_libsodium_for_1000_random_keys() -> None:
    rng = random.Random(0x61756562)  # deterministic seeds; libsodium derives the keys
    for _ in range(1000):
        seed = rng.randbytes(32)
        public, secret = crypto_sign_seed_keypair(seed)
        with ed25519_seed_to_x25519(seed) as x_priv:
            assert x_priv.reveal() == crypto_sign_ed25519_sk_to_curve25519(secret)
            assert x25519_public_key(x_priv) == crypto_sign_ed25519_pk_to_curve25519(public)
        assert ed25519_public_to_x25519(public) == crypto_sign_ed25519_pk_to_curve25519(public)


def _edge_encodings() -> list[bytes]:
    cases = []
    for y in [*range(40), *range(P - 20, P), *range(P, 2**255)]:
        for sign in (0, 1):
            cases.append((y | (sign << 255)).to_bytes(32, "little"))
    return cases


@pytest.mark.parametrize(
    "public",
    _edge_encodings(),
    ids=lambda b: b.hex()[:8] + "..." + b.hex()[-4:],
)
def test_edge_encodings_accepted_and_refused_like_libsodium(public: bytes) -> None:
    # Small y (includes the identity y = 1 and y = 0), y near p, non-canonical y >= p,
    # both sign bits: every one is refused exactly when libsodium refuses it.
    assert ours_pk_to_curve(public) == nacl_pk_to_curve(public)


def test_random_32_byte_strings_agree_with_libsodium() -> None:
    # Random strings hit off-curve points, points with a torsion component and the odd
    # valid key: libsodium and we must agree on every one.
    rng = random.Random(7)
    accepted = 0
    for _ in range(1500):
        public = rng.randbytes(32)
        ours = ours_pk_to_curve(public)
        assert ours == nacl_pk_to_curve(public)
        accepted += ours is not None
    assert 0 < accepted < 1500


# The eight points of order dividing 8 on Edwards25519 (libsodium's blocklist, canonical).
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4 (-0)
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
]


@pytest.mark.parametrize("public", SMALL_ORDER)
def test_small_order_points_refused(public: str) -> None:
    with pytest.raises(InvalidPublicKeyError):
        ed25519_public_to_x25519(bytes.fromhex(public))
    assert nacl_pk_to_curve(bytes.fromhex(public)) is None


def test_torsioned_point_refused() -> None:
    # A valid public key plus a point of order 8 is on the curve but outside the
    # prime-order subgroup: the subgroup check must catch it.
    from engine.crypto.keys import _decode_edwards_y, _point_add

    base_pub = Identity.from_seed(bytes(32)).public_key
    _decode_edwards_y(base_pub)  # valid

    def decode_point(raw: bytes) -> tuple[int, int, int, int]:
        from engine.crypto.keys import _D, _P, _SQRT_M1

        enc = int.from_bytes(raw, "little")
        y, sign = enc & ((1 << 255) - 1), enc >> 255
        u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
        x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
        if v * x * x % _P != u:
            x = x * _SQRT_M1 % _P
        if x & 1 != sign:
            x = _P - x
        return x, y, 1, x * y % _P

    def encode_point(pt: tuple[int, int, int, int]) -> bytes:
        x, y, z, _ = pt
        zi = pow(z, P - 2, P)
        x, y = x * zi % P, y * zi % P
        return (y | ((x & 1) << 255)).to_bytes(32, "little")

    torsion = decode_point(bytes.fromhex(SMALL_ORDER[4]))
    mixed = encode_point(_point_add(decode_point(base_pub), torsion))
    assert mixed != base_pub
    with pytest.raises(InvalidPublicKeyError, match="subgroup"):
        ed25519_public_to_x25519(mixed)
    assert nacl_pk_to_curve(mixed) is None


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_public_key_wrong_length(length: int) -> None:
    with pytest.raises(InvalidPublicKeyError, match="32 bytes"):
        ed25519_public_to_x25519(b"\x01" * length)


def test_seed_wrong_length() -> None:
    with pytest.raises(CryptoError, match="32 bytes"):
        ed25519_seed_to_x25519(b"\x00" * 31)
    with pytest.raises(CryptoError, match="32 bytes"):
        x25519_public_key(b"\x00" * 33)


def test_seed_conversion_accepts_secret_bytes_and_bytearray_alike() -> None:
    seed = os.urandom(32)
    expected = ed25519_seed_to_x25519(seed).reveal()
    assert ed25519_seed_to_x25519(SecretBytes(seed)).reveal() == expected
    assert ed25519_seed_to_x25519(bytearray(seed)).reveal() == expected
    # Clamped per RFC 7748: low three bits clear, bit 255 clear, bit 254 set.
    assert expected[0] & 7 == 0
    assert expected[31] & 0x80 == 0
    assert expected[31] & 0x40


# -- X25519 ----------------------------------------------------------------------------------------

# Montgomery u-coordinates of low order (libsodium's X25519 blocklist): X25519 with any
# scalar gives the all-zero secret, which must be refused.
LOW_ORDER_U = [
    "0000000000000000000000000000000000000000000000000000000000000000",  # 0
    "0100000000000000000000000000000000000000000000000000000000000000",  # 1
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  # order 8
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  # order 8
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p - 1
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # p + 1
]


@pytest.mark.parametrize("u", LOW_ORDER_U)
def test_all_zero_shared_secret_refused(u: str) -> None:
    with pytest.raises(WeakSharedSecretError) as info:
        x25519(os.urandom(32), bytes.fromhex(u))
    assert info.value.code == "weak_shared_secret"


def test_x25519_wrong_lengths() -> None:
    with pytest.raises(InvalidPublicKeyError):
        x25519(os.urandom(32), b"\x09" * 31)
    with pytest.raises(CryptoError):
        x25519(os.urandom(31), (9).to_bytes(32, "little"))


def test_x25519_agrees_both_ways_for_random_keys() -> None:
    for _ in range(20):
        a, b = os.urandom(32), os.urandom(32)
        with x25519(a, x25519_public_key(b)) as ab, x25519(b, x25519_public_key(a)) as ba:
            assert ab == ba


# -- HKDF and the stream key ---------------------------------------------------------------------


def test_hkdf_returns_secret_bytes_of_requested_length() -> None:
    for length in (1, 32, 255 * 32):
        out = hkdf_sha256(b"ikm", info=b"x", length=length)
        assert isinstance(out, SecretBytes)
        assert len(out) == length


def test_stream_key_is_symmetric_and_peer_specific() -> None:
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    ab = derive_stream_key(alice, bob.public_key)
    ba = derive_stream_key(bob, alice.public_key)
    ac = derive_stream_key(alice, carol.public_key)
    assert len(ab) == STREAM_KEY_SIZE
    assert ab == ba
    assert ab.reveal() != ac.reveal()
    # The identity's own seed is read, not consumed.
    assert not alice.seed.closed
    assert derive_stream_key(alice, bob.public_key) == ab


def test_stream_key_refuses_invalid_peer_keys() -> None:
    alice = Identity.generate()
    for bad in SMALL_ORDER:
        with pytest.raises(InvalidPublicKeyError):
            derive_stream_key(alice, bytes.fromhex(bad))
    with pytest.raises(InvalidPublicKeyError):
        derive_stream_key(alice, b"short")


def test_stream_key_with_closed_identity_fails() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    alice.close()
    with pytest.raises(CryptoError):
        derive_stream_key(alice, bob.public_key)
