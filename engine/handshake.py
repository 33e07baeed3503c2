"""The built-in Glueberry handshake (mode ``auto``), sans-IO.

Messages travel as v1 frames on the unencrypted ``/glueberry/handshake/1.0.0`` stream;
each frame's payload is one UTF-8 JSON object (see docs/protocol.md)::

    {"type": "hello", "version": 1, "public_key": "<base64 Ed25519 key>",
     "capabilities": ["wire-v1", ...], "streams": ["messages", ...]}
    {"type": "complete"}
    {"type": "abort", "reason": "<short text>"}

Sequence, identical on both sides (no initiator/responder asymmetry, so a simultaneous
open needs no tie-break)::

    send hello
    receive hello  -> check version and that the key is the connection's peer id
                   -> Prepare(key, streams): the I/O layer derives the stream key and
                      becomes ready to receive, then calls prepared() and sends the
                      "complete" it returns
    receive complete (only valid after our own prepare) -> Finalize: sending enabled

A peer sends "complete" only once it can receive, so after Finalize our first encrypted
message always finds it ready. The core never raises on bad input: it returns
:class:`Failed` with a typed error and refuses everything afterwards.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.crypto.identity import PeerId
from engine.errors import (
    GlueberryError,
    HandshakeError,
    InvalidPublicKeyError,
    LocalProtocolError,
    PeerIdMismatchError,
    RemoteProtocolError,
)
from engine.stream_name import check_stream_name_text

__all__ = [
    "HANDSHAKE_PROTOCOL",
    "MAX_HANDSHAKE_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "WIRE_V1_CAPABILITY",
    "Abort",
    "AutoHandshake",
    "Complete",
    "Failed",
    "Finalize",
    "HandshakePhase",
    "Hello",
    "Prepare",
    "parse_message",
    "stream_protocol",
]

HANDSHAKE_PROTOCOL = "/glueberry/handshake/1.0.0"
"""The handshake stream's libp2p protocol id."""

PROTOCOL_VERSION = 1
"""Version of the built-in handshake carried in ``hello``."""

WIRE_V1_CAPABILITY = "wire-v1"
"""Capability announcing wire protocol v1 (static X25519 key, random nonces)."""

MAX_HANDSHAKE_MESSAGE_SIZE = 64 * 1024
"""Largest handshake frame payload accepted (bytes)."""

_MAX_CAPABILITIES = 64
_MAX_CAPABILITY_LENGTH = 64


def stream_protocol(name: str) -> str:
    """The libp2p protocol id of the named stream ``name``."""
    return f"/glueberry/stream/{name}/1.0.0"


