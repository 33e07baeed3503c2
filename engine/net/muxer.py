"""yamux over asyncio: :class:`YamuxConnection` and its :class:`MuxedStream` objects.

A thin I/O layer around the sans-IO :class:`~engine.net.yamux.YamuxSession`. It runs on
any :class:`SecureChannel` (the Noise channel in production, an in-memory pair in tests).

Tasks. A connection owns exactly two tasks, both started by :meth:`YamuxConnection.start`:
the *reader* (reads the channel, feeds the session, dispatches events to streams) and the
*writer* (sends whatever the session queued). Stream writes and window updates only queue
frames and wake the writer, so frames from many streams, and many small writes from one
stream, leave in one channel write. The optional keep-alive is a loop timer, not a task.
Whatever ends the connection, the reader closes the channel, stops the writer and
resolves :attr:`YamuxConnection.closed`; nothing is left running afterwards.

Backpressure. A stream write takes at most the peer's send window and waits for a window
update for the rest; once ``write_high_water`` bytes are queued for the channel, writers
wait until the writer task has taken them, and the writer task takes the next batch only
after the channel's ``write`` returned (TCP backpressure through Noise). So at most about
one batch in flight plus ``write_high_water`` queued, per connection.

Errors (trio's contract, see :mod:`engine.net.interface`):

- :class:`~engine.errors.StreamClosedError`: we closed the stream (``aclose``, ``reset``,
  ``close_write`` for writes) or the connection (``aclose``).
- :class:`~engine.errors.StreamResetError`: the peer reset the stream (``details["refused"]``
  when it refused our SYN, e.g. at its stream limit).
- :class:`~engine.errors.StreamBrokenError`: the connection failed (EOF, I/O error,
  protocol violation, keep-alive timeout); ``__cause__`` holds the reason.
- :class:`~engine.errors.StreamBusyError`: two tasks read, or two tasks wrote, at once.

``read`` returns ``b""`` only after the peer's FIN and every byte before it. Data that
arrived with the FIN stays readable even if the connection dies afterwards; otherwise
buffered data is still returned before a broken stream raises, while a reset drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from engine.errors import (
    ConnectionClosedError,
    GlueberryError,
    MuxerError,
    StreamBrokenError,
    StreamBusyError,
    StreamClosedError,
    StreamError,
    StreamResetError,
)
from engine.net.interface import Direction
from engine.net.yamux import (
    DEFAULT_MAX_FRAME_PAYLOAD,
    INITIAL_WINDOW,
    DataReceived,
    Event,
    GoAwayCode,
    PongReceived,
    SendWindowAvailable,
    StreamEnded,
    StreamOpened,
    StreamReset,
    YamuxSession,
)

__all__ = ["MuxedStream", "SecureChannel", "YamuxConnection"]

_log = logging.getLogger(__name__)

_OPEN = 0
_CLOSING = 1
_CLOSED = 2


class SecureChannel(Protocol):
    """The byte channel yamux runs on (implemented by the Noise layer)."""

    async def read(self) -> bytes:
        """Return the next plaintext chunk; ``b""`` at end of stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Write ``data`` (the channel may split it into several frames)."""
        ...

    async def aclose(self) -> None:
        """Close the channel."""
        ...


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class MuxedStream:
    """One yamux stream of a :class:`YamuxConnection`.

    Created by :meth:`YamuxConnection.open_stream` or handed to the inbound-stream
    callback / :meth:`YamuxConnection.accept_stream`; never constructed directly.
    """

    __slots__ = (
        "_broken",
        "_closed",
        "_conn",
        "_direction",
        "_eof",
        "_rbuf",
        "_reading",
        "_refused",
        "_reset",
        "_rlen",
        "_rwait",
        "_stream_id",
        "_wclosed",
        "_writing",
        "_wwait",
    )

    def __init__(self, conn: YamuxConnection, stream_id: int, direction: Direction) -> None:
        self._conn = conn
        self._stream_id = stream_id
        self._direction = direction
        self._rbuf: deque[bytes] = deque()
        self._rlen = 0
        self._eof = False  # the peer sent FIN
        self._wclosed = False  # we sent FIN
        self._closed = False  # we called aclose/reset, or closed the connection
        self._reset = False  # the peer reset the stream
        self._refused = False
        self._broken: BaseException | None = None  # the connection failed
        self._reading = False
        self._writing = False
        self._rwait: asyncio.Future[None] | None = None
        self._wwait: asyncio.Future[None] | None = None

    @property
    def stream_id(self) -> int:
        """The yamux stream id (odd: opened by the dialer, even: by the listener)."""
        return self._stream_id

    @property
    def direction(self) -> Direction:
        """OUTBOUND if we opened the stream, INBOUND if the peer did."""
        return self._direction

    @property
    def connection(self) -> YamuxConnection:
        """The connection this stream belongs to."""
        return self._conn

    def __repr__(self) -> str:
        return f"<MuxedStream {self._stream_id} {self._direction.value}>"

    # -- errors ------------------------------------------------------------------------------

    def _error(self, *, writing: bool) -> StreamError | None:
        """The error an operation must raise now, or None (fresh instance each time)."""
        if self._closed:
            return StreamClosedError("stream closed", details={"stream_id": self._stream_id})
        if self._reset:
            return StreamResetError(
                "stream refused by the peer" if self._refused else "stream reset by the peer",
                details={"stream_id": self._stream_id, "refused": self._refused},
            )
        if writing and self._wclosed:
            return StreamClosedError(
                "stream closed for writing", details={"stream_id": self._stream_id}
            )
        if self._broken is not None:
            err = StreamBrokenError("connection lost", details={"stream_id": self._stream_id})
            err.__cause__ = self._broken
            return err
        return None

    # -- reading -----------------------------------------------------------------------------

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Read up to ``max_bytes`` bytes.

        Args:
            max_bytes: upper bound on the returned size (>= 1).

        Returns:
            At least one byte, or ``b""`` once the peer closed its write side and every
            byte before that was read.

        Raises:
            ValueError: ``max_bytes`` < 1.
            StreamBusyError: another task is reading.
            StreamClosedError: we closed the stream or the connection.
            StreamResetError: the peer reset the stream.
            StreamBrokenError: the connection failed (cause attached).
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._reading:
            raise StreamBusyError("another task is reading", details={"stream_id": self._stream_id})
        while True:
            if self._closed or self._reset:
                err = self._error(writing=False)
                assert err is not None
                raise err
            if self._rbuf:
                return self._take(max_bytes)
            if self._eof:
                return b""
            if self._broken is not None:
                err = self._error(writing=False)
                assert err is not None
                raise err
            fut = self._rwait = self._conn._loop.create_future()
            self._reading = True
            try:
                await fut
            finally:
                self._reading = False
                self._rwait = None

    def _take(self, max_bytes: int) -> bytes:
        buf = self._rbuf
        first = buf[0]
        if len(first) > max_bytes:
            out = first[:max_bytes]
            buf[0] = first[max_bytes:]
        else:
            buf.popleft()
            n = len(first)
            if buf and n + len(buf[0]) <= max_bytes:
                parts = [first]
                while buf and n + len(buf[0]) <= max_bytes:
                    chunk = buf.popleft()
                    parts.append(chunk)
                    n += len(chunk)
                out = b"".join(parts)
            else:
                out = first
        self._rlen -= len(out)
        self._conn._consume(self._stream_id, len(out))
        return out

    # -- writing -----------------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``, waiting for send window (backpressure).

        ``bytes`` are sent without copying; mutable buffers are copied as they are queued.

        Raises:
            StreamBusyError: another task is writing.
            StreamClosedError: we closed the stream (or its write side).
            StreamResetError: the peer reset the stream.
            StreamBrokenError: the connection failed (cause attached).
        """
        if self._writing:
            raise StreamBusyError("another task is writing", details={"stream_id": self._stream_id})
        err = self._error(writing=True)
        if err is not None:
            raise err
        view = None if isinstance(data, bytes) else memoryview(data).cast("B")
        total = len(data) if view is None else len(view)
        if not total:
            return
        conn = self._conn
        session = conn._session
        self._writing = True
        try:
            pos = 0
            while True:
                if pos == 0 and view is None:
                    taken = session.send_data(self._stream_id, data)
                else:
                    if view is None:
                        view = memoryview(data)
                    taken = session.send_data(self._stream_id, view[pos:])
                pos += taken
                conn._kick()
                if session.bytes_to_send >= conn._high_water:
                    await conn._wait_writer_progress()
                    err = self._error(writing=True)
                    if err is not None:
                        raise err
                if pos >= total:
                    return
                if taken == 0:
                    fut = self._wwait = conn._loop.create_future()
                    try:
                        await fut
                    finally:
                        self._wwait = None
                    err = self._error(writing=True)
                    if err is not None:
                        raise err
        finally:
            self._writing = False

    async def close_write(self) -> None:
        """Half-close: send FIN. Reading stays possible. Idempotent.

        Raises:
            StreamBusyError: a write is in progress.
            StreamClosedError, StreamResetError, StreamBrokenError: as for :meth:`write`.
        """
        if self._wclosed and not self._closed:
            return
        if self._writing:
            raise StreamBusyError("a write is in progress", details={"stream_id": self._stream_id})
        err = self._error(writing=True)
        if err is not None:
            raise err
        self._wclosed = True
        self._conn._session.close_stream(self._stream_id)
        self._conn._kick()
        self._maybe_forget()

    async def aclose(self) -> None:
        """Close both directions: FIN if not sent, unread and future data dropped.

        Idempotent; never raises for an already reset or broken stream.
        """
        if self._closed:
            return
        conn = self._conn
        if not self._reset and self._broken is None and conn._state == _OPEN:
            session = conn._session
            if not self._wclosed:
                self._wclosed = True
                session.close_stream(self._stream_id)
            session.close_read(self._stream_id)
            conn._kick()
        self._mark_closed()

    async def reset(self) -> None:
        """Abort both directions; the peer sees a reset. Idempotent, never raises."""
        if self._closed:
            return
        conn = self._conn
        if not self._reset and self._broken is None and conn._state == _OPEN:
            conn._session.reset_stream(self._stream_id)
            conn._kick()
        self._mark_closed()

    # -- called by the connection ----------------------------------------------------------

    def _mark_closed(self) -> None:
        self._closed = True
        self._rbuf.clear()
        self._rlen = 0
        self._wake_all()
        self._conn._streams.pop(self._stream_id, None)

    def _wake_all(self) -> None:
        _wake(self._rwait)
        _wake(self._wwait)

    def _maybe_forget(self) -> None:
        # No more events will come for a stream both sides finished (or a dead one).
        if self._eof and self._wclosed:
            self._conn._streams.pop(self._stream_id, None)

    def _on_data(self, data: bytes) -> None:
        self._rbuf.append(data)
        self._rlen += len(data)
        _wake(self._rwait)

    def _on_eof(self) -> None:
        self._eof = True
        _wake(self._rwait)
        self._maybe_forget()

    def _on_reset(self, refused: bool) -> None:
        self._reset = True
        self._refused = refused
        self._rbuf.clear()
        self._rlen = 0
        self._wake_all()

    def _on_broken(self, cause: BaseException) -> None:
        self._broken = cause
        self._wake_all()

    def _on_local_close(self) -> None:
        # Our side closed the whole connection: the stream counts as closed by us, but
        # data that arrived with the peer's FIN stays readable.
        if self._eof:
            self._wclosed = True
            self._broken = ConnectionClosedError("connection closed")
            self._wake_all()
        else:
            self._mark_closed()


