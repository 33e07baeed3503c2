"""Known-answer tests: wire protocol v1 vectors, RFC 8439, RFC 7748 and RFC 5869."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.crypto.cipher import Cipher, _decrypt_with_associated_data, _encrypt_with_nonce
from engine.crypto.identity import Identity
from engine.crypto.keys import (
    STREAM_KEY_INFO,
    derive_stream_key,
    ed25519_public_to_x25519,
    ed25519_seed_to_x25519,
    hkdf_sha256,
    x25519,
    x25519_public_key,
)
from engine.errors import DecryptionError
from engine.framing import FrameDecoder, encode_frame
from engine.varint import encode_uvarint

VECTORS = json.loads(Path("/work/shared/reference/wire-v1-vectors.json").read_text())["vectors"]


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# -- wire protocol v1 ------------------------------------------------------------------------------


def test_vector_file_has_vectors() -> None:
    assert len(VECTORS) >= 3


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
@pytest.mark.parametrize("side", ["a", "b"])
def test_wire_vector_keys(vector: dict[str, dict[str, str]], side: str) -> None:
    keys = vector[side]
    ident = Identity.from_seed(h(keys["ed25519_seed_hex"]))
    assert ident.public_key.hex() == keys["ed25519_pub_hex"]
    assert str(ident.peer_id) == keys["peer_id"]
    with ed25519_seed_to_x25519(ident.seed) as x_priv:
        assert x_priv.reveal().hex() == keys["x25519_priv_hex"]
        # The converted private and public keys belong to the same X25519 key pair.
        assert x25519_public_key(x_priv).hex() == keys["x25519_pub_hex"]
    assert ed25519_public_to_x25519(ident.public_key).hex() == keys["x25519_pub_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_wire_vector_shared_secret_and_stream_key(vector: dict[str, object]) -> None:
    a: dict[str, str] = vector["a"]  # type: ignore[assignment]
    b: dict[str, str] = vector["b"]  # type: ignore[assignment]
    assert vector["hkdf_salt_hex"] == ""
    assert str(vector["hkdf_info"]).encode() == STREAM_KEY_INFO
    for mine, theirs in ((a, b), (b, a)):
        with x25519(h(mine["x25519_priv_hex"]), h(theirs["x25519_pub_hex"])) as shared:
            assert shared.reveal().hex() == vector["x25519_shared_hex"]
            with hkdf_sha256(shared, info=STREAM_KEY_INFO, length=32) as key:
                assert key.reveal().hex() == vector["stream_key_hex"]
        ident = Identity.from_seed(h(mine["ed25519_seed_hex"]))
        with derive_stream_key(ident, h(theirs["ed25519_pub_hex"])) as key:
            assert key.reveal().hex() == vector["stream_key_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_wire_vector_payload_message_frame(vector: dict[str, str]) -> None:
    payload = h(vector["P_hex"])
    with Cipher(h(vector["stream_key_hex"])) as cipher:
        sealed = _encrypt_with_nonce(cipher, h(vector["nonce_hex"]), h(vector["plaintext_hex"]))
        assert sealed == payload
        assert cipher.decrypt(payload) == h(vector["plaintext_hex"])
    message = encode_uvarint(len(payload)) + payload
    assert message.hex() == vector["M_hex"]
    frame = encode_frame(payload)
    assert frame.hex() == vector["frame_hex"]
    assert FrameDecoder().feed(frame) == [payload]


# -- RFC 8439 sec. 2.8.2: AEAD_CHACHA20_POLY1305 ---------------------------------------------------

RFC8439_KEY = bytes(range(0x80, 0xA0))
RFC8439_NONCE = h("07000000 4041424344454647")
RFC8439_AAD = h("50515253 c0c1c2c3c4c5c6c7")
RFC8439_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it."
)
RFC8439_CIPHERTEXT = h(
    """d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
    3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
    92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
    3ff4def08e4b7a9de576d26586cec64b6116"""
)
RFC8439_TAG = h("1ae10b594f09e26a7e902ecbd0600691")


def test_rfc8439_aead_vector() -> None:
    with Cipher(RFC8439_KEY) as cipher:
        sealed = _encrypt_with_nonce(cipher, RFC8439_NONCE, RFC8439_PLAINTEXT, RFC8439_AAD)
        assert sealed == RFC8439_NONCE + RFC8439_CIPHERTEXT + RFC8439_TAG
        assert _decrypt_with_associated_data(cipher, sealed, RFC8439_AAD) == RFC8439_PLAINTEXT
        with pytest.raises(DecryptionError):
            _decrypt_with_associated_data(cipher, sealed, RFC8439_AAD[:-1])
        with pytest.raises(DecryptionError):
            cipher.decrypt(sealed)  # the public API uses no associated data


# -- RFC 7748: X25519 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scalar", "u", "out"),
    [
        (  # sec. 5.2, first vector
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (  # sec. 5.2, second vector (u has its top bit set: it must be masked)
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ],
)
def test_rfc7748_x25519_vectors(scalar: str, u: str, out: str) -> None:
    with x25519(h(scalar), h(u)) as shared:
        assert shared.reveal().hex() == out


@pytest.mark.parametrize(
    ("iterations", "expected"),
    [
        (1, "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"),
        (1000, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"),
    ],
)
def test_rfc7748_iterated(iterations: int, expected: str) -> None:
    # sec. 5.2: k = u = 9; repeatedly k, u = X25519(k, u), k. (The 1,000,000-iteration
    # value takes about a minute and is left out.)
    k = u = (9).to_bytes(32, "little")
    for _ in range(iterations):
        with x25519(k, u) as result:
            k, u = result.reveal(), k
    assert k.hex() == expected


def test_rfc7748_diffie_hellman() -> None:
    # sec. 6.1
    alice_priv = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    alice_pub = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    bob_priv = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    bob_pub = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert x25519_public_key(alice_priv) == alice_pub
    assert x25519_public_key(bob_priv) == bob_pub
    assert x25519(alice_priv, bob_pub).reveal().hex() == shared
    assert x25519(bob_priv, alice_pub).reveal().hex() == shared


# -- RFC 5869: HKDF-SHA256 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "length", "okm"),
    [
        (  # test case 1
            "0b" * 22,
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (  # test case 2: long inputs
            bytes(range(0x00, 0x50)).hex(),
            bytes(range(0x60, 0xB0)).hex(),
            bytes(range(0xB0, 0x100)).hex(),
            82,
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (  # test case 3: zero-length salt and info (v1 uses an empty salt)
            "0b" * 22,
            "",
            "",
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
    ids=["case1", "case2", "case3"],
)
def test_rfc5869_hkdf_sha256(ikm: str, salt: str, info: str, length: int, okm: str) -> None:
    with hkdf_sha256(h(ikm), salt=h(salt), info=h(info), length=length) as out:
        assert out.reveal().hex() == okm
