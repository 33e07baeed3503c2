"""The in-memory host: a reset discards buffered data; max_connections is enforced."""

from __future__ import annotations

import asyncio

import pytest
from multiaddr import Multiaddr

from engine.crypto.identity import Identity, PeerId
from engine.errors import DialError, ResourceLimitError, StreamResetError
from engine.net.interface import ConnectionInfo, Direction, HostRefusal, P2PStream
from engine.net.memory import MemoryHost, MemoryNetwork, MemoryStream

LOCAL = Multiaddr("/ip4/127.0.0.1/tcp/0")
PROTO = "/test/sink/1.0.0"


class Refusals:
    def __init__(self) -> None:
        self.seen: list[tuple[HostRefusal, Direction]] = []

    def connected(self, info: ConnectionInfo) -> None:
        pass

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        pass

    def refused(self, reason: HostRefusal, direction: Direction, remote: Multiaddr | None) -> None:
        self.seen.append((reason, direction))


async def host(net: MemoryNetwork, n: int, **kw: int) -> MemoryHost:
    h = net.create_host(Identity.generate().peer_id, ip=f"127.0.0.{n}", **kw)
    await h.listen([LOCAL])
    return h


async def test_reset_discards_buffered_data_in_both_directions() -> None:
    net = MemoryNetwork(window=64 * 1024)
    a, b = await host(net, 1), await host(net, 2)
    accepted: asyncio.Future[P2PStream] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def sink(stream: P2PStream) -> None:
        await stream.write(b"y" * 1000)  # buffered towards a, never read
        accepted.set_result(stream)
        await release.wait()
        with pytest.raises(StreamResetError):
            await stream.read()

    b.set_stream_handler(PROTO, sink)
    try:
        await a.dial(b.peer_id, b.listen_addrs(), timeout=1)
        ours = await a.new_stream(b.peer_id, [PROTO], timeout=1)
        assert isinstance(ours, MemoryStream)
        theirs = await asyncio.wait_for(accepted, 1)
        assert isinstance(theirs, MemoryStream)
        # Fill b's receive window, then block one more write on it.
        blocked = asyncio.ensure_future(ours.write(b"x" * (64 * 1024 + 10)))
        async with asyncio.timeout(1):
            while len(ours._out.buf) < 64 * 1024:
                await asyncio.sleep(0)
        assert len(ours._in.buf) == 1000
        await ours.reset()
        assert len(ours._out.buf) == 0
        assert len(ours._in.buf) == 0
        assert len(theirs._in.buf) == 0
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(blocked, 1)
        with pytest.raises(StreamResetError):
            await ours.read()
        release.set()
    finally:
        await a.close()
        await b.close()


async def test_max_connections_refuses_inbound_and_outbound() -> None:
    net = MemoryNetwork()
    b = await host(net, 1, max_connections=1)
    a1, a2 = await host(net, 2), await host(net, 3)
    rec = Refusals()
    b.add_notifee(rec)
    try:
        await a1.dial(b.peer_id, b.listen_addrs(), timeout=1)
        # the same peer again is the live connection, not a new one
        await a1.dial(b.peer_id, b.listen_addrs(), timeout=1)
        await b.dial(a1.peer_id, a1.listen_addrs(), timeout=1)
        with pytest.raises(DialError):
            await a2.dial(b.peer_id, b.listen_addrs(), timeout=1)
        assert not b.is_connected(a2.peer_id)
        with pytest.raises(ResourceLimitError):
            await b.dial(a2.peer_id, a2.listen_addrs(), timeout=1)
        await asyncio.sleep(0)  # notifications are delivered with call_soon
        assert rec.seen == [
            (HostRefusal.MAX_CONNECTIONS, Direction.INBOUND),
            (HostRefusal.MAX_CONNECTIONS, Direction.OUTBOUND),
        ]
        assert b.refusal_counts() == {
            "inbound": {"max_connections": 1},
            "outbound": {"max_connections": 1},
        }
        await a1.disconnect(b.peer_id)
        await a2.dial(b.peer_id, b.listen_addrs(), timeout=1)
        assert b.connected_peers() == [a2.peer_id]
    finally:
        for h in (a1, a2, b):
            await h.close()
