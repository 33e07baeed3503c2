"""Noise XX (cacophony vector), the libp2p handshake payload, transport framing, fuzz."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from engine.crypto.identity import Identity
from engine.errors import (
    ConnectionClosedError,
    DecryptionError,
    LocalProtocolError,
    MalformedFrameError,
    PeerIdMismatchError,
    SecurityHandshakeError,
)
from engine.net.noise import (
    MAX_NOISE_MESSAGE,
    MAX_PLAINTEXT_CHUNK,
    CipherState,
    NoiseHandshake,
    NoiseStaticKey,
    NoiseTransport,
    XXHandshakeState,
    noise_handshake,
)
from engine.net.protobuf import NoiseHandshakePayload

# Noise_XX_25519_ChaChaPoly_SHA256 from the cacophony test vectors (vectors/cacophony.txt
# of the Haskell cacophony project, also used by snow and noiseprotocol). Messages
# alternate initiator / responder; 0-2 are the handshake, 3-5 transport messages.
CACOPHONY_XX = {
    "prologue": "4a6f686e2047616c74",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "messages": [
        (
            "4c756477696720766f6e204d69736573",
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
            "4c756477696720766f6e204d69736573",
        ),
        (
            "4d757272617920526f746862617264",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48"
            "378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b78155"
            "28f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad",
        ),
        (
            "462e20412e20486179656b",
            "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae8"
            "0a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030",
        ),
        ("4361726c204d656e676572", "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df"),
        (
            "4a65616e2d426170746973746520536179",
            "3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5",
        ),
        (
            "457567656e2042f6686d20766f6e2042617765726b",
            "eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f",
        ),
    ],
}


def _key(name: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(str(CACOPHONY_XX[name])))


def test_cacophony_xx_vector() -> None:
    prologue = bytes.fromhex(str(CACOPHONY_XX["prologue"]))
    init = XXHandshakeState(
        initiator=True,
        static_key=_key("init_static"),
        prologue=prologue,
        ephemeral_key=_key("init_ephemeral"),
    )
    resp = XXHandshakeState(
        initiator=False,
        static_key=_key("resp_static"),
        prologue=prologue,
        ephemeral_key=_key("resp_ephemeral"),
    )
    messages = CACOPHONY_XX["messages"]
    assert isinstance(messages, list)
    for i, (payload_hex, ct_hex) in enumerate(messages[:3]):
        writer, reader = (init, resp) if i % 2 == 0 else (resp, init)
        payload = bytes.fromhex(payload_hex)
        ct = writer.write_message(payload)
        assert ct.hex() == ct_hex, f"handshake message {i}"
        assert reader.read_message(ct) == payload
    assert init.finished
    assert resp.finished
    assert init.handshake_hash == resp.handshake_hash
    i_send, i_recv = init.split()
    r_send, r_recv = resp.split()
    for i, (payload_hex, ct_hex) in enumerate(messages[3:], start=3):
        send, recv = (i_send, r_recv) if i % 2 == 0 else (r_send, i_recv)
        payload = bytes.fromhex(payload_hex)
        ct = send.encrypt_with_ad(b"", payload)
        assert ct.hex() == ct_hex, f"transport message {i}"
        assert recv.decrypt_with_ad(b"", ct) == payload


def test_out_of_turn_is_a_local_error() -> None:
    state = XXHandshakeState(initiator=False, static_key=X25519PrivateKey.generate())
    with pytest.raises(LocalProtocolError):
        state.write_message(b"")
    with pytest.raises(LocalProtocolError):
        state.split()


def test_cipher_state_nonce_is_little_endian_counter() -> None:
    key = bytes(range(32))
    a, b = CipherState(key), CipherState(key)
    a.n = b.n = 0x0102030405060708
    ct = a.encrypt_with_ad(b"ad", b"x")
    assert b.decrypt_with_ad(b"ad", ct) == b"x"
    assert a.n == b.n == 0x0102030405060709
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    nonce = bytes(4) + (0x0102030405060708).to_bytes(8, "little")
    assert ChaCha20Poly1305(key).decrypt(nonce, ct, b"ad") == b"x"


def test_failed_decrypt_does_not_advance_nonce() -> None:
    key = bytes(32)
    a, b = CipherState(key), CipherState(key)
    ct = a.encrypt_with_ad(b"", b"hello")
    with pytest.raises(DecryptionError):
        b.decrypt_with_ad(b"", ct[:-1] + bytes([ct[-1] ^ 1]))
    assert b.decrypt_with_ad(b"", ct) == b"hello"


def test_nonce_exhaustion_refuses() -> None:
    c = CipherState(bytes(32))
    c.n = 2**64 - 1
    with pytest.raises(LocalProtocolError):
        c.encrypt_with_ad(b"", b"x")


# -- the libp2p handshake -----------------------------------------------------------------


def pair(
    expected: Identity | None = None,
) -> tuple[Identity, Identity, NoiseHandshake, NoiseHandshake]:
    ia, ib = Identity.generate(), Identity.generate()
    init = NoiseHandshake(
        NoiseStaticKey(ia),
        initiator=True,
        expected_peer=(expected or ib).peer_id,
    )
    resp = NoiseHandshake(NoiseStaticKey(ib), initiator=False)
    return ia, ib, init, resp


def shuttle(init: NoiseHandshake, resp: NoiseHandshake) -> None:
    for _ in range(8):
        out = init.data_to_send()
        if out:
            resp.receive_data(out)
        back = resp.data_to_send()
        if back:
            init.receive_data(back)
        if init.done and resp.done:
            return
    raise AssertionError("handshake did not finish")


def test_libp2p_handshake_authenticates_both_peers() -> None:
    ia, ib, init, resp = pair()
    shuttle(init, resp)
    assert init.remote_peer == ib.peer_id
    assert resp.remote_peer == ia.peer_id
    t_init, t_resp = init.transport(), resp.transport()
    assert t_resp.receive_data(t_init.encrypt(b"ping")) == [b"ping"]
    assert t_init.receive_data(t_resp.encrypt(b"pong")) == [b"pong"]


def test_handshake_messages_are_length_prefixed() -> None:
    _, _, init, _ = pair()
    first = init.data_to_send()
    assert struct.unpack(">H", first[:2])[0] == len(first) - 2 == 32  # e, empty payload


def test_expected_peer_mismatch() -> None:
    _, _, init, resp = pair(expected=Identity.generate())
    with pytest.raises(PeerIdMismatchError):
        shuttle(init, resp)
    with pytest.raises(SecurityHandshakeError):  # failed stays failed
        init.receive_data(b"")


def test_tampered_ephemeral_key_fails_at_message_2() -> None:
    _, _, init, resp = pair()
    first = bytearray(init.data_to_send())
    first[5] ^= 0x40  # message 1 has no tag: a changed key shows up one message later
    resp.receive_data(bytes(first))
    second = resp.data_to_send()
    with pytest.raises(SecurityHandshakeError):
        init.receive_data(second)


@pytest.mark.parametrize("index", [1, 2])
def test_tampering_fails_with_security_handshake_error(index: int) -> None:
    _, _, init, resp = pair()
    resp.receive_data(init.data_to_send())
    second = bytearray(resp.data_to_send())
    if index == 1:
        second[-3] ^= 0x01
        with pytest.raises(SecurityHandshakeError):
            init.receive_data(bytes(second))
        return
    init.receive_data(bytes(second))
    third = bytearray(init.data_to_send())
    third[40] ^= 0x01
    with pytest.raises(SecurityHandshakeError):
        resp.receive_data(bytes(third))


def test_bad_signature_is_refused() -> None:
    ia, ib = Identity.generate(), Identity.generate()
    liar = NoiseStaticKey(ib)
    # identity_key of B, but the signature made by A over the static key
    liar.payload = NoiseHandshakePayload(
        identity_key=NoiseHandshakePayload.parse(liar.payload).identity_key,
        identity_sig=ia.sign(b"noise-libp2p-static-key:" + liar.public_key),
    ).serialize()
    init = NoiseHandshake(NoiseStaticKey(ia), initiator=True)
    resp = NoiseHandshake(liar, initiator=False)
    resp.receive_data(init.data_to_send())
    with pytest.raises(SecurityHandshakeError, match="signature"):
        init.receive_data(resp.data_to_send())


def test_non_ed25519_identity_is_refused() -> None:
    ia, ib = Identity.generate(), Identity.generate()
    odd = NoiseStaticKey(ib)
    odd.payload = NoiseHandshakePayload(
        identity_key=b"\x08\x02\x12\x21" + bytes(33), identity_sig=b"x"
    ).serialize()
    init = NoiseHandshake(NoiseStaticKey(ia), initiator=True)
    resp = NoiseHandshake(odd, initiator=False)
    resp.receive_data(init.data_to_send())
    with pytest.raises(SecurityHandshakeError):
        init.receive_data(resp.data_to_send())


def test_data_pipelined_after_message_3_reaches_the_transport() -> None:
    _, _, init, resp = pair()
    resp.receive_data(init.data_to_send())
    init.receive_data(resp.data_to_send())
    assert init.done
    early = init.transport().encrypt(b"early")
    resp.receive_data(init.data_to_send() + early)
    assert resp.done
    assert resp.transport().receive_data() == [b"early"]


# -- transport framing ----------------------------------------------------------------------


def transports() -> tuple[NoiseTransport, NoiseTransport]:
    _, _, init, resp = pair()
    shuttle(init, resp)
    return init.transport(), resp.transport()


def test_large_writes_are_split_into_max_size_frames() -> None:
    a, b = transports()
    data = bytes(range(256)) * 600  # 153,600 bytes -> 3 frames
    wire = a.encrypt(data)
    sizes = []
    pos = 0
    while pos < len(wire):
        (n,) = struct.unpack_from(">H", wire, pos)
        sizes.append(n)
        pos += 2 + n
    assert sizes == [MAX_NOISE_MESSAGE, MAX_NOISE_MESSAGE, len(data) - 2 * MAX_PLAINTEXT_CHUNK + 16]
    assert b"".join(b.receive_data(wire)) == data


def test_frames_across_arbitrary_chunk_boundaries() -> None:
    a, b = transports()
    wire = a.encrypt(b"one") + a.encrypt(b"two") + a.encrypt(b"")
    got: list[bytes] = []
    for i in range(len(wire)):
        got += b.receive_data(wire[i : i + 1])
    assert got == [b"one", b"two", b""]
    assert b.buffered == 0


def test_transport_tamper_and_short_frame() -> None:
    a, b = transports()
    wire = bytearray(a.encrypt(b"data"))
    wire[4] ^= 1
    with pytest.raises(DecryptionError):
        b.receive_data(bytes(wire))
    _, c = transports()
    with pytest.raises(MalformedFrameError):
        c.receive_data(b"\x00\x03abc")


@given(st.binary(max_size=4096))
def test_random_bytes_into_handshake_give_typed_errors_only(data: bytes) -> None:
    hs = NoiseHandshake(NoiseStaticKey(_IDENT), initiator=False)
    try:
        hs.receive_data(data)
        hs.data_to_send()
    except (SecurityHandshakeError, PeerIdMismatchError):
        pass


@given(st.binary(max_size=4096))
def test_random_bytes_into_initiator_give_typed_errors_only(data: bytes) -> None:
    hs = NoiseHandshake(NoiseStaticKey(_IDENT), initiator=True)
    with contextlib.suppress(SecurityHandshakeError, PeerIdMismatchError):
        hs.receive_data(data)


@given(st.binary(max_size=2048))
def test_random_bytes_into_transport_give_typed_errors_only(data: bytes) -> None:
    t = NoiseTransport(CipherState(bytes(32)), CipherState(bytes(32)))
    with contextlib.suppress(DecryptionError, MalformedFrameError):
        t.receive_data(data)
    assert t.buffered <= 2 + MAX_NOISE_MESSAGE


_IDENT = Identity.generate()


# -- asyncio channel over real sockets ------------------------------------------------------


async def test_noise_channel_over_tcp() -> None:
    ia, ib = Identity.generate(), Identity.generate()
    server_result: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chan = await noise_handshake(reader, writer, NoiseStaticKey(ib), initiator=False)
        got = bytearray()
        while True:
            data = await chan.read()
            if not data:
                break
            got += data
        await chan.write(b"bye")
        await chan.aclose()
        server_result.set_result(bytes(got))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chan = await noise_handshake(
        reader, writer, NoiseStaticKey(ia), initiator=True, expected_peer=ib.peer_id
    )
    assert chan.remote_peer == ib.peer_id
    payload = bytes(range(256)) * 1000
    await chan.write(payload)
    writer.write_eof()
    assert await asyncio.wait_for(server_result, 5) == payload
    assert await asyncio.wait_for(chan.read(), 5) == b"bye"
    assert await asyncio.wait_for(chan.read(), 5) == b""
    await chan.aclose()
    await chan.aclose()
    with pytest.raises(ConnectionClosedError):
        await chan.write(b"x")
    server.close()
    await server.wait_closed()


async def test_handshake_peer_hangs_up() -> None:
    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with pytest.raises(SecurityHandshakeError):
        await asyncio.wait_for(
            noise_handshake(reader, writer, NoiseStaticKey(_IDENT), initiator=True), 5
        )
    writer.close()
    server.close()
    await server.wait_closed()


@given(
    st.lists(st.binary(max_size=3000), min_size=1, max_size=8),
    st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=20),
)
def test_any_writes_any_chunking_round_trip(writes: list[bytes], cuts: list[int]) -> None:
    a, b = _TRANSPORTS
    wire = b"".join(a.encrypt(w) for w in writes)
    got: list[bytes] = []
    pos = 0
    for cut in cuts * (len(wire) // max(1, sum(cuts)) + 1):
        if pos >= len(wire):
            break
        got += b.receive_data(wire[pos : pos + cut])
        pos += cut
    got += b.receive_data(wire[pos:])
    assert b"".join(got) == b"".join(writes)
    assert b.buffered == 0


_TRANSPORTS = transports()