# -- messages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First message of each side: who we are and what we speak."""

    version: int
    public_key: bytes
    capabilities: tuple[str, ...]
    streams: tuple[str, ...]

    def serialize(self) -> bytes:
        """The JSON payload."""
        return json.dumps(
            {
                "type": "hello",
                "version": self.version,
                "public_key": base64.b64encode(self.public_key).decode("ascii"),
                "capabilities": list(self.capabilities),
                "streams": list(self.streams),
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class Complete:
    """Sent once the sender has prepared its streams and can receive."""

    def serialize(self) -> bytes:
        """The JSON payload."""
        return b'{"type":"complete"}'


@dataclass(frozen=True, slots=True)
class Abort:
    """Sent before closing the stream when a side gives up."""

    reason: str

    def serialize(self) -> bytes:
        """The JSON payload."""
        return json.dumps({"type": "abort", "reason": self.reason[:200]}).encode()


Message = Hello | Complete | Abort


def _str_list(obj: dict[str, Any], key: str, limit: int, max_len: int) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or len(value) > limit:
        raise RemoteProtocolError(f"hello.{key} must be a list of at most {limit} strings")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not 0 < len(item) <= max_len:
            raise RemoteProtocolError(f"hello.{key} holds an invalid entry")
        out.append(item)
    return tuple(out)


def parse_message(
    payload: bytes, *, max_streams: int = 64, max_stream_name_length: int = 64
) -> Message:
    """Parse one handshake payload.

    Args:
        payload: the frame payload.
        max_streams: most stream names a hello may list.
        max_stream_name_length: longest stream name accepted.

    Returns:
        The message.

    Raises:
        RemoteProtocolError: not JSON, unknown type, or invalid fields.
    """
    if len(payload) > MAX_HANDSHAKE_MESSAGE_SIZE:
        raise RemoteProtocolError(
            "handshake message too large", details={"limit": MAX_HANDSHAKE_MESSAGE_SIZE}
        )
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: a peer can nest arrays deeper than the parser's recursion limit.
        raise RemoteProtocolError("handshake message is not JSON") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError("handshake message is not a JSON object")
    kind = obj.get("type")
    if kind == "complete":
        return Complete()
    if kind == "abort":
        reason = obj.get("reason", "")
        # The reason ends up in error messages and logs: printable characters only, so a
        # peer cannot forge log lines (newlines) or terminal escapes.
        text = reason[:200] if isinstance(reason, str) else ""
        return Abort("".join(c if c.isprintable() else "?" for c in text))
    if kind != "hello":
        raise RemoteProtocolError("unknown handshake message type")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RemoteProtocolError("hello.version must be a positive integer")
    key_text = obj.get("public_key")
    if not isinstance(key_text, str) or len(key_text) > 64:
        raise RemoteProtocolError("hello.public_key must be base64 text")
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("hello.public_key is not base64") from None
    if len(key) != 32:
        raise InvalidPublicKeyError("hello.public_key must be a 32-byte Ed25519 key")
    caps = _str_list(obj, "capabilities", _MAX_CAPABILITIES, _MAX_CAPABILITY_LENGTH)
    streams = _str_list(obj, "streams", max_streams, max_stream_name_length)
    for name in streams:
        try:
            check_stream_name_text(name, max_stream_name_length)
        except ValueError:
            raise RemoteProtocolError("hello.streams holds an invalid stream name") from None
    return Hello(version, key, caps, streams)


# -- the state machine ------------------------------------------------------------------------


class HandshakePhase(enum.Enum):
    """Where the built-in handshake stands."""

    IDLE = "idle"  # nothing sent
    HELLO_SENT = "hello_sent"  # our hello is out, theirs not yet seen
    PREPARING = "preparing"  # their hello accepted; waiting for prepared()
    PREPARED = "prepared"  # we sent complete; waiting for theirs
    DONE = "done"  # finalized
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Prepare:
    """Action: derive the stream key for ``public_key`` and accept ``streams``."""

    public_key: bytes
    streams: tuple[str, ...]
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finalize:
    """Action: enable sending; the connection is established."""


@dataclass(frozen=True, slots=True)
class Failed:
    """Action: give up; send ``abort`` (if given) and close the handshake stream."""

    error: GlueberryError
    abort: bytes | None


Action = Prepare | Finalize | Failed

# One table holds every legal (phase, message) pair and the phase it leads to.
_TRANSITIONS: dict[tuple[HandshakePhase, type[Message]], HandshakePhase] = {
    (HandshakePhase.HELLO_SENT, Hello): HandshakePhase.PREPARING,
    (HandshakePhase.PREPARED, Complete): HandshakePhase.DONE,
}


class AutoHandshake:
    """The built-in handshake for one peer (sans-IO).

    Args:
        local_public_key: our raw Ed25519 public key.
        peer_id: the authenticated peer id of the connection (the key must match it).
        streams: the stream names we announce.
        capabilities: the capabilities we announce.
        max_streams: most stream names accepted from the peer.
        max_stream_name_length: longest stream name accepted.

    Use: ``payload = hs.start()`` (send it), then ``hs.receive(payload)`` for every
    frame, acting on the returned actions; after acting on :class:`Prepare`, call
    :meth:`prepared` and send its payload.
    """

    def __init__(
        self,
        *,
        local_public_key: bytes,
        peer_id: PeerId,
        streams: Sequence[str],
        capabilities: Sequence[str] = (WIRE_V1_CAPABILITY,),
        max_streams: int = 64,
        max_stream_name_length: int = 64,
    ) -> None:
        self._hello = Hello(PROTOCOL_VERSION, local_public_key, tuple(capabilities), tuple(streams))
        self._peer_id = peer_id
        self._max_streams = max_streams
        self._max_name = max_stream_name_length
        self.phase = HandshakePhase.IDLE
        self.peer_hello: Hello | None = None
        self.error: GlueberryError | None = None

    def start(self) -> bytes:
        """Our hello payload (call once).

        Raises:
            LocalProtocolError: called twice.
        """
        if self.phase is not HandshakePhase.IDLE:
            raise LocalProtocolError("handshake already started")
        self.phase = HandshakePhase.HELLO_SENT
        return self._hello.serialize()

    def _fail(self, error: GlueberryError, *, tell_peer: bool = True) -> list[Action]:
        self.phase = HandshakePhase.FAILED
        self.error = error
        abort = Abort(error.code).serialize() if tell_peer else None
        return [Failed(error, abort)]

    def receive(self, payload: bytes) -> list[Action]:
        """Feed one handshake frame payload; returns the actions to perform."""
        if self.phase in (HandshakePhase.FAILED, HandshakePhase.DONE):
            if self.phase is HandshakePhase.DONE:
                return self._fail(RemoteProtocolError("handshake message after completion"))
            return []
        try:
            msg = parse_message(
                payload, max_streams=self._max_streams, max_stream_name_length=self._max_name
            )
        except GlueberryError as exc:
            return self._fail(exc)
        if isinstance(msg, Abort):
            return self._fail(
                HandshakeError(f"peer aborted the handshake: {msg.reason}"), tell_peer=False
            )
        nxt = _TRANSITIONS.get((self.phase, type(msg)))
        if nxt is None:
            return self._fail(
                RemoteProtocolError(
                    f"unexpected {type(msg).__name__.lower()} in {self.phase.value}"
                )
            )
        if isinstance(msg, Hello):
            if msg.version != PROTOCOL_VERSION:
                return self._fail(HandshakeError(f"unsupported handshake version {msg.version}"))
            if WIRE_V1_CAPABILITY not in msg.capabilities:
                return self._fail(HandshakeError("peer does not offer wire-v1"))
            if PeerId.from_public_key(msg.public_key) != self._peer_id:
                return self._fail(
                    PeerIdMismatchError("hello public key does not match the peer id")
                )
            self.peer_hello = msg
            self.phase = nxt
            names = tuple(dict.fromkeys(self._hello.streams + msg.streams))
            return [Prepare(msg.public_key, names, msg.capabilities)]
        self.phase = nxt
        return [Finalize()]

    def prepared(self) -> bytes:
        """Record that the streams are prepared; returns the ``complete`` payload to send.

        Raises:
            LocalProtocolError: no :class:`Prepare` action is pending.
        """
        if self.phase is not HandshakePhase.PREPARING:
            raise LocalProtocolError(f"prepared() in phase {self.phase.value}")
        self.phase = HandshakePhase.PREPARED
        return Complete().serialize()

    def fail(self, error: GlueberryError) -> bytes:
        """Give up locally (e.g. prepare failed); returns the ``abort`` payload to send."""
        self.phase = HandshakePhase.FAILED
        self.error = error
        return Abort(error.code).serialize()
