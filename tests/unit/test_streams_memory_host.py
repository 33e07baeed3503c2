"""The in-memory host honours the P2PHost / P2PStream contract the node relies on."""

from __future__ import annotations

import asyncio

import pytest
from multiaddr import Multiaddr

from engine.blacklist import Blacklist
from engine.crypto.identity import Identity, PeerId
from engine.errors import (
    ConnectionGatedError,
    DialError,
    NegotiationError,
    NotConnectedError,
    PeerIdMismatchError,
    StreamBusyError,
    StreamClosedError,
    StreamResetError,
)
from engine.net.interface import ConnectionInfo, Direction, P2PStream
from engine.net.memory import MemoryHost, MemoryNetwork
from engine.repository import BanRecord

PROTO = "/test/1.0.0"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, PeerId]] = []
        self.changed = asyncio.Event()

    def connected(self, info: ConnectionInfo) -> None:
        self.events.append(("connected", info.peer_id))
        self.changed.set()

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        self.events.append(("disconnected", peer_id))
        self.changed.set()


async def pair(
    net: MemoryNetwork | None = None,
) -> tuple[MemoryNetwork, MemoryHost, MemoryHost, Recorder, Recorder]:
    net = net or MemoryNetwork(window=1024)
    a = net.create_host(Identity.generate().peer_id)
    b = net.create_host(Identity.generate().peer_id, ip="127.0.0.2")
    await a.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
    await b.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
    ra, rb = Recorder(), Recorder()
    a.add_notifee(ra)
    b.add_notifee(rb)
    return net, a, b, ra, rb


async def parked_pair() -> tuple[MemoryHost, MemoryHost, asyncio.Queue[P2PStream]]:
    """``a`` connected to ``b``, whose PROTO handler puts every inbound stream in the
    queue and keeps it open (the handler never returns)."""
    _, a, b, _, _ = await pair()
    got: asyncio.Queue[P2PStream] = asyncio.Queue()

    async def handler(stream: P2PStream) -> None:
        await got.put(stream)
        await asyncio.Event().wait()

    b.set_stream_handler(PROTO, handler)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=1)
    return a, b, got


async def test_dial_notifies_both_sides_and_streams_carry_bytes_both_ways() -> None:
    _, a, b, ra, rb = await pair()
    accepted: asyncio.Queue[P2PStream] = asyncio.Queue()

    async def handler(stream: P2PStream) -> None:
        await accepted.put(stream)
        data = await stream.read()
        await stream.write(data.upper())
        await stream.close_write()

    b.set_stream_handler(PROTO, handler)
    info = await a.dial(b.peer_id, b.listen_addrs(), timeout=1)
    assert info.direction is Direction.OUTBOUND
    assert ra.events == []  # notifications are delivered via call_soon
    await asyncio.sleep(0)
    assert ra.events == [("connected", b.peer_id)]
    assert rb.events == [("connected", a.peer_id)]
    assert b.connection_info(a.peer_id).direction is Direction.INBOUND  # type: ignore[union-attr]
    stream = await a.new_stream(b.peer_id, [PROTO], timeout=1)
    await stream.write(b"hello")
    assert await stream.read() == b"HELLO"
    assert await stream.read() == b""  # end of stream, and only at the end
    inbound = await asyncio.wait_for(accepted.get(), 1)
    assert inbound.direction is Direction.INBOUND
    assert inbound.remote_peer == a.peer_id
    await a.close()
    await b.close()
    await asyncio.sleep(0)
    assert ("disconnected", a.peer_id) in rb.events


async def test_backpressure_and_busy() -> None:
    a, b, got = await parked_pair()
    stream = await a.new_stream(b.peer_id, [PROTO], timeout=1)
    writer = asyncio.create_task(stream.write(b"x" * 5000))  # window is 1024
    await asyncio.sleep(0)
    assert not writer.done()
    with pytest.raises(StreamBusyError):
        await stream.write(b"y")
    inbound = await asyncio.wait_for(got.get(), 1)
    total = 0
    while total < 5000:
        total += len(await inbound.read(4096))
    await asyncio.wait_for(writer, 1)
    await a.close()
    await b.close()


async def test_reset_and_close_errors() -> None:
    a, b, got = await parked_pair()
    s1 = await a.new_stream(b.peer_id, [PROTO], timeout=1)
    peer_end = await asyncio.wait_for(got.get(), 1)
    await peer_end.reset()
    with pytest.raises(StreamResetError):
        await s1.read()
    s2 = await a.new_stream(b.peer_id, [PROTO], timeout=1)
    await s2.aclose()
    await s2.aclose()  # idempotent
    with pytest.raises(StreamClosedError):
        await s2.write(b"x")
    with pytest.raises(NegotiationError):
        await a.new_stream(b.peer_id, ["/nope/1"], timeout=1)
    await a.disconnect(b.peer_id)
    with pytest.raises(NotConnectedError):
        await a.new_stream(b.peer_id, [PROTO], timeout=1)
    await a.close()
    await b.close()


async def test_gates_refuse_both_directions() -> None:
    net, a, b, _, rb = await pair()
    ban_a = Blacklist()
    ban_a.add(BanRecord(b.peer_id.to_string(), "peer", "", 0.0, None))
    a.set_gate(ban_a)
    with pytest.raises(ConnectionGatedError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=1)
    with pytest.raises(DialError):  # b dials a: a's gate refuses the inbound peer
        await b.dial(a.peer_id, a.listen_addrs(), timeout=1)
    a.set_gate(None)
    cidr = Blacklist()
    cidr.add(BanRecord("127.0.0.2/32", "cidr", "", 0.0, None))
    a.set_gate(cidr)
    with pytest.raises(DialError):  # b connects from 127.0.0.2
        await b.dial(a.peer_id, a.listen_addrs(), timeout=1)
    assert rb.events == []
    wrong = net.create_host(Identity.generate().peer_id)
    with pytest.raises(PeerIdMismatchError):
        await wrong.dial(Identity.generate().peer_id, b.listen_addrs(), timeout=1)
    for host in (a, b, wrong):
        await host.close()


async def test_close_cancels_handler_tasks() -> None:
    _, a, b, _, _ = await pair()
    started = asyncio.Event()

    async def handler(stream: P2PStream) -> None:
        started.set()
        await asyncio.Event().wait()

    b.set_stream_handler(PROTO, handler)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=1)
    await a.new_stream(b.peer_id, [PROTO], timeout=1)
    await asyncio.wait_for(started.wait(), 1)
    before = len(asyncio.all_tasks())
    await b.close()
    await a.close()
    assert len(asyncio.all_tasks()) == before - 1
