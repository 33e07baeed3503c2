"""asyncio tests of YamuxConnection / MuxedStream over an in-memory secure channel."""

from __future__ import annotations

import asyncio
import os
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable

import pytest

from engine.errors import (
    ConnectionClosedError,
    MuxerError,
    StreamBrokenError,
    StreamBusyError,
    StreamClosedError,
    StreamLimitError,
    StreamResetError,
)
from engine.net.interface import Direction
from engine.net.muxer import MuxedStream, SecureChannel, YamuxConnection
from engine.net.yamux import INITIAL_WINDOW

KiB = 1024
MiB = 1024 * KiB
# One scalable time unit for the few timeouts (websockets' MS).
UNIT = 0.05 * float(os.environ.get("GLUEBERRY_TEST_TIMEOUT_FACTOR", "1"))
WAIT = 200 * UNIT  # generous upper bound for "eventually"


class MemoryChannel:
    """One end of an in-memory SecureChannel pair with a bounded inbox (backpressure)."""

    def __init__(self, limit: int = 4 * MiB) -> None:
        self.peer: MemoryChannel | None = None
        self._inbox: deque[bytes] = deque()
        self._inbox_len = 0
        self._limit = limit
        self._eof = False  # the peer closed
        self._closed = False  # we closed
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.written: list[bytes] = []  # everything we wrote (for wire assertions)
        self.record = False

    @staticmethod
    def pair(limit: int = 4 * MiB) -> tuple[MemoryChannel, MemoryChannel]:
        a, b = MemoryChannel(limit), MemoryChannel(limit)
        a.peer, b.peer = b, a
        return a, b

    async def read(self) -> bytes:
        while not self._inbox:
            if self._eof or self._closed:
                if self._closed:
                    raise ConnectionResetError("channel closed")
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._inbox)
        self._inbox.clear()
        self._inbox_len = 0
        self._writable.set()
        return data

    async def write(self, data: bytes) -> None:
        peer = self.peer
        assert peer is not None
        if self.record:
            self.written.append(bytes(data))
        while True:
            if self._closed or self._eof:
                raise BrokenPipeError("channel closed")
            if peer._inbox_len < peer._limit:
                break
            peer._writable.clear()
            await peer._writable.wait()
        peer._inbox.append(bytes(data))
        peer._inbox_len += len(data)
        peer._readable.set()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._readable.set()
        self._writable.set()
        peer = self.peer
        assert peer is not None
        peer._eof = True
        peer._readable.set()
        peer._writable.set()


def _is_channel(ch: SecureChannel) -> SecureChannel:
    return ch


class Pair:
    def __init__(self, client: YamuxConnection, server: YamuxConnection) -> None:
        self.client = client
        self.server = server


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    a, b = MemoryChannel.pair()
    client = YamuxConnection(_is_channel(a), is_client=True)
    server = YamuxConnection(b, is_client=False)
    client.start()
    server.start()
    yield Pair(client, server)
    await client.aclose()
    await server.aclose()


async def read_all(stream: MuxedStream, max_bytes: int = 65536) -> bytes:
    out = bytearray()
    while chunk := await stream.read(max_bytes):
        out += chunk
    return bytes(out)


async def eventually(cond: Callable[[], bool], rounds: int = 10_000) -> None:
    """Yield to the loop until ``cond()`` holds (bounded; no wall-clock sleeping)."""
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def own_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("yamux-")}


# -- basics ---------------------------------------------------------------------------------


