"""Known-answer tests for the libp2p Noise handshake payload, from real interop runs.

``tests/vectors/noise_payload_interop.json`` holds the ``NoiseHandshakePayload`` bytes that
js-libp2p and py-libp2p sent to our handshake (both roles), with their static keys and
announced peer ids; ``tests/interop/capture_noise_vectors.py`` made it (by hand, not in
CI). Here, offline: our decoder parses each payload, the signature verifies, the derived
peer id is the announced one, any flipped byte of signature, static key or identity key
is refused with ``SecurityHandshakeError``, and our encoder produces the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from engine.crypto.identity import (
    Identity,
    PeerId,
    decode_public_key_proto,
    encode_public_key_proto,
)
from engine.errors import SecurityHandshakeError
from engine.net.noise import NoiseHandshake, NoiseStaticKey, verify_payload
from engine.net.protobuf import MAX_NOISE_PAYLOAD_SIZE, NoiseHandshakePayload, iter_fields

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "noise_payload_interop.json"
DOC: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]
LOCAL: dict[str, Any] = DOC["local"]


def _layout(payload: bytes) -> list[tuple[int, int, int]]:
    """``(field number, wire type, value length)`` of each top-level field, in order."""
    out = []
    for number, wire, value in iter_fields(payload, max_size=MAX_NOISE_PAYLOAD_SIZE):
        assert isinstance(value, bytes)
        out.append((number, wire, len(value)))
    return out


def _flipped(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0xFF
    return bytes(out)


def test_vectors_cover_both_implementations_and_roles() -> None:
    runs = {(v["implementation"], v["role"]) for v in VECTORS}
    assert runs == {
        (impl, role)
        for impl in ("js-libp2p", "py-libp2p")
        for role in ("we_initiate", "they_initiate")
    }
    assert set(DOC["implementations"]) == {"js-libp2p", "py-libp2p"}
    # Every peer run had its own identity and static key.
    assert len({v["remote_peer_id"] for v in VECTORS}) == len(VECTORS)
    assert len({v["remote_static_key"] for v in VECTORS}) == len(VECTORS)
    assert DOC["signature_prefix"] == "noise-libp2p-static-key:"


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
class TestRemotePayload:
    def test_decoder_parses_the_payload(self, vec: dict[str, Any]) -> None:
        parsed = NoiseHandshakePayload.parse(bytes.fromhex(vec["payload"]))
        assert parsed.identity_key == bytes.fromhex(vec["identity_key"])
        assert parsed.identity_sig == bytes.fromhex(vec["identity_sig"])
        assert len(parsed.identity_sig) == 64
        assert len(decode_public_key_proto(parsed.identity_key)) == 32
        if vec["extensions"] is None:
            assert parsed.stream_muxers == ()
        else:  # js-libp2p announces its muxers (early muxer negotiation extension)
            assert parsed.stream_muxers == ("/yamux/1.0.0",)

    def test_signature_verifies_and_peer_id_is_the_announced_one(self, vec: dict[str, Any]) -> None:
        peer = verify_payload(
            bytes.fromhex(vec["payload"]), bytes.fromhex(vec["remote_static_key"])
        )
        assert peer == PeerId.from_string(vec["remote_peer_id"])
        assert str(peer) == vec["remote_peer_id"] == vec["verified_peer_id"]
        assert peer != PeerId.from_string(LOCAL["peer_id"])

    def test_any_flipped_signature_byte_is_refused(self, vec: dict[str, Any]) -> None:
        payload = bytes.fromhex(vec["payload"])
        static = bytes.fromhex(vec["remote_static_key"])
        start = payload.index(bytes.fromhex(vec["identity_sig"]))
        for i in range(start, start + 64):
            with pytest.raises(SecurityHandshakeError):
                verify_payload(_flipped(payload, i), static)

    def test_any_flipped_static_key_byte_is_refused(self, vec: dict[str, Any]) -> None:
        payload = bytes.fromhex(vec["payload"])
        static = bytes.fromhex(vec["remote_static_key"])
        for i in range(len(static)):
            with pytest.raises(SecurityHandshakeError):
                verify_payload(payload, _flipped(static, i))
        # Another run's static key (a valid key, signed by nobody here) is refused too.
        other = next(v for v in VECTORS if v is not vec)
        with pytest.raises(SecurityHandshakeError):
            verify_payload(payload, bytes.fromhex(other["remote_static_key"]))

    def test_any_flipped_identity_key_byte_is_refused(self, vec: dict[str, Any]) -> None:
        payload = bytes.fromhex(vec["payload"])
        static = bytes.fromhex(vec["remote_static_key"])
        key = bytes.fromhex(vec["identity_key"])
        start = payload.index(key)
        for i in range(start, start + len(key)):
            with pytest.raises(SecurityHandshakeError):
                verify_payload(_flipped(payload, i), static)

    def test_our_encoder_produces_the_same_bytes(self, vec: dict[str, Any]) -> None:
        payload = bytes.fromhex(vec["payload"])
        peer = PeerId.from_string(vec["remote_peer_id"])
        parsed = NoiseHandshakePayload.parse(payload)
        # Canonical encodings: PublicKey{Type=Ed25519, Data=key}, then fields 1, 2, (4).
        assert encode_public_key_proto(peer.public_key) == parsed.identity_key
        rebuilt = NoiseHandshakePayload(
            identity_key=encode_public_key_proto(peer.public_key),
            identity_sig=parsed.identity_sig,
            stream_muxers=parsed.stream_muxers,
        )
        assert rebuilt.serialize() == payload
        assert [n for n, _, _ in _layout(payload)] == vec["payload_field_order"]
        assert vec["payload_field_order"] in ([1, 2], [1, 2, 4])


def _local_static() -> NoiseStaticKey:
    identity = Identity.from_seed(bytes.fromhex(LOCAL["identity_seed"]))
    key = X25519PrivateKey.from_private_bytes(bytes.fromhex(LOCAL["static_private_key"]))
    return NoiseStaticKey(identity, key)


def test_our_payload_is_reproducible_and_verifies() -> None:
    static = _local_static()
    assert static.public_key.hex() == LOCAL["static_public_key"]
    assert static.payload.hex() == LOCAL["payload"]  # Ed25519 signatures are deterministic
    peer = verify_payload(static.payload, static.public_key)
    assert str(peer) == LOCAL["peer_id"]
    assert {v["local_peer_id"] for v in VECTORS} == {LOCAL["peer_id"]}


def test_our_payload_layout_matches_the_other_implementations() -> None:
    ours = _layout(bytes.fromhex(LOCAL["payload"]))
    assert ours == [(1, 2, 36), (2, 2, 64)]
    for vec in VECTORS:
        theirs = _layout(bytes.fromhex(vec["payload"]))
        assert theirs[:2] == ours, vec["name"]  # extensions (js only) come after


def test_handshake_exposes_the_remote_static_key_and_verified_payload() -> None:
    a, b = _local_static(), NoiseStaticKey(Identity.generate())
    init = NoiseHandshake(a, initiator=True)
    resp = NoiseHandshake(b, initiator=False)
    assert init.remote_static_key is None
    assert init.remote_payload is None
    resp.receive_data(init.data_to_send())
    assert resp.remote_static_key is None
    assert resp.remote_payload is None
    init.receive_data(resp.data_to_send())
    assert init.remote_static_key == b.public_key
    assert init.remote_payload == b.payload
    resp.receive_data(init.data_to_send())
    assert init.done
    assert resp.done
    assert resp.remote_static_key == a.public_key
    assert resp.remote_payload == a.payload
    assert str(resp.remote_peer) == LOCAL["peer_id"]
