"""Our libp2p Noise handshake against an independent Noise implementation.

The ``noiseprotocol`` package (the one py-libp2p uses; a test-only dependency through
``libp2p``) plays the other side with the libp2p payload built by hand, in both roles.
Everything is deterministic (fixed X25519 keys, Ed25519 signatures are deterministic), so
the first handshake message is also pinned as a regression vector.
"""

from __future__ import annotations

import struct
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from engine.crypto.identity import Identity, encode_public_key_proto
from engine.net.noise import NoiseHandshake, NoiseStaticKey, verify_payload
from engine.net.protobuf import NoiseHandshakePayload

noise_connection = pytest.importorskip("noise.connection")

OUR_SEED = bytes(range(32))
THEIR_SEED = bytes(range(32, 64))
OUR_STATIC = bytes.fromhex("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1")
OUR_EPHEMERAL = bytes.fromhex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
THEIR_STATIC = bytes.fromhex("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893")
THEIR_EPHEMERAL = bytes.fromhex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")


def frame(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


def unframe(data: bytes) -> bytes:
    (length,) = struct.unpack(">H", data[:2])
    assert len(data) == 2 + length
    return data[2:]


def reference(initiator: bool) -> tuple[object, bytes]:
    """A noiseprotocol peer with fixed keys; returns it and its signed libp2p payload."""
    keypair = noise_connection.Keypair
    conn = noise_connection.NoiseConnection.from_name(b"Noise_XX_25519_ChaChaPoly_SHA256")
    conn.set_keypair_from_private_bytes(keypair.STATIC, THEIR_STATIC)
    conn.set_keypair_from_private_bytes(keypair.EPHEMERAL, THEIR_EPHEMERAL)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_prologue(b"")
    with warnings.catch_warnings():  # it warns (rightly) about a fixed ephemeral key
        warnings.simplefilter("ignore", UserWarning)
        conn.start_handshake()
    them = Identity.from_seed(THEIR_SEED)
    static_pub = X25519PrivateKey.from_private_bytes(THEIR_STATIC).public_key().public_bytes_raw()
    payload = NoiseHandshakePayload(
        identity_key=encode_public_key_proto(them.public_key),
        identity_sig=them.sign(b"noise-libp2p-static-key:" + static_pub),
    ).serialize()
    return conn, payload


def ours(initiator: bool) -> NoiseHandshake:
    me = Identity.from_seed(OUR_SEED)
    static = NoiseStaticKey(me, X25519PrivateKey.from_private_bytes(OUR_STATIC))
    return NoiseHandshake(
        static,
        initiator=initiator,
        expected_peer=Identity.from_seed(THEIR_SEED).peer_id if initiator else None,
        ephemeral_key=X25519PrivateKey.from_private_bytes(OUR_EPHEMERAL),
    )


def test_we_initiate_against_noiseprotocol() -> None:
    ref, their_payload = reference(initiator=False)
    hs = ours(initiator=True)
    first = hs.data_to_send()
    # pinned: "-> e" with our fixed ephemeral key and the empty libp2p payload
    assert first.hex() == ("0020ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944")
    assert ref.read_message(unframe(first)) == b""  # type: ignore[attr-defined]
    hs.receive_data(frame(ref.write_message(their_payload)))  # type: ignore[attr-defined]
    assert hs.remote_peer == Identity.from_seed(THEIR_SEED).peer_id
    our_payload = ref.read_message(unframe(hs.data_to_send()))  # type: ignore[attr-defined]
    our_static = X25519PrivateKey.from_private_bytes(OUR_STATIC).public_key().public_bytes_raw()
    assert verify_payload(our_payload, our_static) == Identity.from_seed(OUR_SEED).peer_id
    assert hs.done
    transport = hs.transport()
    ct = unframe(transport.encrypt(b"hello reference"))
    assert ref.decrypt(ct) == b"hello reference"  # type: ignore[attr-defined]
    back = ref.encrypt(b"hello glueberry")  # type: ignore[attr-defined]
    assert transport.receive_data(frame(back)) == [b"hello glueberry"]


def test_noiseprotocol_initiates_against_us() -> None:
    ref, their_payload = reference(initiator=True)
    hs = ours(initiator=False)
    hs.receive_data(frame(ref.write_message(b"")))  # type: ignore[attr-defined]
    our_payload = ref.read_message(unframe(hs.data_to_send()))  # type: ignore[attr-defined]
    our_static = X25519PrivateKey.from_private_bytes(OUR_STATIC).public_key().public_bytes_raw()
    assert verify_payload(our_payload, our_static) == Identity.from_seed(OUR_SEED).peer_id
    hs.receive_data(frame(ref.write_message(their_payload)))  # type: ignore[attr-defined]
    assert hs.done
    assert hs.remote_peer == Identity.from_seed(THEIR_SEED).peer_id
    transport = hs.transport()
    assert transport.receive_data(frame(ref.encrypt(b"ping"))) == [b"ping"]  # type: ignore[attr-defined]
    assert ref.decrypt(unframe(transport.encrypt(b"pong"))) == b"pong"  # type: ignore[attr-defined]
