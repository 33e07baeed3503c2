"""The Glueberry exception hierarchy.

Every error the engine raises derives from :class:`GlueberryError` and carries a stable
machine-readable ``code`` (a class attribute, never reused) plus an optional ``details``
mapping of JSON-safe values. Messages never contain key material or other secrets.
Only the gateway maps codes to HTTP statuses, in one place.

::

    GlueberryError (glueberry_error)
    ├── ConfigError (config_invalid)
    ├── InvalidInputError (invalid_input)
    │   ├── InvalidPeerIdError (invalid_peer_id)
    │   ├── InvalidMultiaddrError (invalid_multiaddr)
    │   ├── InvalidPublicKeyError (invalid_public_key)
    │   ├── InvalidStreamNameError (invalid_stream_name)
    │   ├── MetadataTooLargeError (metadata_too_large)
    │   ├── InvalidBanTargetError (invalid_ban_target)
    │   └── MessageTooLargeError (message_too_large)
    ├── CryptoError (crypto_error)
    │   ├── KeyFileError (key_file_error)
    │   │   └── InsecureKeyFileError (key_file_insecure)
    │   ├── WeakSharedSecretError (weak_shared_secret)
    │   ├── DecryptionError (decryption_failed)
    │   └── CipherClosedError (cipher_closed)
    ├── FrameError (frame_error)
    │   ├── FrameTooLargeError (frame_too_large)
    │   └── MalformedFrameError (frame_malformed)
    ├── ProtocolError (protocol_error)
    │   ├── LocalProtocolError (local_protocol_error)
    │   └── RemoteProtocolError (remote_protocol_error)
    │       ├── NegotiationError (protocol_negotiation_failed)
    │       ├── SecurityHandshakeError (security_handshake_failed)
    │       ├── PeerIdMismatchError (peer_id_mismatch)
    │       └── MuxerError (muxer_error)
    ├── TransportError (transport_error)
    │   ├── DialError (dial_failed)
    │   ├── DialTimeoutError (dial_timeout)
    │   ├── ConnectionGatedError (connection_gated)
    │   ├── ResourceLimitError (resource_limit)
    │   └── ConnectionClosedError (connection_closed)
    ├── StreamError (stream_error)
    │   ├── StreamClosedError (stream_closed)      we closed it
    │   ├── StreamBrokenError (stream_broken)      the peer or the network failed it
    │   ├── StreamResetError (stream_reset)        the peer reset it
    │   ├── StreamBusyError (stream_busy)          two tasks used it at once
    │   └── StreamLimitError (stream_limit)        too many streams, refused
    ├── PeerError (peer_error)
    │   ├── PeerNotFoundError (peer_not_found)
    │   ├── PeerExistsError (peer_exists)
    │   ├── PeerBlacklistedError (peer_blacklisted)
    │   ├── NotConnectedError (peer_not_connected)
    │   ├── NotEstablishedError (peer_not_established)
    │   ├── PeerInCooldownError (peer_in_cooldown)
    │   └── BanNotFoundError (ban_not_found)
    ├── HandshakeError (handshake_failed)
    │   ├── HandshakeTimeoutError (handshake_timeout)
    │   └── InvalidStateTransitionError (invalid_state_transition)
    ├── SendTimeoutError (send_timeout)
    ├── NodeStateError (node_state)
    │   └── NodeNotRunningError (node_not_running)
    └── StorageError (storage_error)
        ├── StorageUnavailableError (storage_unavailable)
        └── ApiKeyNotFoundError (api_key_not_found)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "ApiKeyNotFoundError",
    "BanNotFoundError",
    "CipherClosedError",
    "ConfigError",
    "ConnectionClosedError",
    "ConnectionGatedError",
    "CryptoError",
    "DecryptionError",
    "DialError",
    "DialTimeoutError",
    "FrameError",
    "FrameTooLargeError",
    "GlueberryError",
    "HandshakeError",
    "HandshakeTimeoutError",
    "InsecureKeyFileError",
    "InvalidBanTargetError",
    "InvalidInputError",
    "InvalidMultiaddrError",
    "InvalidPeerIdError",
    "InvalidPublicKeyError",
    "InvalidStateTransitionError",
    "InvalidStreamNameError",
    "KeyFileError",
    "LocalProtocolError",
    "MalformedFrameError",
    "MessageTooLargeError",
    "MetadataTooLargeError",
    "MuxerError",
    "NegotiationError",
    "NodeNotRunningError",
    "NodeStateError",
    "NotConnectedError",
    "NotEstablishedError",
    "PeerBlacklistedError",
    "PeerError",
    "PeerExistsError",
    "PeerIdMismatchError",
    "PeerInCooldownError",
    "PeerNotFoundError",
    "ProtocolError",
    "RemoteProtocolError",
    "ResourceLimitError",
    "SecurityHandshakeError",
    "SendTimeoutError",
    "StorageError",
    "StorageUnavailableError",
    "StreamBrokenError",
    "StreamBusyError",
    "StreamClosedError",
    "StreamError",
    "StreamLimitError",
    "StreamResetError",
    "TransportError",
    "WeakSharedSecretError",
    "all_error_classes",
]


class GlueberryError(Exception):
    """Root of every error raised by Glueberry.

    Attributes:
        code: stable, machine-readable identifier of the error kind (class attribute).
        message: human-readable description, safe to show to a remote user.
        details: JSON-safe extra facts (sizes, peer ids, limits); never secrets.
    """

    code: ClassVar[str] = "glueberry_error"

    def __init__(self, message: str = "", *, details: Mapping[str, Any] | None = None) -> None:
        self.message = message or self.__class__.__doc__ or self.code
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"code", "message", "details"}``, the shape the gateway serialises."""
        return {"code": self.code, "message": self.message, "details": dict(self.details)}


