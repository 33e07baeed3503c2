"""Wire protocol v1 framing (sans-IO): ``uvarint(len(M)) || M`` with ``M = uvarint(len(P)) || P``.

The Go library writes a length-prefixed byte string (``P``) inside a length-delimited
message (``M``), so every frame carries two lengths that must agree. This module turns
payloads into frames (:func:`encode_frame`, :func:`encode_frames`) and arbitrary byte
chunks back into payloads (:class:`FrameDecoder`). It does no I/O.

Decoding rules (see docs/security.md and DESIGN.md, "Wire protocol v1"):

- ``max_message_size`` bounds ``len(P)``; ``len(M)`` may exceed it only by the size of the
  inner varint that encodes the largest allowed ``len(P)``.
- Both varints must be minimal and at most 10 bytes (64 bits).
- ``M`` must be non-empty and ``uvarint(len(P)) || P`` must fill it exactly: bytes left
  over inside ``M`` (or ``P`` running past it) make the frame malformed.
- Every length is checked against the limit *before* the body is buffered, so an
  oversized announcement costs at most 20 header bytes and no allocation.
- After any error the decoder is failed for good: a byte stream cannot be
  resynchronised, and the caller must reset the stream.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.errors import FrameError, FrameTooLargeError, MalformedFrameError, MessageTooLargeError
from engine.varint import MAX_UVARINT_LEN, decode_uvarint, encode_uvarint, uvarint_size

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_HEADER_SIZE",
    "FrameDecoder",
    "encode_frame",
    "encode_frames",
    "frame_size",
]

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""Default bound on ``len(P)`` (1 MiB, the engine's default ``max_message_size``)."""

MAX_HEADER_SIZE = 2 * MAX_UVARINT_LEN
"""Upper bound on the bytes before a payload (two varints). The decoder never needs more
than this many bytes to accept or reject a frame's lengths."""


def _check_size(size: int, max_message_size: int | None) -> None:
    if max_message_size is not None and size > max_message_size:
        raise MessageTooLargeError(
            f"message of {size} bytes exceeds the maximum of {max_message_size}",
            details={"size": size, "limit": max_message_size},
        )


def encode_frame(
    payload: bytes | bytearray | memoryview, *, max_message_size: int | None = None
) -> bytes:
    """Frame one payload: ``uvarint(len(M)) || uvarint(len(P)) || P``.

    Args:
        payload: ``P`` (for an encrypted stream: ``nonce || ciphertext || tag``).
        max_message_size: when given, refuse payloads larger than this.

    Returns:
        The frame bytes.

    Raises:
        MessageTooLargeError: ``len(payload) > max_message_size``.
    """
    size = len(payload)
    _check_size(size, max_message_size)
    inner = encode_uvarint(size)
    return b"".join((encode_uvarint(len(inner) + size), inner, payload))


def encode_frames(
    payloads: Iterable[bytes | bytearray | memoryview], *, max_message_size: int | None = None
) -> bytes:
    """Frame several payloads into one byte string (for coalesced writes).

    Args:
        payloads: the payloads, in order.
        max_message_size: when given, refuse any payload larger than this.

    Returns:
        The concatenated frames (identical to joining :func:`encode_frame` results).

    Raises:
        MessageTooLargeError: a payload exceeds ``max_message_size`` (nothing is returned).
    """
    parts: list[bytes | bytearray | memoryview] = []
    append = parts.append
    for payload in payloads:
        size = len(payload)
        _check_size(size, max_message_size)
        inner = encode_uvarint(size)
        append(encode_uvarint(len(inner) + size))
        append(inner)
        append(payload)
    return b"".join(parts)


def frame_size(payload_size: int) -> int:
    """Total encoded size of a frame whose payload is ``payload_size`` bytes."""
    inner = uvarint_size(payload_size) + payload_size
    return uvarint_size(inner) + inner


