"""yamux 1.0 (``/yamux/1.0.0``) stream multiplexer, sans-IO.

:class:`YamuxSession` turns bytes from the secure channel into events and our calls into
bytes to send. It does no I/O and imports nothing asynchronous; :mod:`engine.net.muxer`
drives it over a real channel. Wire format (hashicorp/yamux ``spec.md``, libp2p yamux
spec): every frame starts with a 12-byte big-endian header::

    version:u8 (0) | type:u8 | flags:u16 | stream id:u32 | length:u32

Types: Data (0, ``length`` payload bytes follow), WindowUpdate (1, ``length`` is a window
delta), Ping (2, ``length`` is an opaque value, stream 0), GoAway (3, ``length`` is an
error code, stream 0). Flags: SYN (1) opens a stream, ACK (2) acknowledges it, FIN (4)
half-closes it, RST (8) resets it. The dialer (client) uses odd stream ids, the listener
(server) even ones; id 0 is the session.

Flow control. Each stream starts with a 256 KiB window in both directions. A configured
larger window is announced in the SYN/ACK window update. The receive window is the credit
the peer still has; :meth:`YamuxSession.consume` (the application read ``n`` bytes)
returns credit with a WindowUpdate once at least half a window can be returned, like
go-yamux. A peer that sends beyond its credit commits a protocol error: the session
queues a GoAway(protocol error) and raises :class:`~engine.errors.MuxerError`. Data
frames are delivered in pieces as they arrive, so no frame payload is ever buffered whole;
a header announcing more than the stream's credit is rejected before any payload is read.

Half-close and reset (trio semantics for the stream layer above):

- ``close_stream`` sends FIN: we will write no more; reading continues. A FIN from the
  peer becomes :class:`StreamEnded` *after* every byte before it was delivered, so the
  reader sees end-of-stream only at the end. Once both sides sent FIN the stream is
  CLOSED; it leaves the stream table when the application consumed every byte (or called
  :meth:`YamuxSession.close_read`), so unread data keeps counting against the stream
  limit.
- ``reset_stream`` sends RST; a RST from the peer becomes :class:`StreamReset`. Either
  way both directions are dead at once, unread data is dropped, the stream leaves the
  table, and later frames for its id are ignored (data discarded, bounded by the window).
- An inbound SYN beyond ``max_streams`` concurrent inbound streams, or after we sent
  GoAway, is answered with RST (never left waiting) and counted in
  :attr:`YamuxSession.refused_streams`; no event is emitted. Outbound streams have the
  same limit; :meth:`YamuxSession.open_stream` raises
  :class:`~engine.errors.StreamLimitError` there.

Every rule of the per-stream state machine is in :data:`STREAM_TRANSITIONS`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from engine.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MuxerError,
    StreamLimitError,
)

__all__ = [
    "DEFAULT_MAX_FRAME_PAYLOAD",
    "DEFAULT_MAX_QUEUED_REPLIES",
    "HEADER_SIZE",
    "INITIAL_WINDOW",
    "MAX_WINDOW",
    "PROTOCOL_ID",
    "STREAM_TRANSITIONS",
    "DataReceived",
    "Event",
    "Flag",
    "FrameHeader",
    "FrameType",
    "GoAwayCode",
    "GoAwayReceived",
    "PingReceived",
    "PongReceived",
    "SendWindowAvailable",
    "StreamEnded",
    "StreamInput",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "YamuxSession",
]

PROTOCOL_ID = "/yamux/1.0.0"
HEADER_SIZE = 12
INITIAL_WINDOW = 256 * 1024
"""Window every stream starts with in both directions (fixed by the spec)."""
MAX_WINDOW = 16 * 1024 * 1024
"""Largest receive window we accept as configuration (go-yamux's maximum)."""
DEFAULT_MAX_FRAME_PAYLOAD = 64 * 1024 - HEADER_SIZE
"""Largest Data payload we put in one frame (go-yamux: 64 KiB message including header)."""
DEFAULT_MAX_QUEUED_REPLIES = 4096
"""Answers to the peer (ping ACK, SYN ACK, RST) queued at most before the session fails."""
_U32 = 0xFFFFFFFF
_VERSION = 0
_HEADER = struct.Struct(">BBHII")
# Plain ints for the hot paths (IntFlag arithmetic goes through enum machinery).
_T_DATA, _T_WINDOW_UPDATE, _T_PING, _T_GO_AWAY = 0, 1, 2, 3
_SYN, _ACK, _FIN, _RST = 1, 2, 4, 8


class FrameType(enum.IntEnum):
    """The four yamux frame types."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    """Frame flags."""

    NONE = 0
    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(enum.IntEnum):
    """Error codes carried by GoAway."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """One yamux frame header (the payload of Data frames follows it on the wire)."""

    type: FrameType
    flags: Flag
    stream_id: int
    length: int
    version: int = _VERSION

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> FrameHeader:
        """Parse 12 bytes into a header.

        Args:
            data: exactly :data:`HEADER_SIZE` bytes.

        Returns:
            The header.

        Raises:
            MuxerError: wrong size, unknown version or unknown frame type.
        """
        if len(data) != HEADER_SIZE:
            raise MuxerError("yamux header must be 12 bytes", details={"size": len(data)})
        version, ftype, flags, stream_id, length = _HEADER.unpack(data)
        if version != _VERSION:
            raise MuxerError("unsupported yamux version", details={"version": version})
        if ftype > FrameType.GO_AWAY:
            raise MuxerError("unknown yamux frame type", details={"type": ftype})
        return cls(FrameType(ftype), Flag(flags), stream_id, length, version)

    def serialize(self) -> bytes:
        """Return the 12 header bytes."""
        return _HEADER.pack(self.version, self.type, self.flags, self.stream_id, self.length)


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened stream ``stream_id`` (we already acknowledged it)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes for ``stream_id``. Call :meth:`YamuxSession.consume` once the app read them."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed ``stream_id`` (FIN) after all data before it was delivered."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset ``stream_id``.

    ``refused`` is true when it was our stream and the peer never acknowledged it (the
    usual answer to a SYN beyond the peer's stream limit).
    """

    stream_id: int
    refused: bool = False


@dataclass(frozen=True, slots=True)
class SendWindowAvailable:
    """The peer granted more send window on ``stream_id`` (now ``window`` bytes)."""

    stream_id: int
    window: int


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged us; the answer is already queued."""

    opaque: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer answered our ping ``opaque``."""

    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer will accept no new streams; existing streams continue."""

    code: int


Event = (
    StreamOpened
    | DataReceived
    | StreamEnded
    | StreamReset
    | SendWindowAvailable
    | PingReceived
    | PongReceived
    | GoAwayReceived
)


# -- per-stream state machine ---------------------------------------------------------------


class StreamState(enum.Enum):
    """Lifecycle of one stream (the SYN/ACK exchange is tracked beside it)."""

    OPEN = "open"
    LOCAL_CLOSED = "local_closed"  # we sent FIN; the peer may still send
    REMOTE_CLOSED = "remote_closed"  # the peer sent FIN; we may still send
    CLOSED = "closed"  # both sent FIN
    RESET = "reset"  # either side sent RST


class StreamInput(enum.Enum):
    """What moves a stream between states."""

    LOCAL_FIN = "local_fin"
    REMOTE_FIN = "remote_fin"
    LOCAL_RST = "local_rst"
    REMOTE_RST = "remote_rst"


_S = StreamState
_I = StreamInput
# The one table of legal transitions. Anything missing is illegal: a local one is a bug in
# the caller (LocalProtocolError), a remote one a protocol violation (MuxerError).
STREAM_TRANSITIONS: dict[tuple[StreamState, StreamInput], StreamState] = {
    (_S.OPEN, _I.LOCAL_FIN): _S.LOCAL_CLOSED,
    (_S.OPEN, _I.REMOTE_FIN): _S.REMOTE_CLOSED,
    (_S.OPEN, _I.LOCAL_RST): _S.RESET,
    (_S.OPEN, _I.REMOTE_RST): _S.RESET,
    (_S.LOCAL_CLOSED, _I.REMOTE_FIN): _S.CLOSED,
    (_S.LOCAL_CLOSED, _I.LOCAL_RST): _S.RESET,
    (_S.LOCAL_CLOSED, _I.REMOTE_RST): _S.RESET,
    (_S.REMOTE_CLOSED, _I.LOCAL_FIN): _S.CLOSED,
    (_S.REMOTE_CLOSED, _I.LOCAL_RST): _S.RESET,
    (_S.REMOTE_CLOSED, _I.REMOTE_RST): _S.RESET,
    # A reset after a clean close is harmless (the peer may not have seen our last FIN).
    (_S.CLOSED, _I.LOCAL_RST): _S.RESET,
    (_S.CLOSED, _I.REMOTE_RST): _S.RESET,
}
_CAN_SEND = (_S.OPEN, _S.REMOTE_CLOSED)  # tuples: identity checks, no enum hashing
_CAN_RECEIVE = (_S.OPEN, _S.LOCAL_CLOSED)


class _Stream:
    """Book-keeping for one live stream (internal)."""

    __slots__ = (
        "acked",
        "discard",
        "outbound",
        "recv_window",
        "send_window",
        "state",
        "stream_id",
        "unconsumed",
    )

    def __init__(self, stream_id: int, outbound: bool, recv_window: int) -> None:
        self.stream_id = stream_id
        self.outbound = outbound
        self.state = StreamState.OPEN
        # Invariants (checked by the property tests): all three are >= 0 and
        # recv_window + unconsumed (+ the undelivered rest of a Data frame in progress)
        # <= the configured window size.
        self.send_window = INITIAL_WINDOW  # bytes the peer lets us send
        self.recv_window = recv_window  # bytes the peer may still send us
        self.unconsumed = 0  # delivered to the app but not yet consumed
        self.acked = not outbound  # outbound streams wait for the peer's ACK
        self.discard = False  # the app stopped reading: consume on arrival


# Parser states.
_HDR = 0
_PAYLOAD = 1


class YamuxSession:
    """One side of a yamux session, without I/O.

    Feed received bytes to :meth:`receive_data` and act on the returned events; send
    whatever :meth:`data_to_send` returns. Local operations (open, send, consume, close,
    reset, ping, go away) only queue frames.

    Args:
        is_client: True on the dialer (odd stream ids), False on the listener (even).
        window_size: receive window per stream, 256 KiB to 16 MiB (default 256 KiB).
        max_streams: concurrent streams per direction; an inbound SYN beyond it is
            answered with RST, :meth:`open_stream` beyond it raises StreamLimitError.
        max_frame_payload: largest Data payload we put in one frame.
        max_queued_replies: frames we queue in answer to the peer (ping ACKs, SYN ACKs,
            RSTs of refused streams) that may wait for :meth:`data_to_send` at once. A
            peer that floods pings or SYNs while not reading our answers would otherwise
            grow the output queue without bound; beyond this the session fails.

    Raises:
        ValueError: a limit is out of range.
    """

    def __init__(
        self,
        is_client: bool,
        *,
        window_size: int = INITIAL_WINDOW,
        max_streams: int = 256,
        max_frame_payload: int = DEFAULT_MAX_FRAME_PAYLOAD,
        max_queued_replies: int = DEFAULT_MAX_QUEUED_REPLIES,
    ) -> None:
        if not INITIAL_WINDOW <= window_size <= MAX_WINDOW:
            raise ValueError(f"window_size must be in [{INITIAL_WINDOW}, {MAX_WINDOW}]")
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        if not 1 <= max_frame_payload <= _U32:
            raise ValueError("max_frame_payload must be in [1, 2**32 - 1]")
        if max_queued_replies < 1:
            raise ValueError("max_queued_replies must be >= 1")
        self.max_queued_replies = max_queued_replies
        self._queued_replies = 0
        self.is_client = is_client
        self.window_size = window_size
        self.max_streams = max_streams
        self.max_frame_payload = max_frame_payload
        self._streams: dict[int, _Stream] = {}
        self._n_outbound = 0
        self._n_inbound = 0
        self._next_id = 1 if is_client else 2
        self._remote_parity = 0 if is_client else 1
        self._out: list[bytes | memoryview] = []
        self._out_len = 0
        self._next_ping = 0
        self._local_go_away = False
        self._remote_go_away: int | None = None
        self._error: MuxerError | None = None
        # Parser state: header bytes collected so far, or the Data payload in progress.
        self._phase = _HDR
        self._hdr_buf = bytearray()
        self._payload_left = 0
        self._payload_stream: _Stream | None = None  # None: discard the payload
        self._payload_fin = False
        #: Inbound SYNs answered with RST (stream limit or after our GoAway).
        self.refused_streams = 0

    # -- introspection -----------------------------------------------------------------------

    @property
    def bytes_to_send(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return self._out_len

    @property
    def num_streams(self) -> int:
        """Streams in the table (open, half-closed, or closed with unread data)."""
        return len(self._streams)

    @property
    def local_go_away(self) -> bool:
        """Whether we sent GoAway."""
        return self._local_go_away

    @property
    def remote_go_away(self) -> int | None:
        """The peer's GoAway code, or None if it sent none."""
        return self._remote_go_away

    @property
    def error(self) -> MuxerError | None:
        """The protocol violation that killed the session, if any."""
        return self._error

    def stream_state(self, stream_id: int) -> StreamState | None:
        """The state of ``stream_id``, or None when it is not (or no longer) in the table."""
        st = self._streams.get(stream_id)
        return None if st is None else st.state

    def stream_ids(self) -> Iterator[int]:
        """Ids of the streams in the table."""
        return iter(list(self._streams))

    def send_window(self, stream_id: int) -> int:
        """Bytes we may send on ``stream_id`` now (0 when unknown or not writable)."""
        st = self._streams.get(stream_id)
        if st is None or st.state not in _CAN_SEND:
            return 0
        return st.send_window

    def receive_window(self, stream_id: int) -> int:
        """Credit the peer still has on ``stream_id`` (0 when unknown)."""
        st = self._streams.get(stream_id)
        return 0 if st is None else st.recv_window

    def unconsumed(self, stream_id: int) -> int:
        """Bytes delivered on ``stream_id`` that the app has not consumed yet."""
        st = self._streams.get(stream_id)
        return 0 if st is None else st.unconsumed

    # -- output ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Take every queued frame as one bytes object (b"" when nothing is queued)."""
        if not self._out:
            return b""
        out = self._out
        data = out[0] if len(out) == 1 and isinstance(out[0], bytes) else b"".join(out)
        self._out = []
        self._out_len = 0
        self._queued_replies = 0
        return data

    def _frame(self, ftype: int, flags: int, stream_id: int, length: int) -> None:
        self._out.append(_HEADER.pack(_VERSION, ftype, flags, stream_id, length))
        self._out_len += HEADER_SIZE

    def _reply(self, ftype: int, flags: int, stream_id: int, length: int) -> None:
        """Queue a frame the peer's input asked for, bounded by ``max_queued_replies``."""
        if self._queued_replies >= self.max_queued_replies:
            raise self._fail(
                "peer floods frames that need an answer while not reading the answers",
                limit=self.max_queued_replies,
            )
        self._queued_replies += 1
        self._frame(ftype, flags, stream_id, length)

    # -- local operations ----------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._error is not None:
            raise ConnectionClosedError("yamux session failed") from self._error

    def open_stream(self) -> int:
        """Open an outbound stream (queues a SYN window update).

        Returns:
            The new stream id.

        Raises:
            StreamLimitError: ``max_streams`` outbound streams are live or ids ran out.
            ConnectionClosedError: either side sent GoAway, or the session failed.
        """
        self._check_usable()
        if self._local_go_away or self._remote_go_away is not None:
            raise ConnectionClosedError("yamux session is going away")
        if self._n_outbound >= self.max_streams:
            raise StreamLimitError(
                "too many outbound yamux streams", details={"limit": self.max_streams}
            )
        stream_id = self._next_id
        if stream_id > _U32:
            raise StreamLimitError("yamux stream ids exhausted")
        self._next_id += 2
        self._streams[stream_id] = _Stream(stream_id, True, self.window_size)
        self._n_outbound += 1
        self._frame(_T_WINDOW_UPDATE, _SYN, stream_id, self.window_size - INITIAL_WINDOW)
        return stream_id

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the peer's window allows.

        Read-only input (``bytes`` or a read-only memoryview) is referenced until
        :meth:`data_to_send`; mutable buffers are copied.

        Args:
            stream_id: a stream we may write on.
            data: the bytes to send.

        Returns:
            How many bytes were taken (0 when the send window is exhausted).

        Raises:
            LocalProtocolError: unknown stream or we already closed its write side.
            ConnectionClosedError: the session failed.
        """
        self._check_usable()
        st = self._streams.get(stream_id)
        if st is None or st.state not in _CAN_SEND:
            raise LocalProtocolError(
                "stream is not writable",
                details={"stream_id": stream_id, "state": None if st is None else st.state.value},
            )
        n = min(len(data), st.send_window)
        if n <= 0:
            return 0
        view = memoryview(data)
        # Immutable input (bytes, or a read-only view of it) is referenced, not copied.
        copy = not (isinstance(data, bytes) or view.readonly)
        step = self.max_frame_payload
        out = self._out
        for start in range(0, n, step):
            end = min(start + step, n)
            out.append(_HEADER.pack(_VERSION, _T_DATA, 0, stream_id, end - start))
            chunk = view[start:end]
            out.append(bytes(chunk) if copy else chunk)
        st.send_window -= n
        self._out_len += n + HEADER_SIZE * ((n + step - 1) // step)
        return n

    def consume(self, stream_id: int, n: int) -> None:
        """Tell the session the application read ``n`` delivered bytes of ``stream_id``.

        Returns credit to the peer with a WindowUpdate once at least half a window can be
        returned. Unknown (already gone) streams are ignored.

        Raises:
            LocalProtocolError: ``n`` is negative or more than was delivered.
        """
        st = self._streams.get(stream_id)
        if st is None:
            return
        if n < 0 or n > st.unconsumed:
            raise LocalProtocolError(
                "consumed more than was delivered",
                details={"stream_id": stream_id, "n": n, "unconsumed": st.unconsumed},
            )
        st.unconsumed -= n
        self._after_consume(st)

    def _after_consume(self, st: _Stream) -> None:
        if st.state in _CAN_RECEIVE:
            # Credit already granted = what the peer may still send + what arrived and is
            # unread + the rest of a Data frame still arriving (already charged against
            # recv_window). Only the remainder of the window may be returned, or the peer
            # could have more than a window outstanding.
            in_flight = self._payload_left if self._payload_stream is st else 0
            delta = self.window_size - st.recv_window - st.unconsumed - in_flight
            if delta >= self.window_size // 2 and self._error is None:
                st.recv_window += delta
                self._frame(_T_WINDOW_UPDATE, 0, st.stream_id, delta)
        elif st.state is StreamState.CLOSED and st.unconsumed == 0:
            self._remove(st)

    def close_read(self, stream_id: int) -> None:
        """The application will read no more of ``stream_id``.

        Unread data is dropped; later data is discarded on arrival while its credit is
        still returned, so the peer can finish writing. Unknown streams are ignored.
        """
        st = self._streams.get(stream_id)
        if st is None:
            return
        st.discard = True
        st.unconsumed = 0
        self._after_consume(st)

    def close_stream(self, stream_id: int) -> None:
        """Half-close ``stream_id``: queue FIN; we send no more data, reading continues.

        Raises:
            LocalProtocolError: unknown stream or write side already closed.
        """
        st = self._streams.get(stream_id)
        if st is None:
            raise LocalProtocolError("unknown stream", details={"stream_id": stream_id})
        new = STREAM_TRANSITIONS.get((st.state, StreamInput.LOCAL_FIN))
        if new is None:
            raise LocalProtocolError(
                "cannot close the write side of this stream",
                details={"stream_id": stream_id, "state": st.state.value},
            )
        st.state = new
        if self._error is None:
            self._frame(_T_WINDOW_UPDATE, _FIN, stream_id, 0)
        if new is StreamState.CLOSED and (st.unconsumed == 0 or st.discard):
            self._remove(st)

    def reset_stream(self, stream_id: int) -> None:
        """Reset ``stream_id`` (queue RST); both directions end at once. Unknown: no-op."""
        st = self._streams.get(stream_id)
        if st is None or st.state is StreamState.RESET:
            return
        st.state = STREAM_TRANSITIONS[(st.state, StreamInput.LOCAL_RST)]
        if self._error is None:
            self._frame(_T_WINDOW_UPDATE, _RST, stream_id, 0)
        self._remove(st)

    def ping(self) -> int:
        """Queue a Ping; the matching :class:`PongReceived` carries the returned value.

        Raises:
            ConnectionClosedError: the session failed.
        """
        self._check_usable()
        opaque = self._next_ping
        self._next_ping = (opaque + 1) & _U32
        self._frame(_T_PING, _SYN, 0, opaque)
        return opaque

    def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Queue GoAway: we accept no new streams (they get RST); existing ones continue.

        Sent at most once; later calls are no-ops.
        """
        if self._local_go_away:
            return
        self._local_go_away = True
        self._frame(_T_GO_AWAY, 0, 0, code & _U32)

    def _remove(self, st: _Stream) -> None:
        if self._streams.pop(st.stream_id, None) is not None:
            if st.outbound:
                self._n_outbound -= 1
            else:
                self._n_inbound -= 1

    # -- input -----------------------------------------------------------------------------

    def _fail(self, message: str, **details: object) -> MuxerError:
        err = MuxerError(message, details=details)
        self._error = err
        self._out.clear()
        self._out_len = 0
        if not self._local_go_away:
            self._local_go_away = True
            self._frame(_T_GO_AWAY, 0, 0, GoAwayCode.PROTOCOL_ERROR)
        return err

    def receive_eof(self) -> None:
        """The channel ended. Raises MuxerError when it ended inside a frame."""
        if self._error is not None:
            raise self._error
        if self._hdr_buf or self._phase == _PAYLOAD:
            raise self._fail("channel ended inside a yamux frame")

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Parse received bytes.

        Args:
            data: the next bytes from the secure channel, any split.

        Returns:
            The events, in order.

        Raises:
            MuxerError: the peer violated the protocol; the session is dead and a
                GoAway(protocol error) is queued in :meth:`data_to_send`.
        """
        if self._error is not None:
            raise self._error
        events: list[Event] = []
        view = memoryview(data)
        pos = 0
        end = len(view)
        while pos < end:
            if self._phase == _PAYLOAD:
                take = min(self._payload_left, end - pos)
                st = self._payload_stream
                if st is not None and st.state is StreamState.RESET:
                    st = self._payload_stream = None  # we reset it mid-frame: discard
                # Count the bytes as arrived before any window arithmetic below.
                self._payload_left -= take
                if st is not None:
                    if st.discard:
                        self._after_consume(st)
                    else:
                        st.unconsumed += take
                        events.append(DataReceived(st.stream_id, bytes(view[pos : pos + take])))
                pos += take
                if self._payload_left == 0:
                    self._phase = _HDR
                    self._payload_stream = None
                    if st is not None and self._payload_fin:
                        self._remote_fin(st, events)
                continue
            hbuf = self._hdr_buf
            if hbuf or end - pos < HEADER_SIZE:
                need = HEADER_SIZE - len(hbuf)
                hbuf += view[pos : pos + need]
                pos += min(need, end - pos)
                if len(hbuf) < HEADER_SIZE:
                    break
                version, ftype, flags, stream_id, length = _HEADER.unpack(hbuf)
                hbuf.clear()
            else:
                version, ftype, flags, stream_id, length = _HEADER.unpack_from(view, pos)
                pos += HEADER_SIZE
            if version != _VERSION:
                raise self._fail("unsupported yamux version", version=version)
            if ftype <= _T_WINDOW_UPDATE:  # Data or WindowUpdate
                self._stream_frame(ftype, flags, stream_id, length, events)
            elif ftype == _T_PING:
                if flags & _SYN:
                    self._reply(_T_PING, _ACK, 0, length)
                    events.append(PingReceived(length))
                elif flags & _ACK:
                    events.append(PongReceived(length))
            elif ftype == _T_GO_AWAY:
                self._remote_go_away = length
                events.append(GoAwayReceived(length))
            else:
                raise self._fail("unknown yamux frame type", type=ftype)
        return events

    def _stream_frame(
        self, ftype: int, flags: int, stream_id: int, length: int, events: list[Event]
    ) -> None:
        is_data = ftype == _T_DATA
        if stream_id == 0:
            raise self._fail("stream frame on stream id 0", type=ftype)
        st = self._streams.get(stream_id)
        if flags & _SYN:
            if st is not None:
                raise self._fail("SYN for an existing stream", stream_id=stream_id)
            if stream_id & 1 != self._remote_parity:
                raise self._fail("SYN with a stream id of our parity", stream_id=stream_id)
            if self._local_go_away or self._n_inbound >= self.max_streams:
                self.refused_streams += 1
                self._reply(_T_WINDOW_UPDATE, _RST, stream_id, 0)
                if is_data:
                    self._start_discard(length)
                return
            st = _Stream(stream_id, False, self.window_size)
            self._streams[stream_id] = st
            self._n_inbound += 1
            self._reply(_T_WINDOW_UPDATE, _ACK, stream_id, self.window_size - INITIAL_WINDOW)
            events.append(StreamOpened(stream_id))
        elif st is None:
            # Unknown or already gone (reset, or closed and fully read): late frames are
            # expected after a reset; data is discarded without buffering.
            if is_data:
                self._start_discard(length)
            return
        if flags & _ACK and st.outbound:
            st.acked = True
        if flags & _RST:
            refused = st.outbound and not st.acked
            st.state = STREAM_TRANSITIONS[(st.state, StreamInput.REMOTE_RST)]
            self._remove(st)
            events.append(StreamReset(stream_id, refused))
            if is_data:
                self._start_discard(length)
            return
        fin = bool(flags & _FIN)
        if is_data:
            if length:
                if st.state not in _CAN_RECEIVE:
                    raise self._fail("data after FIN", stream_id=stream_id)
                if length > st.recv_window:
                    raise self._fail(
                        "peer exceeded the receive window",
                        stream_id=stream_id,
                        length=length,
                        window=st.recv_window,
                    )
                st.recv_window -= length
                self._phase = _PAYLOAD
                self._payload_left = length
                self._payload_stream = st
                self._payload_fin = fin
                return
        elif length:
            if st.send_window + length > _U32:
                raise self._fail("window update overflows the send window", stream_id=stream_id)
            st.send_window += length
            if st.state in _CAN_SEND:
                events.append(SendWindowAvailable(stream_id, st.send_window))
        if fin:
            self._remote_fin(st, events)

    def _start_discard(self, length: int) -> None:
        if length > self.window_size:
            raise self._fail("data frame larger than any window", length=length)
        if length:
            self._phase = _PAYLOAD
            self._payload_left = length
            self._payload_stream = None
            self._payload_fin = False

    def _remote_fin(self, st: _Stream, events: list[Event]) -> None:
        new = STREAM_TRANSITIONS.get((st.state, StreamInput.REMOTE_FIN))
        if new is None:
            raise self._fail("unexpected FIN", stream_id=st.stream_id, state=st.state.value)
        st.state = new
        if not st.discard:
            events.append(StreamEnded(st.stream_id))
        if new is StreamState.CLOSED and (st.unconsumed == 0 or st.discard):
            self._remove(st)