# -- configuration and input -------------------------------------------------------------


class ConfigError(GlueberryError):
    """A configuration value is invalid."""

    code = "config_invalid"


class InvalidInputError(GlueberryError):
    """Input from a caller or a peer failed validation."""

    code = "invalid_input"


class InvalidPeerIdError(InvalidInputError):
    """A peer id is not a valid libp2p Ed25519 peer id."""

    code = "invalid_peer_id"


class InvalidMultiaddrError(InvalidInputError):
    """A multiaddr could not be parsed or is not dialable."""

    code = "invalid_multiaddr"


class InvalidPublicKeyError(InvalidInputError):
    """A public key is malformed or of an unsupported type."""

    code = "invalid_public_key"


class InvalidStreamNameError(InvalidInputError):
    """A stream name is empty, too long, or uses characters outside [A-Za-z0-9._-]."""

    code = "invalid_stream_name"


class MetadataTooLargeError(InvalidInputError):
    """Peer metadata exceeds the configured maximum size."""

    code = "metadata_too_large"


class InvalidBanTargetError(InvalidInputError):
    """A blacklist target is neither a peer id nor an IP address / CIDR network."""

    code = "invalid_ban_target"


class MessageTooLargeError(InvalidInputError):
    """A message exceeds the configured maximum message size."""

    code = "message_too_large"


# -- cryptography --------------------------------------------------------------------------


class CryptoError(GlueberryError):
    """A cryptographic operation failed."""

    code = "crypto_error"


class KeyFileError(CryptoError):
    """An identity key file could not be read, parsed or written."""

    code = "key_file_error"


class InsecureKeyFileError(KeyFileError):
    """An identity key file is readable by the group or by others."""

    code = "key_file_insecure"


class WeakSharedSecretError(CryptoError):
    """An X25519 exchange produced the all-zero shared secret (low-order public key)."""

    code = "weak_shared_secret"


class DecryptionError(CryptoError):
    """A ciphertext failed authentication or is truncated."""

    code = "decryption_failed"


class CipherClosedError(CryptoError):
    """The cipher was closed and its key zeroed; it can no longer be used."""

    code = "cipher_closed"


# -- framing -------------------------------------------------------------------------------


class FrameError(GlueberryError):
    """A frame on a Glueberry stream is invalid; the stream cannot be resynchronised."""

    code = "frame_error"


class FrameTooLargeError(FrameError):
    """A frame announces a length above the configured maximum.

    ``details["announced"]`` holds the announced length, ``details["limit"]`` the maximum.
    """

    code = "frame_too_large"

    def __init__(self, announced: int, limit: int, message: str = "") -> None:
        self.announced = announced
        self.limit = limit
        super().__init__(
            message or f"frame announces {announced} bytes, limit is {limit}",
            details={"announced": announced, "limit": limit},
        )


class MalformedFrameError(FrameError):
    """A frame is malformed (non-minimal varint, inner length mismatch, ...)."""

    code = "frame_malformed"


# -- libp2p protocols ----------------------------------------------------------------------


