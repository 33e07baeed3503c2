"""Two (or three) of our Hosts on 127.0.0.1: dial, streams, identify, ping, tie-break,
gates, limits, keep-alive, close hygiene."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from multiaddr import Multiaddr

from engine.config import Config
from engine.crypto.identity import Identity, PeerId
from engine.errors import (
    ConnectionGatedError,
    DialError,
    NegotiationError,
    NotConnectedError,
    PeerIdMismatchError,
    ResourceLimitError,
    StreamError,
    StreamLimitError,
)
from engine.net.host import Host
from engine.net.interface import ConnectionInfo, Direction, P2PStream

LOCAL = Multiaddr("/ip4/127.0.0.1/tcp/0")
ECHO = "/test/echo/1.0.0"
T = 10.0  # generous per-operation timeout; tests finish far sooner


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition the host exposes no event for (bounded, 5 ms steps)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, PeerId, object]] = []
        self.changed = asyncio.Event()

    def connected(self, info: ConnectionInfo) -> None:
        self.events.append(("connected", info.peer_id, info.direction))
        self.changed.set()

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        self.events.append(("disconnected", peer_id, reason))
        self.changed.set()

    async def wait_for(self, kind: str, peer: PeerId) -> tuple[str, PeerId, object]:
        async with asyncio.timeout(T):
            while True:
                for ev in self.events:
                    if ev[0] == kind and ev[1] == peer:
                        return ev
                self.changed.clear()
                await self.changed.wait()


async def echo(stream: P2PStream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.aclose()


def make_host(**overrides: object) -> Host:
    config = Config(agent_version="glueberry-test/1", **overrides)  # type: ignore[arg-type]
    host = Host(Identity.generate(), config)
    host.set_stream_handler(ECHO, echo)
    return host


@pytest.fixture
async def hosts() -> AsyncIterator[Callable[..., Awaitable[Host]]]:
    made: list[Host] = []

    async def factory(listen: bool = True, **overrides: object) -> Host:
        host = make_host(**overrides)
        if listen:
            await host.listen([LOCAL])
        made.append(host)
        return host

    yield factory
    for host in made:
        await host.close()


async def roundtrip(stream: P2PStream, payload: bytes) -> bytes:
    """Write ``payload`` to an echo stream while reading the echo (no window deadlock)."""

    async def send() -> None:
        await stream.write(payload)
        await stream.close_write()

    async def receive() -> bytes:
        got = bytearray()
        while data := await stream.read():
            got += data
        return bytes(got)

    async with asyncio.timeout(T):
        _, echoed = await asyncio.gather(send(), receive())
    await stream.aclose()
    return echoed


async def test_dial_streams_both_ways_and_notifications(
    hosts: Callable[..., Awaitable[Host]],
) -> None:
    a, b = await hosts(), await hosts()
    ra, rb = Recorder(), Recorder()
    a.add_notifee(ra)
    b.add_notifee(rb)
    info = await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert info.peer_id == b.peer_id
    assert info.direction is Direction.OUTBOUND
    assert a.is_connected(b.peer_id)
    assert await rb.wait_for("connected", a.peer_id) == ("connected", a.peer_id, Direction.INBOUND)
    assert await ra.wait_for("connected", b.peer_id) == ("connected", b.peer_id, Direction.OUTBOUND)
    b_info = b.connection_info(a.peer_id)
    assert b_info is not None
    assert b_info.direction is Direction.INBOUND
    assert a.connected_peers() == [b.peer_id]
    # dialing again returns the same connection
    assert (await a.dial(b.peer_id, b.listen_addrs(), timeout=T)).direction is Direction.OUTBOUND

    s1 = await a.new_stream(b.peer_id, ["/nope/1", ECHO], timeout=T)
    assert s1.protocol_id == ECHO
    assert s1.remote_peer == b.peer_id
    assert s1.direction is Direction.OUTBOUND
    payload = bytes(range(256)) * 4096  # 1 MiB: several yamux windows and Noise frames
    assert await roundtrip(s1, payload) == payload
    s2 = await b.new_stream(a.peer_id, [ECHO], timeout=T)
    assert await roundtrip(s2, b"from b") == b"from b"


async def test_inbound_handler_gets_pipelined_bytes(hosts: Callable[..., Awaitable[Host]]) -> None:
    a, b = await hosts(), await hosts()
    got: asyncio.Future[tuple[bytes, Direction]] = asyncio.get_running_loop().create_future()

    async def first_read(stream: P2PStream) -> None:
        got.set_result((await stream.read(), stream.direction))
        await stream.aclose()

    b.set_stream_handler("/test/first/1", first_read)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    stream = await a.new_stream(b.peer_id, ["/test/first/1"], timeout=T)
    await stream.write(b"hello")
    assert await asyncio.wait_for(got, T) == (b"hello", Direction.INBOUND)
    await stream.aclose()


async def test_unsupported_protocol_and_removed_handler(
    hosts: Callable[..., Awaitable[Host]],
) -> None:
    a, b = await hosts(), await hosts()
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    with pytest.raises(NegotiationError):
        await a.new_stream(b.peer_id, ["/nope/1"], timeout=T)
    b.remove_stream_handler(ECHO)
    with pytest.raises(NegotiationError):
        await a.new_stream(b.peer_id, [ECHO], timeout=T)
    # the connection survives refused streams
    assert a.is_connected(b.peer_id)


async def test_identify_and_ping(hosts: Callable[..., Awaitable[Host]]) -> None:
    a, b = await hosts(), await hosts()
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    seen_by_a = await a.wait_identified(b.peer_id, timeout=T)
    assert seen_by_a.agent_version == "glueberry-test/1"
    assert seen_by_a.protocol_version == "ipfs/0.1.0"
    assert {ECHO, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"} <= set(seen_by_a.protocols)
    assert list(seen_by_a.listen_addrs) == b.listen_addrs()
    assert seen_by_a.observed_addr is not None
    info = a.connection_info(b.peer_id)
    assert info is not None
    assert info.agent_version == "glueberry-test/1"
    assert ECHO in info.protocols
    seen_by_b = await b.wait_identified(a.peer_id, timeout=T)
    assert seen_by_b.agent_version == "glueberry-test/1"
    assert a.identify_info(b.peer_id) == seen_by_a
    rtt = await a.ping(b.peer_id, timeout=T)
    assert 0 < rtt < T
    assert await b.ping(a.peer_id, timeout=T) > 0


async def test_simultaneous_dial_keeps_one_connection(
    hosts: Callable[..., Awaitable[Host]],
) -> None:
    for _ in range(5):
        a, b = await hosts(), await hosts()
        ia, ib = await asyncio.gather(
            a.dial(b.peer_id, b.listen_addrs(), timeout=T),
            b.dial(a.peer_id, a.listen_addrs(), timeout=T),
        )
        assert ia.peer_id == b.peer_id
        assert ib.peer_id == a.peer_id
        # both sides settle on the connection dialed by the smaller peer id
        smaller_dials = a.peer_id.multihash < b.peer_id.multihash

        def settled(a: Host = a, b: Host = b) -> bool:
            return len(a._all_conns) == 1 and len(b._all_conns) == 1

        await wait_until(settled)
        ca, cb = a.connection_info(b.peer_id), b.connection_info(a.peer_id)
        assert ca is not None
        assert cb is not None
        assert (ca.direction is Direction.OUTBOUND) == smaller_dials
        assert (cb.direction is Direction.OUTBOUND) == (not smaller_dials)
        stream = await a.new_stream(b.peer_id, [ECHO], timeout=T)
        assert await roundtrip(stream, b"ok") == b"ok"


async def test_concurrent_dials_from_one_side_share_one_attempt(
    hosts: Callable[..., Awaitable[Host]],
) -> None:
    a, b = await hosts(), await hosts()
    infos = await asyncio.gather(
        *(a.dial(b.peer_id, b.listen_addrs(), timeout=T) for _ in range(10))
    )
    assert {i.peer_id for i in infos} == {b.peer_id}
    assert len(a._all_conns) == 1


async def test_gate_refuses_address_and_peer(hosts: Callable[..., Awaitable[Host]]) -> None:
    a, b = await hosts(), await hosts()

    class Gate:
        def __init__(self, addr_ok: bool, peer_ok: bool) -> None:
            self.addr_ok, self.peer_ok = addr_ok, peer_ok
            self.calls: list[str] = []

        def allow_addr(self, remote: Multiaddr, direction: Direction) -> bool:
            self.calls.append(f"addr:{direction.value}")
            return self.addr_ok

        def allow_peer(self, peer_id: PeerId, direction: Direction) -> bool:
            self.calls.append(f"peer:{direction.value}")
            return self.peer_ok

    gate = Gate(addr_ok=False, peer_ok=True)
    b.set_gate(gate)
    with pytest.raises(DialError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert gate.calls == ["addr:inbound"]
    assert b.refusal_counts()["inbound"] == {"gate_addr": 1}

    gate = Gate(addr_ok=True, peer_ok=False)
    b.set_gate(gate)
    with pytest.raises(DialError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert gate.calls == ["addr:inbound", "peer:inbound"]
    assert not b.is_connected(a.peer_id)

    b.set_gate(None)
    a.set_gate(Gate(addr_ok=False, peer_ok=True))
    with pytest.raises(ConnectionGatedError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    a.set_gate(Gate(addr_ok=True, peer_ok=False))
    with pytest.raises(ConnectionGatedError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    a.set_gate(None)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert a.is_connected(b.peer_id)


async def test_peer_id_mismatch(hosts: Callable[..., Awaitable[Host]]) -> None:
    a, b = await hosts(), await hosts()
    impostor = Identity.generate().peer_id
    with pytest.raises(PeerIdMismatchError):
        await a.dial(impostor, b.listen_addrs(), timeout=T)
    assert not a.connected_peers()
    # a /p2p/ component naming another peer is refused before connecting
    addr = Multiaddr(f"{b.listen_addrs()[0]}/p2p/{b.peer_id}")
    with pytest.raises(PeerIdMismatchError):
        await a.dial(impostor, [addr], timeout=T)
    assert (await a.dial(b.peer_id, [addr], timeout=T)).peer_id == b.peer_id


async def test_dial_errors(hosts: Callable[..., Awaitable[Host]]) -> None:
    a = await hosts()
    peer = Identity.generate().peer_id
    with pytest.raises(DialError):
        await a.dial(peer, [Multiaddr("/ip4/127.0.0.1/tcp/1")], timeout=T)
    with pytest.raises(DialError):
        await a.dial(peer, [], timeout=T)
    with pytest.raises(DialError):
        await a.dial(a.peer_id, a.listen_addrs(), timeout=T)
    with pytest.raises(NotConnectedError):
        await a.new_stream(peer, [ECHO], timeout=T)


async def test_connection_limits(hosts: Callable[..., Awaitable[Host]]) -> None:
    b = await hosts(max_connections=1)
    a1, a2 = await hosts(), await hosts()
    await a1.dial(b.peer_id, b.listen_addrs(), timeout=T)
    with pytest.raises(DialError):
        await a2.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert not b.is_connected(a2.peer_id)
    # outbound: the limit refuses with ResourceLimitError before connecting
    with pytest.raises(ResourceLimitError):
        await b.dial(a2.peer_id, a2.listen_addrs(), timeout=T)
    await a1.disconnect(b.peer_id)
    await wait_until(lambda: not b.connected_peers())
    await a2.dial(b.peer_id, b.listen_addrs(), timeout=T)


async def test_per_ip_limit(hosts: Callable[..., Awaitable[Host]]) -> None:
    b = await hosts(max_connections_per_ip=2)
    clients = [await hosts(listen=False) for _ in range(3)]
    await clients[0].dial(b.peer_id, b.listen_addrs(), timeout=T)
    await clients[1].dial(b.peer_id, b.listen_addrs(), timeout=T)
    with pytest.raises(DialError):
        await clients[2].dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert b.refusal_counts()["inbound"] == {"max_per_ip": 1}


async def test_disconnect_notifies_both_sides(hosts: Callable[..., Awaitable[Host]]) -> None:
    a, b = await hosts(), await hosts()
    ra, rb = Recorder(), Recorder()
    a.add_notifee(ra)
    b.add_notifee(rb)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    await a.disconnect(b.peer_id)
    assert not a.is_connected(b.peer_id)
    assert (await ra.wait_for("disconnected", b.peer_id))[2] is None
    await rb.wait_for("disconnected", a.peer_id)
    assert not b.is_connected(a.peer_id)
    with pytest.raises(NotConnectedError):
        await a.new_stream(b.peer_id, [ECHO], timeout=T)
    await a.disconnect(b.peer_id)  # no-op


async def test_abrupt_close_is_noticed(hosts: Callable[..., Awaitable[Host]]) -> None:
    a, b = await hosts(), await hosts()
    ra = Recorder()
    a.add_notifee(ra)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    await wait_until(lambda: b.is_connected(a.peer_id))
    conn = next(iter(b._all_conns))
    conn.channel.abort()  # RST, no GoAway
    await ra.wait_for("disconnected", b.peer_id)
    assert not a.is_connected(b.peer_id)


async def test_keepalive_closes_frozen_peer(hosts: Callable[..., Awaitable[Host]]) -> None:
    a = await hosts(keepalive_interval=0.1, keepalive_timeout=0.5)
    b = await hosts(keepalive_interval=3600, keepalive_timeout=7200)
    ra = Recorder()
    a.add_notifee(ra)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    await a.wait_identified(b.peer_id, timeout=T)
    await wait_until(lambda: b.is_connected(a.peer_id))
    # Freeze b: its socket stops reading, so it never answers a ping again.
    conn = next(iter(b._all_conns))
    conn.channel._writer.transport.pause_reading()  # type: ignore[attr-defined]
    started = time.monotonic()
    event = await ra.wait_for("disconnected", b.peer_id)
    assert time.monotonic() - started < 0.5 + 2.0  # the bound plus scheduling slack
    assert event[2] is not None  # a reason is given


async def test_close_leaves_no_task(hosts: Callable[..., Awaitable[Host]]) -> None:
    baseline = set(asyncio.all_tasks())
    a, b = make_host(), make_host()
    await a.listen([LOCAL])
    await b.listen([LOCAL])
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    s = await a.new_stream(b.peer_id, [ECHO], timeout=T)
    await s.write(b"open stream left open")  # an echo handler task is running on b
    await a.wait_identified(b.peer_id, timeout=T)
    await wait_until(lambda: b.task_count > 0)  # the echo handler runs on b
    await a.close()
    await b.close()
    assert a.task_count == b.task_count == 0
    await asyncio.sleep(0)  # let done callbacks of finished tasks run
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - baseline
    assert leftover == set(), leftover
    with pytest.raises(DialError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)


async def test_greeting_written_right_after_negotiation_reaches_the_dialer(
    hosts: Callable[..., Awaitable[Host]],
) -> None:
    a, b = await hosts(), await hosts()

    async def greet(stream: P2PStream) -> None:
        await stream.write(b"greeting")  # may share a read with the protocol echo
        await stream.close_write()

    b.set_stream_handler("/test/greet/1", greet)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    for _ in range(20):
        stream = await a.new_stream(b.peer_id, ["/test/greet/1"], timeout=T)
        got = bytearray()
        while data := await asyncio.wait_for(stream.read(3), T):
            got += data
        assert got == b"greeting"
        await stream.aclose()


async def test_close_during_dial_raises_dial_error() -> None:
    a = make_host()
    # A listener that accepts and never answers: the dial hangs in multistream.
    accepted: list[asyncio.StreamWriter] = []

    def silent(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = Identity.generate().peer_id
    dial = asyncio.create_task(a.dial(peer, [Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")], timeout=T))
    await wait_until(lambda: a.pending_connections == 1)
    await a.close()
    with pytest.raises(DialError):
        await dial
    for w in accepted:
        w.close()
    server.close()
    await server.wait_closed()


def test_tie_break_rule_is_symmetric() -> None:
    """Both sides pick the same survivor: the connection whose dialer id is smaller."""
    from engine.net.host import _Conn

    a, b = make_host(), make_host()

    def conn(peer: PeerId, direction: Direction, created: float) -> _Conn:
        return _Conn(
            peer_id=peer,
            direction=direction,
            remote_addr=LOCAL,
            ip=None,
            channel=None,  # type: ignore[arg-type]
            muxer=None,  # type: ignore[arg-type]
            info=ConnectionInfo(peer_id=peer, remote_addr=LOCAL, direction=direction),
            created=created,
        )

    # c1 dialed by a, c2 dialed by b; seen from each side with its own directions
    a_c1, a_c2 = conn(b.peer_id, Direction.OUTBOUND, 1.0), conn(b.peer_id, Direction.INBOUND, 2.0)
    b_c1, b_c2 = conn(a.peer_id, Direction.INBOUND, 2.0), conn(a.peer_id, Direction.OUTBOUND, 1.0)
    a_keeps_c1 = a._tie_break(a_c1, a_c2) is a_c1
    b_keeps_c1 = b._tie_break(b_c2, b_c1) is b_c1  # other arrival order on b
    assert a_keeps_c1 == b_keeps_c1 == (a.peer_id.multihash < b.peer_id.multihash)
    # same dialer twice: the newer connection wins
    old, new = conn(b.peer_id, Direction.OUTBOUND, 1.0), conn(b.peer_id, Direction.OUTBOUND, 2.0)
    assert a._tie_break(old, new) is new
    assert a._tie_break(new, old) is new


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff" * 64,  # bad varint
        b"\x13/multistream/1.0.0\n\x07/noise\n" + b"\x00\x20" + bytes(32) + b"junk" * 100,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_garbage_and_silent_connections_are_dropped(
    hosts: Callable[..., Awaitable[Host]], garbage: bytes
) -> None:
    b = await hosts(dial_timeout=1.0)  # bounds the silent connection; room for a real dial
    port = int(b.listen_addrs()[0].value_for_protocol("tcp"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(garbage)
    silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(T):
        while await reader.read(65536):  # the host answers what it can, then hangs up
            pass
        assert await silent_reader.read(65536) == b""  # closed after dial_timeout
    writer.close()
    silent_writer.close()
    await wait_until(lambda: b.pending_connections == 0)
    a = await hosts()
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)  # still healthy


async def test_failing_handler_resets_only_its_stream(
    hosts: Callable[..., Awaitable[Host]],
) -> None:
    a, b = await hosts(), await hosts()

    async def boom(stream: P2PStream) -> None:
        raise RuntimeError("handler bug")

    b.set_stream_handler("/test/boom/1", boom)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)

    async def use_boom() -> None:
        # the reset may even overtake the protocol echo: then new_stream raises it
        stream = await a.new_stream(b.peer_id, ["/test/boom/1"], timeout=T)
        async with asyncio.timeout(T):
            while await stream.read():
                pass

    with pytest.raises(StreamError):
        await use_boom()
    ok = await a.new_stream(b.peer_id, [ECHO], timeout=T)
    assert await roundtrip(ok, b"still fine") == b"still fine"


async def test_stream_limit_refuses(hosts: Callable[..., Awaitable[Host]]) -> None:
    a, b = await hosts(max_yamux_streams=2), await hosts(max_yamux_streams=2)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    await a.wait_identified(b.peer_id, timeout=T)
    await wait_until(lambda: b.task_count == 0)  # b's identify stream is finished
    s1 = await a.new_stream(b.peer_id, [ECHO], timeout=T)
    s2 = await a.new_stream(b.peer_id, [ECHO], timeout=T)
    with pytest.raises(StreamLimitError):
        await a.new_stream(b.peer_id, [ECHO], timeout=T)
    await s1.aclose()
    await s2.aclose()