async def test_open_accept_roundtrip(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    assert cs.direction is Direction.OUTBOUND
    assert cs.stream_id % 2 == 1
    await cs.write(b"hello")
    ss = await asyncio.wait_for(pair.server.accept_stream(), WAIT)
    assert ss.direction is Direction.INBOUND
    assert ss.stream_id == cs.stream_id
    assert await ss.read() == b"hello"
    await ss.write(bytearray(b"world"))
    assert await cs.read(3) == b"wor"
    assert await cs.read() == b"ld"
    # Server-opened streams use even ids.
    s2 = await pair.server.open_stream()
    assert s2.stream_id % 2 == 0
    await s2.write(b"x")
    c2 = await asyncio.wait_for(pair.client.accept_stream(), WAIT)
    assert await c2.read() == b"x"


async def test_on_stream_callback_and_echo() -> None:
    a, b = MemoryChannel.pair()
    handlers: list[asyncio.Task[None]] = []

    async def echo(stream: MuxedStream) -> None:
        await stream.write(await read_all(stream))
        await stream.aclose()

    server = YamuxConnection(
        b, is_client=False, on_stream=lambda s: handlers.append(asyncio.create_task(echo(s)))
    )
    async with YamuxConnection(a, is_client=True) as client, server:
        s = await client.open_stream()
        await s.write(b"ping" * 1000)
        await s.close_write()
        assert await asyncio.wait_for(read_all(s), WAIT) == b"ping" * 1000
        await asyncio.gather(*handlers)


async def test_many_streams_concurrently(pair: Pair) -> None:
    n = 100
    size = 64 * KiB

    async def serve() -> None:
        async def one(s: MuxedStream) -> None:
            data = await read_all(s)
            await s.write(data[::-1])
            await s.close_write()

        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(one(await pair.server.accept_stream()))

    async def client(i: int) -> None:
        s = await pair.client.open_stream()
        payload = bytes([i]) * size + i.to_bytes(4, "big")
        await s.write(payload)
        await s.close_write()
        assert await read_all(s) == payload[::-1]
        await s.aclose()

    async with asyncio.timeout(WAIT):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(serve())
            for i in range(n):
                tg.create_task(client(i))
    await eventually(lambda: pair.client.num_streams == 0 and pair.server.num_streams == 0)


async def test_one_mib_each_way(pair: Pair) -> None:
    up = os.urandom(MiB)
    down = os.urandom(MiB)
    cs = await pair.client.open_stream()

    async def server_side() -> bytes:
        ss = await pair.server.accept_stream()
        writer = asyncio.create_task(ss.write(down))
        got = await read_all(ss)
        await writer
        await ss.close_write()
        return got

    async def client_side() -> bytes:
        writer = asyncio.create_task(cs.write(up))
        await writer
        await cs.close_write()
        return await read_all(cs)

    async with asyncio.timeout(WAIT):
        got_up, got_down = await asyncio.gather(server_side(), client_side())
    assert got_up == up
    assert got_down == down


async def test_write_accepts_memoryview_and_copies_mutable_buffers(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    buf = bytearray(b"abcdef")
    await cs.write(memoryview(buf)[1:4])
    buf[:] = b"zzzzzz"
    await cs.write(memoryview(struct.pack(">2H", 1, 2)).cast("H"))
    await cs.close_write()
    ss = await pair.server.accept_stream()
    assert await read_all(ss) == b"bcd" + struct.pack(">2H", 1, 2)


# -- flow control ---------------------------------------------------------------------------


async def test_backpressure_blocks_writer_at_the_window(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    payload = os.urandom(INITIAL_WINDOW * 3)
    writer = asyncio.create_task(cs.write(payload))
    ss = await asyncio.wait_for(pair.server.accept_stream(), WAIT)
    # The server does not read: exactly one window arrives, then the writer is stuck.
    await eventually(
        lambda: ss._rlen == INITIAL_WINDOW and pair.client._session.send_window(cs.stream_id) == 0
    )
    for _ in range(100):
        await asyncio.sleep(0)
    assert not writer.done()
    assert ss._rlen == INITIAL_WINDOW
    # Reading releases it.
    async with asyncio.timeout(WAIT):
        got = bytearray()
        while len(got) < len(payload):
            got += await ss.read(100_000)
        await writer
    assert bytes(got) == payload


async def test_high_water_mark_pauses_writers() -> None:
    a, b = MemoryChannel.pair(limit=64 * KiB)  # at most 64 KiB in flight on the channel
    client = YamuxConnection(a, is_client=True, write_high_water=32 * KiB)
    server = YamuxConnection(b, is_client=False)  # not started yet: nobody reads b
    async with client:
        streams = [await client.open_stream() for _ in range(3)]
        payload = os.urandom(100 * KiB)  # within each stream's window

        async def write_all() -> None:
            for st in streams:
                await st.write(payload)

        w = asyncio.create_task(write_all())
        # The first batch fills the channel, the writer task blocks on the second, and
        # the third stays queued: the stream writer waits at the high-water mark.
        await eventually(lambda: bool(client._progress_waiters) and client._writer_busy)
        for _ in range(100):
            await asyncio.sleep(0)
        assert not w.done()
        assert client._session.bytes_to_send == 100 * KiB + 12 * 2
        async with server:
            async with asyncio.timeout(WAIT):
                await w
                for _ in streams:
                    ss = await server.accept_stream()
                    got = bytearray()
                    while len(got) < len(payload):
                        got += await ss.read()
                    assert bytes(got) == payload


# -- half-close and reset -------------------------------------------------------------------


async def test_half_close(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    await cs.write(b"request")
    await cs.close_write()
    await cs.close_write()  # idempotent
    with pytest.raises(StreamClosedError):
        await cs.write(b"more")
    ss = await pair.server.accept_stream()
    assert await read_all(ss) == b"request"
    assert await ss.read() == b""  # end-of-stream is sticky
    await ss.write(b"response")  # the other direction still works
    await ss.close_write()
    assert await read_all(cs) == b"response"
    await cs.aclose()
    await ss.aclose()
    with pytest.raises(StreamClosedError):
        await cs.read()
    await eventually(lambda: pair.client.num_streams == 0 and pair.server.num_streams == 0)


async def test_reset_by_peer(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    await cs.write(b"x")
    ss = await pair.server.accept_stream()
    reader = asyncio.create_task(cs.read())
    await ss.reset()
    with pytest.raises(StreamResetError) as exc:
        await asyncio.wait_for(reader, WAIT)
    assert exc.value.details["refused"] is False
    with pytest.raises(StreamResetError):
        await cs.write(b"y")
    with pytest.raises(StreamClosedError):  # we reset it: "closed by us"
        await ss.read()
    await cs.aclose()  # never raises on a reset stream
    await cs.reset()


async def test_local_aclose_wakes_blocked_reader_and_writer(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    reader = asyncio.create_task(cs.read())
    writer = asyncio.create_task(cs.write(bytes(INITIAL_WINDOW + 1)))
    await eventually(lambda: cs._rwait is not None and cs._wwait is not None)
    await cs.aclose()
    with pytest.raises(StreamClosedError):
        await reader
    with pytest.raises(StreamClosedError):
        await writer
    ss = await pair.server.accept_stream()
    assert len(await asyncio.wait_for(read_all(ss), WAIT)) == INITIAL_WINDOW


async def test_aclose_discards_unread_and_keeps_peer_writer_going(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    await cs.write(b"hi")
    ss = await pair.server.accept_stream()
    await ss.aclose()  # never reads
    # The client can finish a write larger than a window: credit is still returned.
    async with asyncio.timeout(WAIT):
        await cs.write(bytes(3 * INITIAL_WINDOW))
        assert await read_all(cs) == b""
    await cs.aclose()
    await eventually(lambda: pair.client.num_streams == 0 and pair.server.num_streams == 0)


async def test_concurrent_readers_or_writers_are_busy(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    r1 = asyncio.create_task(cs.read())
    await eventually(lambda: cs._rwait is not None)
    with pytest.raises(StreamBusyError):
        await cs.read()
    w1 = asyncio.create_task(cs.write(bytes(INITIAL_WINDOW + 10)))
    await eventually(lambda: cs._wwait is not None)
    with pytest.raises(StreamBusyError):
        await cs.write(b"x")
    with pytest.raises(StreamBusyError):
        await cs.close_write()
    await cs.reset()
    for t in (r1, w1):
        with pytest.raises(StreamClosedError):
            await t
    with pytest.raises(ValueError, match="max_bytes"):
        await cs.read(0)


# -- limits ---------------------------------------------------------------------------------


async def test_stream_limit_refuses_with_reset() -> None:
    a, b = MemoryChannel.pair()
    async with (
        YamuxConnection(a, is_client=True, max_streams=3) as client,
        YamuxConnection(b, is_client=False, max_streams=2) as server,
    ):
        streams = [await client.open_stream() for _ in range(3)]
        with pytest.raises(StreamLimitError):
            await client.open_stream()
        for s in streams:
            await s.write(b"data")
        with pytest.raises(StreamResetError) as exc:
            await asyncio.wait_for(streams[2].read(), WAIT)
        assert exc.value.details["refused"] is True
        assert server.refused_streams == 1
        accepted = [await server.accept_stream() for _ in range(2)]
        assert [await s.read() for s in accepted] == [b"data", b"data"]
        # Freeing a slot on the server lets the next stream in.
        await accepted[0].reset()
        await eventually(lambda: client.num_streams == 2)
        s4 = await client.open_stream()
        await s4.write(b"again")
        assert await (await asyncio.wait_for(server.accept_stream(), WAIT)).read() == b"again"


# -- ping and keep-alive --------------------------------------------------------------------


async def test_ping_rtt(pair: Pair) -> None:
    rtt = await pair.client.ping(timeout=WAIT)
    assert 0 <= rtt < WAIT
    assert await pair.server.ping(timeout=WAIT) >= 0


async def test_keepalive_closes_silent_peer_within_bound() -> None:
    a, b = MemoryChannel.pair()  # nobody runs yamux on b: a frozen peer
    closed_with: list[BaseException | None] = []
    conn = YamuxConnection(
        a,
        is_client=True,
        keepalive_interval=UNIT,
        keepalive_timeout=4 * UNIT,
        on_close=closed_with.append,
    )
    conn.start()
    s = await conn.open_stream()
    reader = asyncio.create_task(s.read())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reason = await asyncio.wait_for(conn.wait_closed(), WAIT)
    elapsed = loop.time() - t0
    assert isinstance(reason, ConnectionClosedError)
    assert "keep-alive" in reason.message
    assert elapsed < 4 * UNIT + WAIT / 4
    assert closed_with == [reason]
    with pytest.raises(StreamBrokenError) as exc:
        await reader
    assert exc.value.__cause__ is reason
    assert not own_tasks()
    # Pings were sent to the silent peer.
    assert b._inbox_len > 0


async def test_keepalive_keeps_live_peer() -> None:
    a, b = MemoryChannel.pair()
    client = YamuxConnection(a, is_client=True, keepalive_interval=UNIT, keepalive_timeout=3 * UNIT)
    server = YamuxConnection(b, is_client=False)
    async with client, server:
        # Several timeouts pass; the server answers pings so the client stays up.
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(10 * UNIT, done.set_result, None)
        await done
        assert not client.is_closed
        assert await client.ping(timeout=WAIT) >= 0


async def test_ping_timeout() -> None:
    a, _b = MemoryChannel.pair()
    async with YamuxConnection(a, is_client=True) as conn:
        with pytest.raises(TimeoutError):
            await conn.ping(timeout=UNIT)
        assert not conn._pings


# -- closing --------------------------------------------------------------------------------


async def test_peer_eof_breaks_streams_with_cause() -> None:
    a, b = MemoryChannel.pair()
    reasons: list[BaseException | None] = []
    client = YamuxConnection(a, is_client=True, on_close=reasons.append)
    client.start()
    s = await client.open_stream()
    reader = asyncio.create_task(s.read())
    await eventually(lambda: b._inbox_len > 0)  # our SYN went out
    await b.aclose()  # the peer vanishes
    with pytest.raises(StreamBrokenError) as exc:
        await asyncio.wait_for(reader, WAIT)
    assert isinstance(exc.value.__cause__, ConnectionClosedError)
    with pytest.raises(StreamBrokenError):
        await s.write(b"x")
    reason = await asyncio.wait_for(client.wait_closed(), WAIT)
    assert reasons == [reason]
    assert client.closed.result() is reason
    with pytest.raises(ConnectionClosedError):
        await client.open_stream()
    assert not own_tasks()
    await client.aclose()  # idempotent after an abrupt close


async def test_graceful_aclose_sends_go_away(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    await cs.write(b"last words")
    ss = await pair.server.accept_stream()
    server_reader = asyncio.create_task(read_all(ss))
    client_reader = asyncio.create_task(cs.read())
    await eventually(lambda: cs._rwait is not None)
    await pair.client.aclose()
    assert pair.client.close_reason is None
    assert pair.client.closed.result() is None
    with pytest.raises(StreamClosedError):
        await client_reader
    with pytest.raises(StreamBrokenError):
        await asyncio.wait_for(server_reader, WAIT)
    await asyncio.wait_for(pair.server.wait_closed(), WAIT)
    assert pair.server.remote_go_away == 0
    assert not own_tasks()


async def test_data_with_fin_survives_connection_close(pair: Pair) -> None:
    ss_task = asyncio.create_task(pair.server.accept_stream())
    cs = await pair.client.open_stream()
    await cs.write(b"final answer")
    await cs.close_write()
    ss = await ss_task
    await eventually(lambda: ss._eof)
    await pair.client.aclose()
    await asyncio.wait_for(pair.server.wait_closed(), WAIT)
    assert await read_all(ss) == b"final answer"
    with pytest.raises(StreamBrokenError):
        await ss.write(b"too late")


async def test_local_close_keeps_finished_data_readable(pair: Pair) -> None:
    cs = await pair.client.open_stream()
    await cs.write(b"done")
    await cs.close_write()
    ss = await pair.server.accept_stream()
    await eventually(lambda: ss._eof)
    await pair.server.aclose()
    assert await read_all(ss) == b"done"
    with pytest.raises(StreamClosedError):
        await ss.write(b"x")


async def test_protocol_violation_closes_with_muxer_error() -> None:
    a, b = MemoryChannel.pair()
    conn = YamuxConnection(a, is_client=True)
    conn.start()
    s = await conn.open_stream()
    await b.write(b"\x07" + bytes(11))  # version 7
    reason = await asyncio.wait_for(conn.wait_closed(), WAIT)
    assert isinstance(reason, MuxerError)
    with pytest.raises(StreamBrokenError) as exc:
        await s.read()
    assert exc.value.__cause__ is reason
    # The GoAway(protocol error) went out before the channel closed.
    wire = await b.read()
    assert wire.endswith(struct.pack(">BBHII", 0, 3, 0, 0, 1))
    assert not own_tasks()


async def test_accept_stream_fails_when_connection_closes(pair: Pair) -> None:
    acceptor = asyncio.create_task(pair.client.accept_stream())
    await eventually(lambda: pair.client._accept_wait is not None)
    await pair.server.aclose()
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(acceptor, WAIT)


async def test_writer_failure_breaks_connection() -> None:
    class FailingChannel(MemoryChannel):
        async def write(self, data: bytes) -> None:
            raise OSError("boom")

    a = FailingChannel()
    b = MemoryChannel()
    a.peer, b.peer = b, a
    conn = YamuxConnection(a, is_client=True)
    conn.start()
    s = await conn.open_stream()
    reason = await asyncio.wait_for(conn.wait_closed(), WAIT)
    assert isinstance(reason, OSError)
    with pytest.raises(StreamBrokenError):
        await s.write(b"x")
    assert not own_tasks()


async def test_unstarted_connection_closes_channel() -> None:
    a, b = MemoryChannel.pair()
    conn = YamuxConnection(a, is_client=True)
    with pytest.raises(RuntimeError):
        _ = conn.closed
    with pytest.raises(RuntimeError):
        await conn.open_stream()
    await conn.aclose()
    assert await b.read() == b""


async def test_no_task_left_after_many_connections() -> None:
    before = own_tasks()
    assert not before
    for _ in range(20):
        a, b = MemoryChannel.pair()
        async with (
            YamuxConnection(
                a, is_client=True, keepalive_interval=UNIT, keepalive_timeout=WAIT
            ) as c,
            YamuxConnection(b, is_client=False) as s,
        ):
            st = await c.open_stream()
            await st.write(b"x")
            assert await (await s.accept_stream()).read() == b"x"
    assert not own_tasks()


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="keepalive_interval"):
        YamuxConnection(MemoryChannel(), is_client=True, keepalive_interval=5, keepalive_timeout=5)
    with pytest.raises(ValueError, match="write_high_water"):
        YamuxConnection(MemoryChannel(), is_client=True, write_high_water=0)


async def test_pending_ping_fails_when_connection_closes() -> None:
    a, b = MemoryChannel.pair()  # silent peer
    conn = YamuxConnection(a, is_client=True)
    conn.start()
    pinger = asyncio.create_task(conn.ping())
    await eventually(lambda: b._inbox_len > 0)
    await b.aclose()
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(pinger, WAIT)
    with pytest.raises(ConnectionClosedError):
        await conn.ping()
    await conn.aclose()


async def test_failing_on_stream_callback_resets_the_stream() -> None:
    a, b = MemoryChannel.pair()

    def broken(stream: MuxedStream) -> None:
        raise RuntimeError("handler bug")

    async with (
        YamuxConnection(a, is_client=True) as client,
        YamuxConnection(b, is_client=False, on_stream=broken) as server,
    ):
        s = await client.open_stream()
        await s.write(b"x")
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(s.read(), WAIT)
        assert not server.is_closed
        assert await client.ping(timeout=WAIT) >= 0