class ProtocolError(GlueberryError):
    """A wire protocol was violated."""

    code = "protocol_error"


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow (a bug in the caller)."""

    code = "local_protocol_error"


class RemoteProtocolError(ProtocolError):
    """The remote peer violated the protocol."""

    code = "remote_protocol_error"


class NegotiationError(RemoteProtocolError):
    """multistream-select found no protocol both sides support, or the exchange was bad."""

    code = "protocol_negotiation_failed"


class SecurityHandshakeError(RemoteProtocolError):
    """The Noise security handshake failed (bad message, bad signature, bad key)."""

    code = "security_handshake_failed"


class PeerIdMismatchError(RemoteProtocolError):
    """The peer authenticated with a different peer id than the one dialed."""

    code = "peer_id_mismatch"


class MuxerError(RemoteProtocolError):
    """The stream multiplexer received an invalid frame."""

    code = "muxer_error"


# -- transport and connections ---------------------------------------------------------


class TransportError(GlueberryError):
    """A connection-level failure."""

    code = "transport_error"


class DialError(TransportError):
    """Dialing a peer failed."""

    code = "dial_failed"


class DialTimeoutError(DialError):
    """Dialing a peer did not complete within the timeout."""

    code = "dial_timeout"


class ConnectionGatedError(TransportError):
    """The connection gate refused the connection (blacklist, CIDR ban, limits)."""

    code = "connection_gated"


class ResourceLimitError(TransportError):
    """A resource limit (connections, pending connections, streams) was reached."""

    code = "resource_limit"


class ConnectionClosedError(TransportError):
    """The connection is closed."""

    code = "connection_closed"


# -- streams ---------------------------------------------------------------------------


class StreamError(GlueberryError):
    """A stream operation failed."""

    code = "stream_error"


class StreamClosedError(StreamError):
    """The stream was closed by us; it cannot be used any more."""

    code = "stream_closed"


class StreamBrokenError(StreamError):
    """The peer or the network broke the stream; ``__cause__`` holds the reason."""

    code = "stream_broken"


class StreamResetError(StreamBrokenError):
    """The peer reset the stream."""

    code = "stream_reset"


class StreamBusyError(StreamError):
    """Two tasks tried to use the same stream direction at once."""

    code = "stream_busy"


class StreamLimitError(StreamError):
    """The stream was refused because a concurrent-stream limit was reached."""

    code = "stream_limit"


# -- peers and handshake ---------------------------------------------------------------


class PeerError(GlueberryError):
    """An operation on a peer failed."""

    code = "peer_error"


class PeerNotFoundError(PeerError):
    """The peer is not in the address book."""

    code = "peer_not_found"


class PeerExistsError(PeerError):
    """The peer is already in the address book."""

    code = "peer_exists"


class PeerBlacklistedError(PeerError):
    """The peer is blacklisted."""

    code = "peer_blacklisted"


class NotConnectedError(PeerError):
    """The peer is not connected."""

    code = "peer_not_connected"


class NotEstablishedError(PeerError):
    """The peer's encrypted streams are not established (handshake not finalized)."""

    code = "peer_not_established"


class PeerInCooldownError(PeerError):
    """The peer is in cooldown after a failed handshake."""

    code = "peer_in_cooldown"


class BanNotFoundError(PeerError):
    """The peer id or CIDR is not on the blacklist."""

    code = "ban_not_found"


class HandshakeError(GlueberryError):
    """The Glueberry handshake failed."""

    code = "handshake_failed"


class HandshakeTimeoutError(HandshakeError):
    """The Glueberry handshake did not complete within the handshake timeout."""

    code = "handshake_timeout"


class InvalidStateTransitionError(HandshakeError):
    """A connection state machine was asked for a transition its table does not allow."""

    code = "invalid_state_transition"


class SendTimeoutError(GlueberryError):
    """A send waited for flow-control credit longer than its timeout."""

    code = "send_timeout"


class NodeStateError(GlueberryError):
    """The node is not in a state that allows this operation."""

    code = "node_state"


class NodeNotRunningError(NodeStateError):
    """The node is not running (not started, or stopped)."""

    code = "node_not_running"


# -- storage ---------------------------------------------------------------------------


class StorageError(GlueberryError):
    """A repository operation failed."""

    code = "storage_error"


class StorageUnavailableError(StorageError):
    """The storage backend cannot be reached."""

    code = "storage_unavailable"


class ApiKeyNotFoundError(StorageError):
    """No API key with this id exists for the local node."""

    code = "api_key_not_found"


def all_error_classes() -> list[type[GlueberryError]]:
    """Return every error class in the hierarchy (root first), for tests and the gateway."""
    seen: list[type[GlueberryError]] = []
    todo: list[type[GlueberryError]] = [GlueberryError]
    while todo:
        cls = todo.pop(0)
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen
