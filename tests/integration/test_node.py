"""Two and three real nodes (memory host and TCP host on 127.0.0.1): handshake, streams,
blacklist, cooldown, flow control, oversized and tampered frames."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from node_kit import HOST_KINDS, Cluster, connect_pair, introduce, wait_state

from engine.connection_state import ConnectionState
from engine.crypto.cipher import Cipher
from engine.crypto.identity import PeerId
from engine.crypto.keys import derive_stream_key
from engine.errors import (
    DecryptionError,
    DialTimeoutError,
    GlueberryError,
    HandshakeTimeoutError,
    InvalidStreamNameError,
    MessageTooLargeError,
    NotEstablishedError,
    PeerBlacklistedError,
    PeerInCooldownError,
)
from engine.events import EventFilter
from engine.framing import encode_frame
from engine.handshake import stream_protocol
from engine.net.interface import P2PStream
from engine.node import HandshakeMessage, IncomingMessage, Node
from engine.varint import encode_uvarint

N_MESSAGES = 10_000


@pytest.fixture(params=HOST_KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(request.param, tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def collect(sub: AsyncIterator[IncomingMessage], n: int) -> list[bytes]:
    out: list[bytes] = []
    async for msg in sub:
        out.append(msg.data)
        if len(out) == n:
            break
    return out


async def exchange(a: Node, b: Node, streams: tuple[str, ...], n: int) -> None:
    """Send ``n`` numbered messages per stream in both directions; check order and count."""
    subs = {
        (node.peer_id, name): node.messages(stream=name, peer=other.peer_id)
        for node, other in ((a, b), (b, a))
        for name in streams
    }
    collectors = {key: asyncio.ensure_future(collect(sub, n)) for key, sub in subs.items()}

    async def pump(src: Node, dst: Node, name: str) -> None:
        for i in range(n):
            await src.send(dst.peer_id, name, i.to_bytes(4, "big") + name.encode())

    async with asyncio.timeout(60):
        await asyncio.gather(
            *(pump(src, dst, name) for src, dst in ((a, b), (b, a)) for name in streams)
        )
        for (receiver, name), fut in collectors.items():
            got = await fut
            assert len(got) == n
            expected = [i.to_bytes(4, "big") + name.encode() for i in range(n)]
            assert got == expected, f"order or content broken on {name} at {receiver}"
    for sub in subs.values():
        assert sub.dropped == 0
        sub.unsubscribe()


async def test_auto_handshake_and_10k_messages_on_two_streams(cluster: Cluster) -> None:
    streams = ("alpha", "beta")
    a = await cluster.node(default_streams=list(streams), message_buffer_size=N_MESSAGES)
    b = await cluster.node(default_streams=list(streams), message_buffer_size=N_MESSAGES)
    await connect_pair(a, b)
    assert a.connection_state(b.peer_id) is ConnectionState.ESTABLISHED
    assert b.connection_state(a.peer_id) is ConnectionState.ESTABLISHED
    assert a.is_outbound(b.peer_id)
    assert not b.is_outbound(a.peer_id)
    await exchange(a, b, streams, N_MESSAGES)
    assert a.messages_sent(b.peer_id) == 2 * N_MESSAGES
    stats = a.peer_stats(b.peer_id)
    assert stats is not None


async def app_driver(node: Node, names: list[str]) -> None:
    """An application-side handshake: send our key, prepare on theirs, then ready/finalize."""
    ready_sent: set[PeerId] = set()
    prepared: set[PeerId] = set()
    with (
        node.handshake_messages() as hs,
        node.subscribe(EventFilter(states={ConnectionState.CONNECTED})) as events,
    ):

        async def on_connected() -> None:
            async for event in events:
                await node.send_handshake_message(event.peer_id, b"KEY" + node.public_key)

        greeter = asyncio.ensure_future(on_connected())
        try:
            async for msg in hs:
                assert isinstance(msg, HandshakeMessage)
                if msg.data.startswith(b"KEY"):
                    await node.prepare_streams(msg.peer_id, msg.data[3:], names)
                    prepared.add(msg.peer_id)
                    await node.send_handshake_message(msg.peer_id, b"READY")
                    ready_sent.add(msg.peer_id)
                elif msg.data == b"READY":
                    assert msg.peer_id in prepared
                    await node.finalize_handshake(msg.peer_id)
        finally:
            greeter.cancel()
            await asyncio.gather(greeter, return_exceptions=True)


async def test_app_mode_handshake_and_10k_messages(cluster: Cluster) -> None:
    streams = ("one", "two")
    cfg = {"handshake_mode": "app", "message_buffer_size": N_MESSAGES}
    a = await cluster.node(**cfg)
    b = await cluster.node(**cfg)
    drivers = [asyncio.ensure_future(app_driver(n, list(streams))) for n in (a, b)]
    try:
        await connect_pair(a, b)
        await exchange(a, b, streams, N_MESSAGES)
    finally:
        for d in drivers:
            d.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)


async def test_blacklisted_third_node_can_neither_connect_nor_be_connected(
    cluster: Cluster,
) -> None:
    a = await cluster.node()
    b = await cluster.node()
    c = await cluster.node()
    await connect_pair(a, b)
    await a.blacklist_peer(c.peer_id, reason="test")
    assert a.is_blacklisted(c.peer_id)
    await introduce(c, a)
    with pytest.raises(GlueberryError):
        await c.connect(a.peer_id, timeout=5)
    assert a.connection_state(c.peer_id) is ConnectionState.DISCONNECTED
    await introduce(a, c)
    with pytest.raises(PeerBlacklistedError):
        await a.connect(c.peer_id, timeout=5)
    assert c.peer_id not in a.connected_peers()
    assert [ban.target for ban in await a.list_blacklist()] == [c.peer_id.to_string()]
    # A connected peer is dropped at once when banned, and may come back when unbanned.
    await a.blacklist_peer(b.peer_id)
    await wait_state(a, b.peer_id, ConnectionState.DISCONNECTED)
    await wait_state(b, a.peer_id, ConnectionState.DISCONNECTED, ConnectionState.RECONNECTING)
    await a.unblacklist(b.peer_id.to_string())
    b.cancel_reconnection(a.peer_id)
    await a.connect(b.peer_id, timeout=5)


async def test_cidr_ban_drops_and_refuses(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node(ip="127.0.0.9")
    await connect_pair(a, b)
    cidr = "127.0.0.9/32" if cluster.kind == "memory" else "127.0.0.0/8"
    await a.blacklist_cidr(cidr, reason="range")
    await wait_state(a, b.peer_id, ConnectionState.DISCONNECTED)
    b.cancel_reconnection(a.peer_id)
    await wait_state(b, a.peer_id, ConnectionState.DISCONNECTED)
    with pytest.raises(GlueberryError):
        await b.connect(a.peer_id, timeout=5)
    with pytest.raises(GlueberryError):
        await a.connect(b.peer_id, timeout=5)


async def test_handshake_timeout_puts_peer_in_cooldown(cluster: Cluster) -> None:
    # App mode with no application: nobody drives the handshake.
    a = await cluster.node(handshake_mode="app", handshake_timeout=0.2)
    b = await cluster.node(handshake_mode="app", handshake_timeout=0.2)
    await introduce(a, b)
    with a.subscribe(EventFilter(peers={b.peer_id})) as events:
        with pytest.raises(HandshakeTimeoutError):
            await a.connect(b.peer_id, timeout=5)
        states = []
        async with asyncio.timeout(5):
            async for event in events:
                states.append(event.state)
                if event.state is ConnectionState.COOLDOWN:
                    assert event.error_code == "handshake_timeout"
                    break
    assert states[-2:] == [ConnectionState.CONNECTED, ConnectionState.COOLDOWN]
    status = a.peer_status(b.peer_id)
    assert status.state is ConnectionState.COOLDOWN
    assert status.cooldown_until is not None
    with pytest.raises(PeerInCooldownError):
        await a.connect(b.peer_id, timeout=5)
    await wait_state(b, a.peer_id, ConnectionState.COOLDOWN)


async def test_connect_timeout_leaves_no_task(cluster: Cluster) -> None:
    a = await cluster.node(handshake_mode="app")
    b = await cluster.node(handshake_mode="app")
    await introduce(a, b)
    baseline = len(asyncio.all_tasks())
    for _ in range(3):
        with pytest.raises(DialTimeoutError):
            await a.connect(b.peer_id, timeout=0.05)
    await a.disconnect(b.peer_id)
    await wait_state(b, a.peer_id, ConnectionState.DISCONNECTED, ConnectionState.COOLDOWN)
    for _ in range(100):  # bounded: let the transport's close tasks finish
        if len(asyncio.all_tasks()) <= baseline:
            break
        await asyncio.sleep(0.01)
    assert len(asyncio.all_tasks()) <= baseline


async def test_send_errors(cluster: Cluster) -> None:
    a = await cluster.node(max_message_size=1024)
    b = await cluster.node()
    with pytest.raises(NotEstablishedError):
        await a.send(b.peer_id, "messages", b"x")
    await connect_pair(a, b)
    with pytest.raises(InvalidStreamNameError):
        await a.send(b.peer_id, "nope", b"x")
    with pytest.raises(MessageTooLargeError):
        await a.send(b.peer_id, "messages", bytes(1025))


async def test_concurrent_first_sends_from_both_sides_lose_nothing(cluster: Cluster) -> None:
    a = await cluster.node(default_streams=["x"])
    b = await cluster.node(default_streams=["x"])
    await connect_pair(a, b)
    sub_a = a.messages(stream="x")
    sub_b = b.messages(stream="x")
    # Both sides open "x" at the same time, 50 concurrent senders each.
    await asyncio.gather(
        *(a.send(b.peer_id, "x", b"a%d" % i) for i in range(50)),
        *(b.send(a.peer_id, "x", b"b%d" % i) for i in range(50)),
    )
    async with asyncio.timeout(10):
        got_b = set(await collect(sub_b, 50))
        got_a = set(await collect(sub_a, 50))
    assert got_b == {b"a%d" % i for i in range(50)}
    assert got_a == {b"b%d" % i for i in range(50)}


async def test_200_blocked_senders_all_complete(cluster: Cluster) -> None:
    a = await cluster.node(default_streams=["s"], high_watermark=4, low_watermark=1)
    b = await cluster.node(default_streams=["s"], message_buffer_size=1000)
    await connect_pair(a, b)
    sub = b.messages(stream="s")
    await asyncio.wait_for(
        asyncio.gather(*(a.send(b.peer_id, "s", b"%d" % i + bytes(2000)) for i in range(200))),
        30,
    )
    async with asyncio.timeout(10):
        got = await collect(sub, 200)
    assert sorted(int(m[:-2000]) for m in got) == list(range(200))


async def test_deprecated_complete_handshake_warns(cluster: Cluster) -> None:
    a = await cluster.node(handshake_mode="app", handshake_timeout=5)
    b = await cluster.node(handshake_mode="app", handshake_timeout=5)
    await introduce(a, b)
    connecting = asyncio.ensure_future(a.connect(b.peer_id, timeout=5))
    await wait_state(b, a.peer_id, ConnectionState.CONNECTED)
    await wait_state(a, b.peer_id, ConnectionState.CONNECTED)
    with pytest.warns(DeprecationWarning, match="complete_handshake"):
        await b.complete_handshake(a.peer_id, a.public_key, ["messages"])
    with pytest.warns(DeprecationWarning, match="complete_handshake"):
        await a.complete_handshake(b.peer_id, b.public_key, ["messages"])
    await connecting
    sub = b.messages()
    await a.send(b.peer_id, "messages", b"hi")
    async with asyncio.timeout(5):
        assert await collect(sub, 1) == [b"hi"]


async def raw_stream_to(a: Node, b: Node, name: str) -> P2PStream:
    """A raw libp2p stream from a's host to b's named stream (bypassing a's node)."""
    return await a.host.new_stream(b.peer_id, [stream_protocol(name)], timeout=5)


async def test_tampered_frame_is_dropped_reported_and_stream_survives(cluster: Cluster) -> None:
    errors: list[tuple[PeerId, str, DecryptionError]] = []
    a = await cluster.node(default_streams=["t"])
    b = await cluster.node(
        default_streams=["t"], on_decryption_error=lambda p, s, e: errors.append((p, s, e))
    )
    await connect_pair(a, b)
    sub = b.messages(stream="t")
    with derive_stream_key(a._identity, b.public_key) as key, Cipher(key) as cipher:
        good = cipher.encrypt(b"genuine")
        tampered = bytearray(cipher.encrypt(b"evil"))
        tampered[-1] ^= 0x01
        stream = await raw_stream_to(a, b, "t")
        await stream.write(encode_frame(bytes(tampered)) + encode_frame(good))
    async with asyncio.timeout(5):
        assert await collect(sub, 1) == [b"genuine"]
    assert len(errors) == 1
    assert errors[0][0] == a.peer_id
    assert errors[0][1] == "t"
    stats = b.peer_stats(a.peer_id)
    assert stats is not None
    assert stats.decryption_errors == 1
    await stream.aclose()


def rss() -> int:
    gc.collect()
    return int(psutil.Process(os.getpid()).memory_info().rss)


async def push(stream: P2PStream, header: bytes) -> None:
    await stream.write(header + bytes(1024 * 1024))
    for _ in range(64):
        await stream.write(bytes(64 * 1024))


async def test_oversized_frame_dropped_without_memory_growth(cluster: Cluster) -> None:
    a = await cluster.node(default_streams=["big"])
    b = await cluster.node(default_streams=["big"], max_message_size=64 * 1024)
    await connect_pair(a, b)
    before = rss()
    for _ in range(20):
        stream = await raw_stream_to(a, b, "big")
        # Announce a 512 MiB frame, then push 1 MiB of its body.
        header = encode_uvarint(512 * 1024 * 1024 + 5) + encode_uvarint(512 * 1024 * 1024)
        with pytest.raises(GlueberryError):
            await push(stream, header)
        await stream.aclose()
    grown = rss() - before
    assert grown < 32 * 1024 * 1024, f"receiver grew by {grown} bytes"
    stats = b.peer_stats(a.peer_id)
    assert stats is not None
    assert stats.dropped.get("oversized", 0) >= 1
    # The peer is still fine: a normal message goes through.
    sub = b.messages(stream="big")
    await a.send(b.peer_id, "big", b"ok")
    async with asyncio.timeout(5):
        assert await collect(sub, 1) == [b"ok"]


async def test_late_handshake_timer_never_hits_an_established_peer(cluster: Cluster) -> None:
    # Plan 1.3: the timer armed on entering "connected" must be a no-op once the peer is
    # established, however close the two are.
    a = await cluster.node(handshake_timeout=0.3)
    b = await cluster.node(handshake_timeout=0.3)
    await connect_pair(a, b)
    with pytest.raises(TimeoutError):
        await wait_state(a, b.peer_id, ConnectionState.COOLDOWN, timeout=0.6)
    assert a.connection_state(b.peer_id) is ConnectionState.ESTABLISHED
    assert b.connection_state(a.peer_id) is ConnectionState.ESTABLISHED


async def test_slow_subscriber_drops_are_counted_and_block_nothing(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node(message_buffer_size=10)
    await connect_pair(a, b)
    slow = b.messages()  # never read while the burst arrives
    fast = b.messages(buffer_size=1000)
    fast_got = asyncio.ensure_future(collect(fast, 100))
    for i in range(100):
        await a.send(b.peer_id, "messages", b"%d" % i)
    async with asyncio.timeout(10):
        await fast_got
    assert slow.dropped == 90
    assert slow.drop_reasons == {"buffer_full": 90}
    assert [m.data for m in [slow.get_nowait() for _ in range(10)] if m] == [
        b"%d" % i for i in range(90, 100)
    ]
    stats = b.peer_stats(a.peer_id)
    assert stats is not None
    assert stats.dropped == {"subscriber_buffer_full": 90}
