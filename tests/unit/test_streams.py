"""The stream manager on an in-memory host pair: coalescing, flow control, lock-free lazy
opens, receive-path limits and decryption failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from multiaddr import Multiaddr

from engine.crypto.cipher import Cipher
from engine.crypto.identity import Identity, PeerId
from engine.crypto.keys import derive_stream_key
from engine.errors import DecryptionError, NotEstablishedError, StreamResetError
from engine.flow import FlowController
from engine.framing import encode_frame
from engine.handshake import stream_protocol
from engine.net.memory import MemoryHost, MemoryNetwork, MemoryStream
from engine.streams import DropReason, StreamManager, parse_stream_protocol
from engine.varint import encode_uvarint


@dataclass
class Recorder:
    """The node's side of the StreamEvents interface, recorded."""

    received: asyncio.Queue[tuple[PeerId, str, bytes]] = field(default_factory=asyncio.Queue)
    dropped: list[str] = field(default_factory=list)
    decrypt_errors: list[DecryptionError] = field(default_factory=list)
    sent: int = 0

    def message_received(self, peer_id: PeerId, stream: str, data: bytes) -> None:
        self.received.put_nowait((peer_id, stream, data))

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        self.sent += 1

    def message_dropped(self, peer_id: PeerId, stream: str, reason: str) -> None:
        self.dropped.append(reason)

    def decryption_failed(self, peer_id: PeerId, stream: str, error: DecryptionError) -> None:
        self.decrypt_errors.append(error)


@dataclass
class Side:
    identity: Identity
    host: MemoryHost
    events: Recorder
    manager: StreamManager


@dataclass
class Pair:
    a: Side
    b: Side


async def connected_sides(
    net: MemoryNetwork, *, high: int, low: int, max_message_size: int
) -> tuple[Side, Side]:
    """Two hosts on ``net`` (127.0.0.1, 127.0.0.2), each with a StreamManager; a dialed b.
    No stream is prepared yet."""
    sides = []
    for ip in ("127.0.0.1", "127.0.0.2"):
        ident = Identity.generate()
        host = net.create_host(ident.peer_id, ip=ip)
        await host.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
        events = Recorder()
        manager = StreamManager(
            host,
            events,
            flow_factory=lambda: FlowController(high, low),
            max_message_size=max_message_size,
        )
        sides.append(Side(ident, host, events, manager))
    a, b = sides
    await a.host.dial(b.identity.peer_id, b.host.listen_addrs(), timeout=1)
    return a, b


async def make_pair(
    names: tuple[str, ...] = ("s",), high: int = 1024, low: int = 256, latency: float = 0.0
) -> Pair:
    a, b = await connected_sides(
        MemoryNetwork(latency=latency), high=high, low=low, max_message_size=64 * 1024
    )
    for me, other in ((a, b), (b, a)):
        with derive_stream_key(me.identity, other.identity.public_key) as key:
            me.manager.prepare(other.identity.peer_id, key, names)
    for me, other in ((a, b), (b, a)):
        me.manager.finalize(other.identity.peer_id)
    return Pair(a, b)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = await make_pair()
    yield p
    for side in (p.a, p.b):
        await side.manager.aclose()
        await side.host.close()


async def recv(side: Side, n: int) -> list[bytes]:
    out = []
    async with asyncio.timeout(5):
        for _ in range(n):
            out.append((await side.events.received.get())[2])
    return out


