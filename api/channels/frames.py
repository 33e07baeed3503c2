"""The JSON control frames of the realtime channels: building and parsing (no I/O).

Every JSON frame is an object with a ``type``. The server's frames are built by the
functions below (plain dicts, serialised by :func:`encode`); the client's frames are
parsed by :func:`parse_stream_frame` and :func:`parse_handshake_command`, which never let
an unexpected exception escape: bad input becomes a :class:`FrameError` with a stable code
(``bad_frame``) and a message that quotes nothing but field names.

The schemas are documented in ``openapi/asyncapi.yaml``; a test validates every frame the
server sends against it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "MAX_CONTROL_FRAME",
    "FinalizeCommand",
    "FrameError",
    "HandshakeCommand",
    "PrepareCommand",
    "SendCommand",
    "StreamSend",
    "ack",
    "ack_text",
    "command_ack",
    "command_nack",
    "command_ref",
    "dropped",
    "encode",
    "error",
    "event_frame",
    "handshake_message",
    "heartbeat",
    "lag",
    "message_frame",
    "nack",
    "parse_handshake_command",
    "parse_stream_frame",
    "ready",
    "reset",
    "snapshot",
]

#: Largest client text frame parsed as JSON (a keyed send of a 1 MiB message in base64
#: is about 1.4 MiB; anything larger is refused before parsing).
MAX_CONTROL_FRAME = 2 * 1024 * 1024


class FrameError(Exception):
    """A client frame the server cannot accept.

    Args:
        message: safe to send back (no input echoed).
        code: stable code (``bad_frame``).
    """

    def __init__(self, message: str, code: str = "bad_frame") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode(frame: dict[str, Any]) -> str:
    """The compact JSON text of a server frame."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def _peer_text(peer: Any) -> str:
    # A peer id's text form is a base58 encoding (~15 us); frames repeat a few peers.
    return str(peer)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- server frames: every channel ------------------------------------------------------


def ready(channel: str, **facts: Any) -> dict[str, Any]:
    """First frame of every channel: the subscription is live, ``facts`` describe it."""
    return {"type": "ready", "channel": channel, **facts}


def error(
    code: str,
    message: str,
    status: int,
    *,
    retry_after: float | None = None,
    ref: str | int | None = None,
) -> dict[str, Any]:
    """A refused client frame (``rate_limited`` is the 429 equivalent)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "status": status, "message": message}
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 3)
    if ref is not None:
        frame["ref"] = ref
    return frame


def lag(queued: int, capacity: int) -> dict[str, Any]:
    """The client reads slower than messages arrive: ``queued`` of ``capacity`` wait."""
    return {"type": "lag", "queued": queued, "capacity": capacity}


def dropped(
    count: int, total: int, delivered: int, after_seq: int, before_seq: int | None, limit: int
) -> dict[str, Any]:
    """``count`` messages were dropped for this client (``total`` so far on the channel).

    ``delivered`` messages had been delivered on this connection before the gap; the
    dropped ones have engine receive sequence numbers between ``after_seq`` and
    ``before_seq`` (exclusive). Past ``limit`` dropped messages the server closes with 4008.
    """
    return {
        "type": "dropped",
        "count": count,
        "total": total,
        "delivered": delivered,
        "after_seq": after_seq,
        "before_seq": before_seq,
        "limit": limit,
    }


# -- server frames: stream channel ---------------------------------------------------------


def ack(seq: int, key: str | None = None, *, duplicate: bool = False) -> dict[str, Any]:
    """Send number ``seq`` of this connection was accepted by the engine."""
    frame: dict[str, Any] = {"type": "ack", "seq": seq}
    if key is not None:
        frame["key"] = key
    if duplicate:
        frame["duplicate"] = True
    return frame


def ack_text(seq: int) -> str:
    """:func:`encode` of ``ack(seq)``, preformatted (the per-message hot path)."""
    return f'{{"type":"ack","seq":{seq}}}'


def nack(
    seq: int,
    code: str,
    message: str,
    status: int,
    key: str | None = None,
    *,
    retry_after: float | None = None,
) -> dict[str, Any]:
    """Send number ``seq`` was refused; nothing was sent to the peer."""
    frame: dict[str, Any] = {
        "type": "nack",
        "seq": seq,
        "code": code,
        "status": status,
        "message": message,
    }
    if key is not None:
        frame["key"] = key
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 3)
    return frame


# -- server frames: events channel ---------------------------------------------------------


def event_frame(event: Any) -> dict[str, Any]:
    """A connection event (engine :class:`~engine.events.ConnectionEvent`)."""
    previous = getattr(event, "previous_state", None)
    return {
        "type": "event",
        "id": int(event.id),
        "peer_id": _peer_text(event.peer_id),
        "state": _state(event.state),
        "previous_state": None if previous is None else _state(previous),
        "timestamp": float(event.timestamp),
        "error_code": getattr(event, "error_code", None),
        "error_message": getattr(event, "error_message", None),
    }


def snapshot(last_event_id: int, peers: list[tuple[str, str]]) -> dict[str, Any]:
    """Current peer states, exactly as of event ``last_event_id`` (changes follow)."""
    return {
        "type": "snapshot",
        "last_event_id": last_event_id,
        "peers": [{"peer_id": peer, "state": state} for peer, state in peers],
    }


def reset(reason: str, since: int, oldest_id: int | None, last_event_id: int) -> dict[str, Any]:
    """The cursor ``since`` cannot be resumed (``cursor_expired`` / ``cursor_ahead``)."""
    return {
        "type": "reset",
        "reason": reason,
        "since": since,
        "oldest_id": oldest_id,
        "last_event_id": last_event_id,
    }


def heartbeat(last_event_id: int) -> dict[str, Any]:
    """Idle keep-alive; resuming from ``last_event_id`` misses no matching event."""
    return {"type": "heartbeat", "last_event_id": last_event_id}


def _state(value: Any) -> str:
    return str(getattr(value, "value", value))


# -- server frames: messages and handshake channels -----------------------------------------


def message_frame(message: Any) -> dict[str, Any]:
    """A received message (engine ``IncomingMessage``), payload in base64."""
    return {
        "type": "message",
        "seq": int(message.seq),
        "peer_id": _peer_text(message.peer_id),
        "stream": str(message.stream),
        "data": _b64(bytes(message.data)),
        "received_at": float(message.received_at),
    }


def handshake_message(message: Any) -> dict[str, Any]:
    """A handshake message from a peer (app mode), payload in base64."""
    return {
        "type": "handshake_message",
        "peer_id": _peer_text(message.peer_id),
        "data": _b64(bytes(message.data)),
        "received_at": float(message.received_at),
    }


def command_ack(op: str, ref: str | int | None) -> dict[str, Any]:
    """A handshake command succeeded."""
    return {"type": "ack", "op": op, "id": ref}


def command_nack(
    op: str | None, ref: str | int | None, code: str, message: str, status: int
) -> dict[str, Any]:
    """A handshake command failed (or could not be parsed: ``op`` is then ``None``)."""
    return {
        "type": "nack",
        "op": op,
        "id": ref,
        "code": code,
        "status": status,
        "message": message,
    }


# -- client frames --------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", frozen=True)
Ref = Annotated[str, Field(max_length=128)] | int | None
PeerText = Annotated[str, Field(min_length=1, max_length=128)]


class StreamSend(BaseModel):
    """Stream channel text frame: send ``data`` (base64), optionally idempotent by ``key``."""

    model_config = _STRICT
    type: Literal["send"]
    data: Annotated[str, Field(max_length=MAX_CONTROL_FRAME)]
    key: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    def payload(self) -> bytes:
        """The decoded message.

        Raises:
            FrameError: ``data`` is not valid base64.
        """
        return _decode_b64(self.data, "data")


class SendCommand(BaseModel):
    """Handshake channel: send a handshake message to ``peer_id``."""

    model_config = _STRICT
    type: Literal["send"]
    id: Ref = None
    peer_id: PeerText
    data: Annotated[str, Field(max_length=MAX_CONTROL_FRAME)]

    def payload(self) -> bytes:
        """The decoded handshake message.

        Raises:
            FrameError: ``data`` is not valid base64.
        """
        return _decode_b64(self.data, "data")


class PrepareCommand(BaseModel):
    """Handshake channel: derive the stream key for ``peer_id`` and accept ``streams``."""

    model_config = _STRICT
    type: Literal["prepare"]
    id: Ref = None
    peer_id: PeerText
    streams: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=4096)
    ]
    public_key: Annotated[str, Field(max_length=64)] | None = None

    def key_bytes(self) -> bytes | None:
        """The peer's raw public key, or ``None`` to take it from the peer id.

        Raises:
            FrameError: ``public_key`` is not valid base64.
        """
        return None if self.public_key is None else _decode_b64(self.public_key, "public_key")


class FinalizeCommand(BaseModel):
    """Handshake channel: activate sending; the peer becomes ``established``."""

    model_config = _STRICT
    type: Literal["finalize"]
    id: Ref = None
    peer_id: PeerText


HandshakeCommand = SendCommand | PrepareCommand | FinalizeCommand

_HANDSHAKE_ADAPTER: TypeAdapter[HandshakeCommand] = TypeAdapter(
    Annotated[HandshakeCommand, Field(discriminator="type")]
)


def _decode_b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError(f"{field} is not valid base64") from None


def _load(text: str) -> dict[str, Any]:
    if len(text) > MAX_CONTROL_FRAME:
        raise FrameError(f"text frame larger than {MAX_CONTROL_FRAME} characters")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("text frame is not valid JSON") from None
    if not isinstance(value, dict):
        raise FrameError("text frame must be a JSON object")
    return value


def _describe(exc: ValidationError) -> str:
    fields = sorted({".".join(str(p) for p in e.get("loc", ())) or "frame" for e in exc.errors()})
    return "invalid field(s): " + ", ".join(fields[:8])


def parse_stream_frame(text: str) -> StreamSend:
    """Parse a stream-channel text frame.

    Raises:
        FrameError: not JSON, not an object, or not a valid ``send`` frame.
    """
    value = _load(text)
    try:
        return StreamSend.model_validate(value)
    except ValidationError as exc:
        raise FrameError(_describe(exc)) from None


def parse_handshake_command(text: str) -> HandshakeCommand:
    """Parse a handshake-channel command.

    Raises:
        FrameError: not JSON, not an object, unknown ``type`` or invalid fields.
    """
    value = _load(text)
    try:
        return _HANDSHAKE_ADAPTER.validate_python(value)
    except ValidationError as exc:
        raise FrameError(_describe(exc)) from None


def command_ref(text: str) -> str | int | None:
    """The ``id`` of a command that failed to parse, when one can be read (for the nack)."""
    try:
        value = json.loads(text) if len(text) <= MAX_CONTROL_FRAME else None
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        ref = value.get("id")
        if isinstance(ref, int) and not isinstance(ref, bool):
            return ref
        if isinstance(ref, str) and len(ref) <= 128:
            return ref
    return None
