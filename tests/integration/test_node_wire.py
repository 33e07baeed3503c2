"""Wire check: a peer written only from wire-v1-vectors.json's rules talks to a node.

The test peer's framing, Ed25519 -> X25519 conversion, key agreement, HKDF and AEAD are
written here, independently of ``engine.framing`` / ``engine.crypto``, from the rules
stated in ``/work/shared/reference/wire-v1-vectors.json`` and DESIGN.md (they are first
checked against the vectors). It uses only a bare libp2p host for transport and talks to
a node in ``app`` handshake mode.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from multiaddr import Multiaddr
from node_kit import HOST_KINDS, Cluster

from engine.connection_state import ConnectionState
from engine.crypto.identity import Identity, PeerId
from engine.events import EventFilter
from engine.net.interface import P2PHost, P2PStream
from engine.node import Node

VECTORS = Path("/work/shared/reference/wire-v1-vectors.json")
P = 2**255 - 19


# -- the independent implementation ----------------------------------------------------------


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_uvarint(buf: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(buf):
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return None


def frame(payload: bytes) -> bytes:
    inner = uvarint(len(payload)) + payload
    return uvarint(len(inner)) + inner


class Deframer:
    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while True:
            outer = read_uvarint(self.buf, 0)
            if outer is None:
                return out
            m_len, start = outer
            if len(self.buf) < start + m_len:
                return out
            m = self.buf[start : start + m_len]
            self.buf = self.buf[start + m_len :]
            inner = read_uvarint(m, 0)
            assert inner is not None
            p_len, p_start = inner
            assert p_start + p_len == len(m)
            out.append(m[p_start:])


def x25519_private_from_seed(seed: bytes) -> bytes:
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def x25519_public_from_ed25519(pub: bytes) -> bytes:
    y = int.from_bytes(pub, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little")


def stream_key(seed: bytes, peer_pub: bytes) -> bytes:
    priv = X25519PrivateKey.from_private_bytes(x25519_private_from_seed(seed))
    shared = priv.exchange(X25519PublicKey.from_public_bytes(x25519_public_from_ed25519(peer_pub)))
    assert shared != bytes(32)
    return HKDF(hashes.SHA256(), 32, b"", b"glueberry-v1-stream-key").derive(shared)


def seal(key: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, None)


def open_(key: bytes, payload: bytes) -> bytes:
    return ChaCha20Poly1305(key).decrypt(payload[:12], payload[12:], None)


def test_independent_implementation_reproduces_the_vectors() -> None:
    for v in json.loads(VECTORS.read_text())["vectors"]:
        a_seed = bytes.fromhex(v["a"]["ed25519_seed_hex"])
        b_seed = bytes.fromhex(v["b"]["ed25519_seed_hex"])
        a_pub = bytes.fromhex(v["a"]["ed25519_pub_hex"])
        b_pub = bytes.fromhex(v["b"]["ed25519_pub_hex"])
        assert x25519_public_from_ed25519(a_pub).hex() == v["a"]["x25519_pub_hex"]
        assert x25519_private_from_seed(a_seed).hex() == v["a"]["x25519_priv_hex"]
        key = stream_key(a_seed, b_pub)
        assert key == stream_key(b_seed, a_pub)
        assert key.hex() == v["stream_key_hex"]
        nonce = bytes.fromhex(v["nonce_hex"])
        payload = nonce + ChaCha20Poly1305(key).encrypt(
            nonce, bytes.fromhex(v["plaintext_hex"]), None
        )
        assert frame(payload).hex() == v["frame_hex"]
        assert Deframer().feed(bytes.fromhex(v["frame_hex"])) == [payload]


# -- the test peer ---------------------------------------------------------------------------


class WirePeer:
    """A bare host plus the hand-written Glueberry v1 protocol of this file."""

    def __init__(self, host: P2PHost, seed: bytes) -> None:
        self.host = host
        self.seed = seed
        self.identity = Identity.from_seed(seed)
        self.key: bytes | None = None
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.node_ready = asyncio.Event()
        self.hs_stream: P2PStream | None = None
        host.set_stream_handler("/glueberry/handshake/1.0.0", self.on_handshake)
        host.set_stream_handler("/glueberry/stream/wire/1.0.0", self.on_wire)

    async def on_handshake(self, stream: P2PStream) -> None:
        self.hs_stream = stream
        deframer = Deframer()
        while chunk := await stream.read():
            for msg in deframer.feed(chunk):
                if msg.startswith(b"KEY"):
                    self.key = stream_key(self.seed, msg[3:])
                    await stream.write(frame(b"KEY" + self.identity.public_key))
                elif msg == b"READY":  # the node prepared: it can receive from us
                    self.node_ready.set()
                    await stream.write(frame(b"READY"))

    async def on_wire(self, stream: P2PStream) -> None:
        deframer = Deframer()
        while chunk := await stream.read():
            for payload in deframer.feed(chunk):
                assert self.key is not None
                await self.received.put(open_(self.key, payload))

    async def send(self, peer: PeerId, messages: list[bytes]) -> None:
        assert self.key is not None
        stream = await self.host.new_stream(peer, ["/glueberry/stream/wire/1.0.0"], timeout=5)
        await stream.write(b"".join(frame(seal(self.key, m)) for m in messages))
        await stream.close_write()


async def node_app(node: Node) -> None:
    """The node's application side of the test handshake."""
    with (
        node.handshake_messages() as hs,
        node.subscribe(EventFilter(states={ConnectionState.CONNECTED})) as events,
    ):
        event = await anext(events)
        await node.send_handshake_message(event.peer_id, b"KEY" + node.public_key)
        async for msg in hs:
            if msg.data.startswith(b"KEY"):
                await node.prepare_streams(msg.peer_id, msg.data[3:], ["wire"])
                await node.send_handshake_message(msg.peer_id, b"READY")
            elif msg.data == b"READY":
                await node.finalize_handshake(msg.peer_id)


@pytest.fixture(params=HOST_KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(request.param, tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def make_peer_host(cluster: Cluster, identity: Identity) -> Any:
    if cluster.kind == "memory":
        host: Any = cluster.net.create_host(identity.peer_id, ip="127.0.0.200")
    else:
        from engine.net.host import Host

        host = Host(identity, cluster.config())
    await host.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
    return host


async def test_wire_peer_exchanges_encrypted_messages_with_app_mode_node(
    cluster: Cluster,
) -> None:
    seed = os.urandom(32)
    peer_host = await make_peer_host(cluster, Identity.from_seed(seed))
    peer = WirePeer(peer_host, seed)
    node = await cluster.node(handshake_mode="app")
    app = asyncio.ensure_future(node_app(node))
    try:
        await node.add_peer(peer.identity.peer_id, [str(a) for a in peer_host.listen_addrs()])
        await node.connect(peer.identity.peer_id, timeout=10)
        await asyncio.wait_for(peer.node_ready.wait(), 5)
        # node -> peer
        outgoing = [b"to-peer-%d" % i for i in range(100)]
        for m in outgoing:
            await node.send(peer.identity.peer_id, "wire", m)
        async with asyncio.timeout(10):
            got = [await peer.received.get() for _ in outgoing]
        assert got == outgoing
        # peer -> node
        sub = node.messages(stream="wire")
        incoming = [b"to-node-%d" % i + bytes(i) for i in range(100)]
        await peer.send(node.peer_id, incoming)
        async with asyncio.timeout(10):
            received = [(await anext(sub)).data for _ in incoming]
        assert received == incoming
    finally:
        app.cancel()
        await asyncio.gather(app, return_exceptions=True)
        await node.stop()
        await peer_host.close()
