"""multistream-select 1.0 (``/multistream/1.0.0``), sans-IO, plus a thin async driver.

Wire format: every message is ``uvarint(len(line) + 1) || line || "\\n"``. Both sides
first send the header ``/multistream/1.0.0``; the dialer then proposes protocols one at a
time and the listener answers with the same line (accepted) or ``na`` (refused). ``ls``
asks the listener for its protocols (answered with one message holding the
length-prefixed protocol lines, as go-multistream does).

The dialer pipelines ``header + first proposal`` in a single write, so the listener
answers ``header + echo`` and negotiation costs one round trip. A peer may also pipeline
application data right behind its last negotiation line: whatever bytes were received
past the final line are returned as ``leftover`` and must be handed to the next layer.

Limits: a line longer than ``max_line_length`` (default 1024) or more than
``max_proposals`` refused proposals (listener side) raise
:class:`~engine.errors.NegotiationError`. Malformed input never raises anything else.

::

    dialer = MultistreamDialer(["/noise"])
    send(dialer.data_to_send())
    while not dialer.done:
        dialer.receive_data(await recv())
        send(dialer.data_to_send())
    protocol, leftover = dialer.protocol, dialer.leftover
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection, Sequence

from engine.errors import MalformedFrameError, NegotiationError
from engine.varint import decode_uvarint, encode_uvarint

__all__ = [
    "DEFAULT_MAX_LINE_LENGTH",
    "MULTISTREAM_PROTOCOL_ID",
    "NA",
    "MultistreamDialer",
    "MultistreamListener",
    "dial_select",
    "encode_line",
    "listen_select",
]

MULTISTREAM_PROTOCOL_ID = "/multistream/1.0.0"
NA = "na"
LS = "ls"
DEFAULT_MAX_LINE_LENGTH = 1024
DEFAULT_MAX_PROPOSALS = 32

ReadFn = Callable[[], Awaitable[bytes]]
WriteFn = Callable[[bytes], Awaitable[None]]


def encode_line(text: str) -> bytes:
    """Encode one multistream message: ``uvarint(len + 1) || text || "\\n"``.

    Args:
        text: the line without its newline (a protocol id, ``na``, the header ...).

    Returns:
        The bytes to send.
    """
    body = text.encode("utf-8") + b"\n"
    return encode_uvarint(len(body)) + body


class _LineBuffer:
    """Splits received bytes into multistream lines; bounded."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_line_length: int) -> None:
        self._buf = bytearray()
        self._max = max_line_length

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_raw(self) -> bytes | None:
        """Return the next message body (with its ``\\n``), or None if incomplete."""
        try:
            header = decode_uvarint(self._buf)
        except MalformedFrameError as exc:
            raise NegotiationError("malformed multistream length prefix") from exc
        if header is None:
            if len(self._buf) >= 10:  # pragma: no cover - decode_uvarint raises first
                raise NegotiationError("malformed multistream length prefix")
            return None
        length, start = header
        if length > self._max + 1:
            raise NegotiationError(
                f"multistream line of {length} bytes exceeds the limit of {self._max}",
                details={"length": length, "limit": self._max},
            )
        if len(self._buf) - start < length:
            return None
        body = bytes(self._buf[start : start + length])
        del self._buf[: start + length]
        return body

    def next_line(self) -> str | None:
        body = self.next_raw()
        if body is None:
            return None
        if not body.endswith(b"\n"):
            raise NegotiationError("multistream line does not end with a newline")
        try:
            return body[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NegotiationError("multistream line is not UTF-8") from exc

    def take_rest(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


class _Phase(enum.Enum):
    HEADER = "header"  # waiting for the peer's /multistream/1.0.0
    PROTOCOL = "protocol"  # waiting for a proposal (listener) or its answer (dialer)
    DONE = "done"
    FAILED = "failed"


class _Negotiation:
    """What both sides share: the line buffer, the header, the outcome and leftover.

    A side sends what it queued in ``_out``, checks the peer's header, then hands every
    further line to :meth:`_protocol_line` until it calls :meth:`_agree`.
    """

    def __init__(self, max_line_length: int) -> None:
        self._lines = _LineBuffer(max_line_length)
        self._phase = _Phase.HEADER
        self._out = bytearray()
        self.protocol: str | None = None
        self.leftover = b""

    @property
    def done(self) -> bool:
        """Whether a protocol was agreed on (``protocol`` and ``leftover`` are set)."""
        return self._phase is _Phase.DONE

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (possibly empty)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the peer.

        Raises:
            NegotiationError: see the class docstring. The negotiation is then failed.
        """
        if self._phase is _Phase.FAILED:
            raise NegotiationError("multistream negotiation already failed")
        if self._phase is _Phase.DONE:
            self.leftover += data
            return
        self._lines.feed(data)
        try:
            self._process()
        except NegotiationError:
            self._phase = _Phase.FAILED
            raise

    def _process(self) -> None:
        while self._phase is not _Phase.DONE:
            line = self._lines.next_line()
            if line is None:
                return
            if self._phase is _Phase.HEADER:
                if line != MULTISTREAM_PROTOCOL_ID:
                    raise NegotiationError(f"unexpected multistream header {line[:64]!r}")
                self._header_received()
                self._phase = _Phase.PROTOCOL
                continue
            self._protocol_line(line)

    def _agree(self, protocol: str) -> None:
        self.protocol = protocol
        self._phase = _Phase.DONE
        self.leftover = self._lines.take_rest()

    def _header_received(self) -> None:
        """The peer's header arrived (before the first protocol line)."""

    def _protocol_line(self, line: str) -> None:
        raise NotImplementedError


class MultistreamDialer(_Negotiation):
    """The dialer (initiator) side of multistream-select; no I/O.

    Args:
        protocols: protocol ids to propose, in order of preference (at least one).
        max_line_length: longest line accepted from the listener.

    Raises:
        NegotiationError: (from :meth:`receive_data`) the listener refused every
            protocol, sent a bad header, an unexpected answer or a malformed line.
    """

    def __init__(
        self, protocols: Sequence[str], *, max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    ) -> None:
        if not protocols:
            raise ValueError("at least one protocol must be proposed")
        for proto in protocols:
            if not proto or "\n" in proto or len(proto.encode()) > max_line_length:
                raise ValueError(f"invalid protocol id {proto[:64]!r}")
        super().__init__(max_line_length)
        self._protocols = list(protocols)
        self._index = 0
        self._out += encode_line(MULTISTREAM_PROTOCOL_ID)
        self._out += encode_line(self._protocols[0])

    def _protocol_line(self, line: str) -> None:
        proposed = self._protocols[self._index]
        if line == proposed:
            self._agree(proposed)
            return
        if line != NA:
            raise NegotiationError(f"unexpected multistream answer {line[:64]!r}")
        self._index += 1
        if self._index >= len(self._protocols):
            raise NegotiationError(
                "peer supports none of the proposed protocols",
                details={"proposed": list(self._protocols[:16])},
            )
        self._out += encode_line(self._protocols[self._index])


class MultistreamListener(_Negotiation):
    """The listener (responder) side of multistream-select; no I/O.

    Args:
        supported: protocol ids we accept (a set, or any collection / view supporting
            ``in``); looked up on every proposal, so a live dict view works.
        max_line_length: longest line accepted from the dialer.
        max_proposals: refused proposals (and ``ls`` requests) tolerated before failing.

    Raises:
        NegotiationError: (from :meth:`receive_data`) bad header, malformed or too long
            line, too many refused proposals.
    """

    def __init__(
        self,
        supported: Collection[str],
        *,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_proposals: int = DEFAULT_MAX_PROPOSALS,
    ) -> None:
        super().__init__(max_line_length)
        self._supported = supported
        self._refused = 0
        self._max_proposals = max_proposals

    def _header_received(self) -> None:
        self._out += encode_line(MULTISTREAM_PROTOCOL_ID)

    def _protocol_line(self, line: str) -> None:
        if line != NA and line != LS and line in self._supported:
            self._out += encode_line(line)
            self._agree(line)
            return
        self._refused += 1
        if self._refused > self._max_proposals:
            raise NegotiationError(
                "too many refused multistream proposals",
                details={"limit": self._max_proposals},
            )
        if line == LS:
            self._out += self._ls_answer()
        else:
            self._out += encode_line(NA)

    def _ls_answer(self) -> bytes:
        # As go-multistream: one message whose body is the concatenation of the protocol
        # lines (each length-prefixed, with its newline), itself ending in a newline.
        body = b"".join(encode_line(p) for p in sorted(self._supported)[:256]) + b"\n"
        return encode_uvarint(len(body)) + body


async def dial_select(
    read: ReadFn,
    write: WriteFn,
    protocols: Sequence[str],
    *,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
) -> tuple[str, bytes]:
    """Negotiate as the dialer over an async byte stream.

    Args:
        read: returns the next received chunk, ``b""`` at end of stream.
        write: sends bytes.
        protocols: ids to propose, in order of preference.
        max_line_length: longest accepted line.

    Returns:
        ``(protocol, leftover)``: the agreed protocol and bytes received past its line.

    Raises:
        NegotiationError: refused, malformed, or the stream ended during negotiation.
    """
    dialer = MultistreamDialer(protocols, max_line_length=max_line_length)
    return await _drive(dialer, read, write, b"")


async def listen_select(
    read: ReadFn,
    write: WriteFn,
    supported: Collection[str],
    *,
    initial: bytes = b"",
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
) -> tuple[str, bytes]:
    """Negotiate as the listener over an async byte stream.

    Args:
        read: returns the next received chunk, ``b""`` at end of stream.
        write: sends bytes.
        supported: protocol ids we accept.
        initial: bytes already received before negotiation started.
        max_line_length: longest accepted line.

    Returns:
        ``(protocol, leftover)``: the agreed protocol and bytes received past its line.

    Raises:
        NegotiationError: malformed input, too many refusals, or the stream ended.
    """
    listener = MultistreamListener(supported, max_line_length=max_line_length)
    return await _drive(listener, read, write, initial)


async def _drive(
    negotiation: _Negotiation, read: ReadFn, write: WriteFn, data: bytes
) -> tuple[str, bytes]:
    """Run one side over an async byte stream, starting with ``data`` already received."""
    out = negotiation.data_to_send()
    if out:
        await write(out)
    while True:
        if data:
            negotiation.receive_data(data)
            out = negotiation.data_to_send()
            if out:
                await write(out)
        if negotiation.done:
            assert negotiation.protocol is not None
            return negotiation.protocol, negotiation.leftover
        data = await read()
        if not data:
            raise NegotiationError("stream ended during multistream negotiation")