class FrameDecoder:
    """Incremental decoder of v1 frames: feed byte chunks, get complete payloads.

    Args:
        max_message_size: largest accepted payload ``len(P)`` in bytes (>= 0).

    Memory: the decoder keeps at most one incomplete frame (so at most
    ``frame_size(max_message_size)`` bytes); complete frames are sliced straight out of
    the chunk being fed, never copied into an intermediate buffer.
    """

    __slots__ = ("_error", "_frame_end", "_header_end", "_max_m", "_max_p", "_pending")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 0:
            raise ValueError("max_message_size must be >= 0")
        self._max_p = max_message_size
        # M = uvarint(len(P)) || P, so the largest valid M carries the largest inner varint.
        self._max_m = max_message_size + uvarint_size(max_message_size)
        # Bytes of an incomplete frame (header included) carried over between feeds.
        self._pending = bytearray()
        # Once the pending frame's header is parsed: where its payload starts and ends
        # (offsets into _pending). None while the header itself is incomplete.
        self._header_end = 0
        self._frame_end: int | None = None
        self._error: FrameError | None = None

    @property
    def max_message_size(self) -> int:
        """The bound on ``len(P)`` this decoder enforces."""
        return self._max_p

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame currently held."""
        return len(self._pending)

    @property
    def failed(self) -> bool:
        """Whether the decoder hit an error (and refuses all further input)."""
        return self._error is not None

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume a chunk of the byte stream.

        Args:
            data: the next bytes, of any length (an empty chunk is a no-op).

        Returns:
            The payloads ``P`` of every frame completed by this chunk, in order.

        Raises:
            FrameTooLargeError: a frame announces more than the limit (``announced`` and
                ``limit`` are set; for the outer length the limit is the largest valid
                ``len(M)``).
            MalformedFrameError: bad varint, empty ``M``, or lengths that disagree.
            Either error is raised again by every later call: the decoder is failed, and
            payloads completed earlier in the same chunk are discarded with it (the
            stream must be reset anyway).
        """
        if self._error is not None:
            raise _again(self._error)
        if not isinstance(data, bytes):
            data = bytes(data)
        try:
            return self._feed(data)
        except FrameError as exc:
            self._error = exc
            self._pending = bytearray()
            self._frame_end = None
            raise

    def feed_eof(self) -> None:
        """Signal the end of the byte stream.

        Raises:
            MalformedFrameError: the stream ended inside a frame (truncated frame).
            FrameError: the decoder had already failed (the same kind again).
        """
        if self._error is not None:
            raise _again(self._error)
        if self._pending:
            self._error = MalformedFrameError(
                "stream ended inside a frame", details={"buffered": len(self._pending)}
            )
            self._pending = bytearray()
            self._frame_end = None
            raise _again(self._error)

    # -- internals ---------------------------------------------------------------------

    def _parse_header(self, buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
        """Parse the two varints of the frame at ``buf[pos:end]``.

        Returns ``(payload_start, payload_end)`` (absolute offsets into ``buf``) or
        ``None`` when more bytes are needed to know. Raises on any invalid length, looking
        at no more than MAX_HEADER_SIZE bytes.
        """
        outer = decode_uvarint(buf, pos, end)
        if outer is None:
            return None
        m_len, m_start = outer
        if m_len > self._max_m:
            raise FrameTooLargeError(
                m_len,
                self._max_m,
                f"frame announces a {m_len}-byte message, limit is {self._max_m}",
            )
        if m_len == 0:
            raise MalformedFrameError("empty frame (no inner length)")
        m_end = m_start + m_len
        # The inner varint must lie inside M: bytes past m_end belong to the next frame.
        inner = decode_uvarint(buf, m_start, min(end, m_end))
        if inner is None:
            if end >= m_end:
                raise MalformedFrameError("inner length runs past the end of the frame")
            return None
        p_len, p_start = inner
        if p_len > self._max_p:
            raise FrameTooLargeError(p_len, self._max_p)
        if p_start + p_len != m_end:
            raise MalformedFrameError(
                "inner length does not match the frame length",
                details={"frame_length": m_len, "payload_length": p_len},
            )
        return p_start, m_end

    def _feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        n = len(data)
        pos = 0
        pending = self._pending
        if pending:
            pos = self._complete_pending(data, out)
            if self._pending:  # still incomplete: everything was consumed
                return out
        # Fast path: frames are parsed and sliced directly from ``data``.
        parse = self._parse_header
        max_p = self._max_p
        while pos < n:
            first = data[pos]
            second = data[pos + 1] if first < 0x80 and pos + 1 < n else 0x80
            if second < 0x80 and first == second + 1 and second <= max_p:
                # Fast path: both lengths are valid one-byte varints (payload < 127 bytes).
                p_start = pos + 2
                p_end = p_start + second
            else:
                header = parse(data, pos, n)
                if header is None:
                    break
                p_start, p_end = header
            if p_end > n:
                break
            out.append(data[p_start:p_end])
            pos = p_end
        if pos < n:
            # An incomplete frame: its header is either incomplete (< MAX_HEADER_SIZE bytes)
            # or already validated, so the bytes kept are bounded by one frame.
            self._pending = bytearray(memoryview(data)[pos:])
            header = parse(self._pending, 0, len(self._pending))
            if header is None:
                self._frame_end = None
            else:
                self._header_end, self._frame_end = header
        return out

    def _complete_pending(self, data: bytes, out: list[bytes]) -> int:
        """Add bytes of ``data`` to the pending frame; return how many were consumed."""
        pending = self._pending
        n = len(data)
        pos = 0
        if self._frame_end is None:
            # Header still incomplete: take just enough bytes to decide (<= 20 in total).
            take = min(n, MAX_HEADER_SIZE - len(pending))
            pending += memoryview(data)[:take]
            header = self._parse_header(pending, 0, len(pending))
            if header is None:
                if take < n:  # pragma: no cover - two varints never exceed 20 bytes
                    raise MalformedFrameError("frame header longer than 20 bytes")
                return n
            self._header_end, self._frame_end = header
            if len(pending) >= self._frame_end:
                # The frame was tiny: return the bytes we over-took to the caller.
                extra = len(pending) - self._frame_end
                out.append(bytes(memoryview(pending)[self._header_end : self._frame_end]))
                self._pending = bytearray()
                self._frame_end = None
                return take - extra
            pos = take
        need = self._frame_end - len(pending)
        take = min(need, n - pos)
        pending += memoryview(data)[pos : pos + take]
        pos += take
        if take == need:
            out.append(bytes(memoryview(pending)[self._header_end :]))
            self._pending = bytearray()
            self._frame_end = None
        return pos


def _again(error: FrameError) -> FrameError:
    """A fresh exception of the same kind as ``error`` (a failed decoder stays failed)."""
    if isinstance(error, FrameTooLargeError):
        return FrameTooLargeError(error.announced, error.limit, error.message)
    fresh = type(error)(error.message, details=error.details)
    return fresh