class YamuxConnection:
    """A yamux session running over a :class:`SecureChannel`.

    Args:
        channel: the secured byte channel (the connection takes ownership and closes it).
        is_client: True on the dialer (odd stream ids).
        window_size: per-stream receive window (256 KiB to 16 MiB).
        max_streams: concurrent streams per direction; the peer's excess SYNs are reset,
            our excess :meth:`open_stream` calls raise StreamLimitError.
        max_frame_payload: largest Data frame payload we send.
        on_stream: called synchronously (from the reader) with every inbound stream; it must
            not block (spawn a task). Without it, use :meth:`accept_stream`.
        on_close: called once, synchronously, with the reason (None for our own clean
            close) as soon as the connection starts closing. Must not raise.
        keepalive_interval: if set, ping after this many seconds of silence from the peer.
        keepalive_timeout: with ``keepalive_interval``, close the connection (streams
            break) when the peer was silent this long; must exceed the interval.
        write_high_water: bytes queued for the channel at which stream writes wait.
        close_timeout: how long :meth:`aclose` waits to flush queued frames and GoAway.

    Raises:
        ValueError: a limit is out of range.
    """

    def __init__(
        self,
        channel: SecureChannel,
        *,
        is_client: bool,
        window_size: int = INITIAL_WINDOW,
        max_streams: int = 256,
        max_frame_payload: int = DEFAULT_MAX_FRAME_PAYLOAD,
        on_stream: Callable[[MuxedStream], None] | None = None,
        on_close: Callable[[BaseException | None], None] | None = None,
        keepalive_interval: float | None = None,
        keepalive_timeout: float = 15.0,
        write_high_water: int = 1024 * 1024,
        close_timeout: float = 2.0,
    ) -> None:
        if keepalive_interval is not None and not 0 < keepalive_interval < keepalive_timeout:
            raise ValueError("keepalive_interval must be in (0, keepalive_timeout)")
        if write_high_water < 1:
            raise ValueError("write_high_water must be >= 1")
        self._channel = channel
        self._session = YamuxSession(
            is_client,
            window_size=window_size,
            max_streams=max_streams,
            max_frame_payload=max_frame_payload,
        )
        self._on_stream = on_stream
        self._on_close = on_close
        self._ka_interval = keepalive_interval
        self._ka_timeout = keepalive_timeout
        self._high_water = write_high_water
        self._close_timeout = close_timeout
        self._streams: dict[int, MuxedStream] = {}
        self._accept_queue: deque[MuxedStream] = deque()
        self._accept_wait: asyncio.Future[None] | None = None
        self._pings: dict[int, tuple[asyncio.Future[float], float]] = {}
        self._state = _OPEN
        self._reason: BaseException | None = None
        self._flush_on_close = False
        self._last_received = time.monotonic()
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # start()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writer_wake: asyncio.Future[None] | None = None
        self._writer_busy = False
        self._progress_waiters: list[asyncio.Future[None]] = []
        self._ka_handle: asyncio.TimerHandle | None = None
        self._closed_fut: asyncio.Future[BaseException | None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader and writer tasks (and the keep-alive timer). Idempotent.

        Must be called from a running event loop.
        """
        if self._reader is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closed_fut = self._loop.create_future()
        self._last_received = time.monotonic()
        self._writer = self._loop.create_task(self._write_loop(), name="yamux-writer")
        self._reader = self._loop.create_task(self._read_loop(), name="yamux-reader")
        if self._ka_interval is not None:
            self._ka_handle = self._loop.call_later(self._ka_interval, self._keepalive_tick)

    async def __aenter__(self) -> YamuxConnection:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def is_client(self) -> bool:
        """Whether we are the dialer."""
        return self._session.is_client

    @property
    def is_closed(self) -> bool:
        """True once the connection started closing (no new streams, streams dead)."""
        return self._state != _OPEN

    @property
    def close_reason(self) -> BaseException | None:
        """Why the connection closed (None while open or after our own clean close)."""
        return self._reason

    @property
    def closed(self) -> asyncio.Future[BaseException | None]:
        """Resolved with the close reason once the channel is closed and no task is left.

        Raises:
            RuntimeError: :meth:`start` was not called.
        """
        if self._closed_fut is None:
            raise RuntimeError("YamuxConnection.start() was not called")
        return self._closed_fut

    @property
    def last_received(self) -> float:
        """``time.monotonic()`` of the last bytes received from the peer."""
        return self._last_received

    @property
    def num_streams(self) -> int:
        """Streams the session still tracks (open, half-closed, or with unread data)."""
        return self._session.num_streams

    @property
    def refused_streams(self) -> int:
        """Inbound streams refused with a reset (stream limit or after GoAway)."""
        return self._session.refused_streams

    @property
    def remote_go_away(self) -> int | None:
        """The peer's GoAway code, if it sent one."""
        return self._session.remote_go_away

    async def wait_closed(self) -> BaseException | None:
        """Wait until the connection is fully closed and its tasks ended.

        Returns:
            The close reason (None after our own clean close).

        Raises:
            RuntimeError: :meth:`start` was not called.
        """
        if self._reader is None:
            raise RuntimeError("YamuxConnection.start() was not called")
        await asyncio.wait([self._reader])
        return self._reason

    async def aclose(self) -> None:
        """Close gracefully: GoAway, flush queued frames (bounded), close the channel.

        Streams still open get StreamClosedError. Idempotent; returns once every task of
        the connection has ended.
        """
        if self._reader is None:
            # Never started: nothing runs, just close the channel.
            if self._state == _OPEN:
                self._begin_close(None)
            self._state = _CLOSED
            with contextlib.suppress(Exception):
                await self._channel.aclose()
            return
        if self._state == _OPEN:
            self._session.go_away(GoAwayCode.NORMAL)
            self._kick()
            self._flush_on_close = True
            self._begin_close(None)
            self._reader.cancel()
        await asyncio.wait([self._reader])

    close = aclose  # the host calls ``close()``

    def _begin_close(self, reason: BaseException | None) -> None:
        """Synchronous part of closing: streams, waiters and callbacks see it at once."""
        if self._state != _OPEN:
            return
        self._state = _CLOSING
        self._reason = reason
        if self._ka_handle is not None:
            self._ka_handle.cancel()
            self._ka_handle = None
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            if reason is None:
                stream._on_local_close()
            else:
                stream._on_broken(reason)
        for stream in self._accept_queue:
            stream._on_broken(reason or ConnectionClosedError("connection closed"))
        self._accept_queue.clear()
        _wake(self._accept_wait)
        exc = ConnectionClosedError("connection closed")
        if reason is not None:
            exc.__cause__ = reason
        for fut, _ in self._pings.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pings.clear()
        self._wake_progress()
        if self._on_close is not None:
            try:
                self._on_close(reason)
            except Exception:
                _log.exception("yamux on_close callback failed")

    def _fail(self, reason: BaseException) -> None:
        """Abrupt close from outside the reader (writer error, keep-alive timeout)."""
        if self._state != _OPEN:
            return
        self._begin_close(reason)
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    # -- streams -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._reader is None:
            raise RuntimeError("YamuxConnection.start() was not called")
        if self._state != _OPEN:
            exc = ConnectionClosedError("connection closed")
            raise exc from self._reason

    async def open_stream(self) -> MuxedStream:
        """Open an outbound stream (the SYN is queued at once; no round trip is awaited).

        Raises:
            ConnectionClosedError: the connection is closed or going away.
            StreamLimitError: ``max_streams`` outbound streams are live.
        """
        self._check_open()
        stream_id = self._session.open_stream()
        stream = MuxedStream(self, stream_id, Direction.OUTBOUND)
        self._streams[stream_id] = stream
        self._kick()
        return stream

    async def accept_stream(self) -> MuxedStream:
        """Wait for the next inbound stream (when no ``on_stream`` callback is set).

        Raises:
            ConnectionClosedError: the connection closed.
        """
        while True:
            if self._accept_queue:
                return self._accept_queue.popleft()
            self._check_open()
            if self._accept_wait is not None:
                raise StreamBusyError("another task is accepting")
            fut = self._accept_wait = self._loop.create_future()
            try:
                await fut
            finally:
                self._accept_wait = None

    def _consume(self, stream_id: int, n: int) -> None:
        if self._state == _OPEN:
            self._session.consume(stream_id, n)
            if self._session.bytes_to_send:
                self._kick()

    # -- ping and keep-alive -------------------------------------------------------------------

    def send_ping(self) -> None:
        """Queue a ping without waiting for the answer (the answer refreshes liveness)."""
        if self._state == _OPEN:
            self._session.ping()
            self._kick()

    async def ping(self, timeout: float | None = None) -> float:  # noqa: ASYNC109
        """Send a yamux ping and wait for the answer.

        Args:
            timeout: seconds to wait, or None for no limit.

        Returns:
            The round-trip time in seconds.

        Raises:
            TimeoutError: no answer within ``timeout``.
            ConnectionClosedError: the connection closed.
        """
        self._check_open()
        opaque = self._session.ping()
        fut: asyncio.Future[float] = self._loop.create_future()
        start = time.monotonic()
        self._pings[opaque] = (fut, start)
        self._kick()
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._pings.pop(opaque, None)

    def _keepalive_tick(self) -> None:
        self._ka_handle = None
        if self._state != _OPEN or self._ka_interval is None:
            return
        now = time.monotonic()
        silent = now - self._last_received
        if silent >= self._ka_timeout:
            self._fail(
                ConnectionClosedError(
                    "keep-alive timeout: the peer stopped answering",
                    details={"silent_seconds": round(silent, 3)},
                )
            )
            return
        if silent >= self._ka_interval:
            self.send_ping()
        delay = min(self._ka_interval, self._ka_timeout - silent)
        self._ka_handle = self._loop.call_later(max(delay, 0.001), self._keepalive_tick)

    # -- the writer --------------------------------------------------------------------------

    def _kick(self) -> None:
        fut = self._writer_wake
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_progress(self) -> None:
        waiters = self._progress_waiters
        if waiters:
            self._progress_waiters = []
            for fut in waiters:
                _wake(fut)

    async def _wait_writer_progress(self) -> None:
        """Wait until the writer took the queued bytes (or the connection closed)."""
        if self._state != _OPEN:
            return
        fut = self._loop.create_future()
        self._progress_waiters.append(fut)
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._progress_waiters.remove(fut)

    async def _write_loop(self) -> None:
        session = self._session
        channel = self._channel
        try:
            while True:
                data = session.data_to_send()
                if not data:
                    self._writer_busy = False
                    self._wake_progress()
                    fut = self._writer_wake = self._loop.create_future()
                    try:
                        await fut
                    finally:
                        self._writer_wake = None
                    continue
                self._writer_busy = True
                self._wake_progress()
                await channel.write(data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    async def _flush(self) -> None:
        """Wait (bounded by close_timeout) until every queued frame was written."""
        writer = self._writer
        if writer is None or writer.done():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._close_timeout):
                while self._session.bytes_to_send or self._writer_busy:
                    if writer.done():
                        return
                    self._kick()
                    fut = self._loop.create_future()
                    self._progress_waiters.append(fut)
                    await fut

    # -- the reader --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        session = self._session
        channel = self._channel
        try:
            while self._state == _OPEN:
                data = await channel.read()
                if not data:
                    reason: BaseException = ConnectionClosedError("the peer closed the connection")
                    try:
                        session.receive_eof()
                    except MuxerError as exc:
                        reason = exc
                    self._begin_close(reason)
                    break
                self._last_received = time.monotonic()
                events = session.receive_data(data)
                if events:
                    self._dispatch(events)
                if session.bytes_to_send:
                    self._kick()
                # Release the last chunk and its events (which reference its data) before
                # the next read: an idle connection would otherwise pin its last burst.
                data = b""
                events = []
        except asyncio.CancelledError:
            # We cancel the reader to close; finish the shutdown below either way.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if self._state == _OPEN:  # not cancelled by us: the loop is shutting down
                self._begin_close(ConnectionClosedError("connection task cancelled"))
        except MuxerError as exc:
            self._flush_on_close = True  # let the GoAway(protocol error) out
            self._begin_close(exc)
        except (GlueberryError, OSError, EOFError) as exc:
            self._begin_close(exc)
        except Exception as exc:
            _log.exception("yamux reader failed")
            self._begin_close(exc)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        """Stop the writer, close the channel, resolve ``closed``. Runs in the reader."""
        try:
            if self._flush_on_close:
                await self._flush()
            writer = self._writer
            if writer is not None and not writer.done():
                writer.cancel()
                await asyncio.wait([writer])
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(self._close_timeout):
                    await self._channel.aclose()
        finally:
            self._state = _CLOSED
            self._wake_progress()
            fut = self._closed_fut
            if fut is not None and not fut.done():
                fut.set_result(self._reason)

    def _dispatch(self, events: list[Event]) -> None:
        streams = self._streams
        for ev in events:
            if isinstance(ev, DataReceived):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._on_data(ev.data)
                else:  # nobody will read it: give the credit back
                    self._session.consume(ev.stream_id, len(ev.data))
            elif isinstance(ev, SendWindowAvailable):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    _wake(stream._wwait)
            elif isinstance(ev, StreamOpened):
                self._new_inbound(ev.stream_id)
            elif isinstance(ev, StreamEnded):
                stream = streams.get(ev.stream_id)
                if stream is not None:
                    stream._on_eof()
            elif isinstance(ev, StreamReset):
                stream = streams.pop(ev.stream_id, None)
                if stream is not None:
                    stream._on_reset(ev.refused)
            elif isinstance(ev, PongReceived):
                entry = self._pings.get(ev.opaque)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(time.monotonic() - entry[1])
            # PingReceived is answered by the session; GoAwayReceived is recorded there.

    def _new_inbound(self, stream_id: int) -> None:
        stream = MuxedStream(self, stream_id, Direction.INBOUND)
        self._streams[stream_id] = stream
        callback = self._on_stream
        if callback is None:
            self._accept_queue.append(stream)
            _wake(self._accept_wait)
            return
        try:
            callback(stream)
        except Exception:
            _log.exception("yamux on_stream callback failed; resetting the stream")
            self._session.reset_stream(stream_id)
            stream._mark_closed()