async def test_many_small_messages_go_out_in_few_transport_writes(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = 0
    original = MemoryStream.write

    async def counting_write(self: MemoryStream, data: bytes | bytearray | memoryview) -> None:
        nonlocal writes
        writes += 1
        await original(self, data)

    monkeypatch.setattr(MemoryStream, "write", counting_write)
    peer_b = pair.b.identity.peer_id
    await pair.a.manager.send(peer_b, "s", b"first")  # opens the stream
    for i in range(1000):
        await pair.a.manager.send(peer_b, "s", b"%d" % i)
    got = await recv(pair.b, 1001)
    assert got == [b"first"] + [b"%d" % i for i in range(1000)]
    assert writes <= 10, f"{writes} transport writes for 1001 messages"
    assert pair.a.manager.messages_sent(peer_b) == 1001


async def test_200_blocked_senders_all_complete() -> None:
    p = await make_pair(high=4, low=1)
    peer_b = p.b.identity.peer_id
    await p.a.manager.send(peer_b, "s", b"open")
    flow = p.a.manager._peers[peer_b].channels["s"].flow
    peak = 0

    async def sender(i: int) -> None:
        nonlocal peak
        await p.a.manager.send(peer_b, "s", b"%d" % i)
        peak = max(peak, flow.waiting)

    async with asyncio.timeout(10):
        tasks = [asyncio.ensure_future(sender(i)) for i in range(200)]
        await asyncio.sleep(0)
        assert flow.waiting > 100  # most senders really were blocked
        await asyncio.gather(*tasks)
    got = await recv(p.b, 201)
    assert sorted(int(m) for m in got[1:]) == list(range(200))
    assert flow.pending == 0
    for side in (p.a, p.b):
        await side.manager.aclose()
        await side.host.close()


async def test_slow_open_does_not_block_other_streams() -> None:
    # Plan 1.4: opening a stream (network I/O) holds no lock that other sends need.
    p = await make_pair(names=("fast", "slow"))
    peer_b = p.b.identity.peer_id
    await p.a.manager.send(peer_b, "fast", b"warm")
    await recv(p.b, 1)
    p.a.host._net.latency = 0.2
    slow = asyncio.ensure_future(p.a.manager.send(peer_b, "slow", b"s"))
    await asyncio.sleep(0)
    await asyncio.wait_for(p.a.manager.send(peer_b, "fast", b"f"), 0.1)
    assert not slow.done()
    await slow
    assert sorted(await recv(p.b, 2)) == [b"f", b"s"]
    for side in (p.a, p.b):
        await side.manager.aclose()
        await side.host.close()


async def test_concurrent_first_sends_open_one_stream(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = 0
    original = MemoryHost.new_stream

    async def counting(self: MemoryHost, *args: object, **kw: object) -> object:
        nonlocal opened
        opened += 1
        return await original(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MemoryHost, "new_stream", counting)
    peer_b = pair.b.identity.peer_id
    await asyncio.gather(*(pair.a.manager.send(peer_b, "s", b"%d" % i) for i in range(50)))
    assert sorted(int(m) for m in await recv(pair.b, 50)) == list(range(50))
    assert opened == 1


async def test_oversized_announcement_resets_before_buffering(pair: Pair) -> None:
    peer_a = pair.a.identity.peer_id
    stream = await pair.a.host.new_stream(
        pair.b.identity.peer_id, [stream_protocol("s")], timeout=1
    )
    await stream.write(encode_uvarint(2**40) + encode_uvarint(2**40 - 6) + b"xx")
    with pytest.raises(StreamResetError):
        await asyncio.wait_for(stream.read(), 1)
    assert pair.b.events.dropped == [DropReason.OVERSIZED]
    # The peer's other traffic is unaffected.
    await pair.a.manager.send(pair.b.identity.peer_id, "s", b"fine")
    assert await recv(pair.b, 1) == [b"fine"]
    assert pair.b.manager.is_sending(peer_a)


async def test_tampered_frame_dropped_and_reported_stream_stays_open(pair: Pair) -> None:
    with (
        derive_stream_key(pair.a.identity, pair.b.identity.public_key) as key,
        Cipher(key) as cipher,
    ):
        bad = bytearray(cipher.encrypt(b"x"))
        bad[14] ^= 0xFF
        good = cipher.encrypt(b"y")
    stream = await pair.a.host.new_stream(
        pair.b.identity.peer_id, [stream_protocol("s")], timeout=1
    )
    await stream.write(encode_frame(bytes(bad)))
    await stream.write(encode_frame(b"short"))  # shorter than nonce + tag
    await stream.write(encode_frame(good))
    assert await recv(pair.b, 1) == [b"y"]
    assert len(pair.b.events.decrypt_errors) == 2
    assert pair.b.events.dropped == [DropReason.DECRYPTION, DropReason.DECRYPTION]


async def test_unknown_stream_is_reset_and_unprepared_peer_cannot_send(pair: Pair) -> None:
    stranger = Identity.generate().peer_id
    with pytest.raises(NotEstablishedError):
        await pair.a.manager.send(stranger, "s", b"x")
    pair.b.host.set_stream_handler(stream_protocol("other"), pair.b.manager.handle_inbound)
    stream = await pair.a.host.new_stream(
        pair.b.identity.peer_id, [stream_protocol("other")], timeout=1
    )
    with pytest.raises(StreamResetError):
        await asyncio.wait_for(stream.read(), 1)
    assert pair.b.events.dropped == [DropReason.UNKNOWN_STREAM]


async def test_close_peer_cancels_its_tasks_and_closes_the_cipher(pair: Pair) -> None:
    peer_b = pair.b.identity.peer_id
    await pair.a.manager.send(peer_b, "s", b"x")
    state = pair.a.manager._peers[peer_b]
    assert state.tasks
    tasks = pair.a.manager.close_peer(peer_b)
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(t.done() for t in tasks)
    assert state.cipher is not None
    assert state.cipher.closed
    with pytest.raises(NotEstablishedError):
        await pair.a.manager.send(peer_b, "s", b"x")


def test_parse_stream_protocol() -> None:
    assert parse_stream_protocol("/glueberry/stream/chat/1.0.0") == "chat"
    assert parse_stream_protocol("/glueberry/stream//1.0.0") is None
    assert parse_stream_protocol("/glueberry/handshake/1.0.0") is None


async def test_unencrypted_stream_carries_plain_frames() -> None:
    a, b = await connected_sides(MemoryNetwork(), high=8, low=2, max_message_size=1024)
    with derive_stream_key(a.identity, b.identity.public_key) as key:
        a.manager.prepare(b.identity.peer_id, key, ["secret"], unencrypted=["clear"])
    b.manager.prepare(a.identity.peer_id, None, [], unencrypted=["clear"])
    a.manager.finalize(b.identity.peer_id)
    b.manager.finalize(a.identity.peer_id)
    await a.manager.send(b.identity.peer_id, "clear", b"in the open")
    assert await recv(b, 1) == [b"in the open"]
    # What b sends on "clear" is exactly the v1 frame of the plaintext.
    raw = await a.host.new_stream(b.identity.peer_id, [stream_protocol("clear")], timeout=1)
    await b.manager.send(a.identity.peer_id, "clear", b"reply")
    await raw.write(encode_frame(b"raw-plain"))
    assert await recv(b, 1) == [b"raw-plain"]
    assert await recv(a, 1) == [b"reply"]
    for side in (a, b):
        await side.manager.aclose()
        await side.host.close()


async def test_nonce_warning_once_at_threshold(caplog: pytest.LogCaptureFixture) -> None:
    p = await make_pair()
    p.a.manager._nonce_threshold = 3
    peer_b = p.b.identity.peer_id
    with caplog.at_level("WARNING", logger="engine.streams"):
        for i in range(2):
            await p.a.manager.send(peer_b, "s", b"%d" % i)
        assert not caplog.records
        for i in range(5):
            await p.a.manager.send(peer_b, "s", b"%d" % i)
    assert p.a.manager.messages_sent(peer_b) == 7
    warnings = [r for r in caplog.records if "nonce" in r.getMessage()]
    assert len(warnings) == 1
    for side in (p.a, p.b):
        await side.manager.aclose()
        await side.host.close()
