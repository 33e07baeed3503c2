"""A tiny, bounded protobuf codec for the few libp2p messages we speak.

Only what the messages below need: varint (wire type 0) and length-delimited (wire type
2) fields; 64-bit and 32-bit fixed fields are parsed and skipped; groups (3, 4) are
rejected. Unknown fields are skipped (forward compatibility with newer peers). Every
length is checked against the remaining input before slicing, the message size is
bounded, and malformed input raises :class:`~engine.errors.MalformedFrameError` only.

Messages (field numbers as in the libp2p specs):

- ``NoiseHandshakePayload{identity_key=1, identity_sig=2, extensions=4}`` with
  ``NoiseExtensions{webtransport_certhashes=1 (repeated bytes), stream_muxers=2
  (repeated string)}``.
- ``Identify{publicKey=1, listenAddrs=2 (repeated), protocols=3 (repeated string),
  observedAddr=4, protocolVersion=5, agentVersion=6, signedPeerRecord=8}``.

``PublicKey`` lives in :mod:`engine.crypto.identity` (Ed25519 only, canonical form).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.errors import MalformedFrameError
from engine.varint import decode_uvarint, encode_uvarint

__all__ = [
    "MAX_IDENTIFY_SIZE",
    "MAX_NOISE_PAYLOAD_SIZE",
    "IdentifyMessage",
    "NoiseHandshakePayload",
    "iter_fields",
]

MAX_NOISE_PAYLOAD_SIZE = 65_535
MAX_IDENTIFY_SIZE = 64 * 1024
_MAX_REPEATED = 1024

_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5


def iter_fields(data: bytes, *, max_size: int) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)`` for each field of a message.

    Varint fields yield an int, length-delimited fields bytes; fixed fields yield their
    raw bytes.

    Args:
        data: the encoded message.
        max_size: largest accepted message.

    Raises:
        MalformedFrameError: truncated, oversized, bad varint, group or bad wire type.
    """
    if len(data) > max_size:
        raise MalformedFrameError(
            f"protobuf message of {len(data)} bytes exceeds {max_size}",
            details={"size": len(data), "limit": max_size},
        )
    pos = 0
    end = len(data)
    while pos < end:
        key = decode_uvarint(data, pos)
        if key is None:
            raise MalformedFrameError("truncated protobuf field key")
        tag, pos = key
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise MalformedFrameError("protobuf field number 0")
        if wire == _VARINT:
            item = decode_uvarint(data, pos)
            if item is None:
                raise MalformedFrameError("truncated protobuf varint")
            value, pos = item
            yield number, wire, value
        elif wire == _LEN:
            item = decode_uvarint(data, pos)
            if item is None:
                raise MalformedFrameError("truncated protobuf length")
            length, pos = item
            if length > end - pos:
                raise MalformedFrameError("protobuf length exceeds the message")
            yield number, wire, bytes(data[pos : pos + length])
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if size > end - pos:
                raise MalformedFrameError("truncated protobuf fixed field")
            yield number, wire, bytes(data[pos : pos + size])
            pos += size
        else:
            raise MalformedFrameError(f"unsupported protobuf wire type {wire}")


def _bytes_field(number: int, value: bytes) -> bytes:
    return encode_uvarint((number << 3) | _LEN) + encode_uvarint(len(value)) + value


def _expect_bytes(number: int, wire: int, value: int | bytes) -> bytes:
    if wire != _LEN or not isinstance(value, bytes):
        raise MalformedFrameError(f"protobuf field {number} must be length-delimited")
    return value


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedFrameError(f"{what} is not UTF-8") from exc


def _append_bounded(items: list[bytes] | list[str], what: str) -> None:
    if len(items) >= _MAX_REPEATED:
        raise MalformedFrameError(f"too many {what} entries (limit {_MAX_REPEATED})")


@dataclass(frozen=True, slots=True)
class NoiseHandshakePayload:
    """The libp2p Noise handshake payload (identity key, signature, extensions)."""

    identity_key: bytes = b""
    identity_sig: bytes = b""
    stream_muxers: tuple[str, ...] = ()

    def serialize(self) -> bytes:
        """Encode as protobuf."""
        out = _bytes_field(1, self.identity_key) + _bytes_field(2, self.identity_sig)
        if self.stream_muxers:
            ext = b"".join(_bytes_field(2, m.encode("utf-8")) for m in self.stream_muxers)
            out += _bytes_field(4, ext)
        return out

    @classmethod
    def parse(cls, data: bytes) -> NoiseHandshakePayload:
        """Decode from protobuf.

        Raises:
            MalformedFrameError: malformed or oversized message.
        """
        key = sig = b""
        muxers: list[str] = []
        for number, wire, value in iter_fields(data, max_size=MAX_NOISE_PAYLOAD_SIZE):
            if number == 1:
                key = _expect_bytes(number, wire, value)
            elif number == 2:
                sig = _expect_bytes(number, wire, value)
            elif number == 4:
                ext = _expect_bytes(number, wire, value)
                for n2, w2, v2 in iter_fields(ext, max_size=MAX_NOISE_PAYLOAD_SIZE):
                    if n2 == 2:
                        _append_bounded(muxers, "stream_muxers")
                        muxers.append(_text(_expect_bytes(n2, w2, v2), "stream muxer"))
        return cls(identity_key=key, identity_sig=sig, stream_muxers=tuple(muxers))


@dataclass(frozen=True, slots=True)
class IdentifyMessage:
    """The ``/ipfs/id/1.0.0`` message. Addresses are binary multiaddrs."""

    protocol_version: str | None = None
    agent_version: str | None = None
    public_key: bytes | None = None
    listen_addrs: tuple[bytes, ...] = ()
    observed_addr: bytes | None = None
    protocols: tuple[str, ...] = field(default_factory=tuple)

    def serialize(self) -> bytes:
        """Encode as protobuf."""
        parts: list[bytes] = []
        if self.public_key is not None:
            parts.append(_bytes_field(1, self.public_key))
        parts.extend(_bytes_field(2, addr) for addr in self.listen_addrs)
        parts.extend(_bytes_field(3, p.encode("utf-8")) for p in self.protocols)
        if self.observed_addr is not None:
            parts.append(_bytes_field(4, self.observed_addr))
        if self.protocol_version is not None:
            parts.append(_bytes_field(5, self.protocol_version.encode("utf-8")))
        if self.agent_version is not None:
            parts.append(_bytes_field(6, self.agent_version.encode("utf-8")))
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> IdentifyMessage:
        """Decode from protobuf; unknown fields (e.g. signedPeerRecord) are skipped.

        Raises:
            MalformedFrameError: malformed or oversized message.
        """
        public_key: bytes | None = None
        observed: bytes | None = None
        proto_version: str | None = None
        agent: str | None = None
        addrs: list[bytes] = []
        protocols: list[str] = []
        for number, wire, value in iter_fields(data, max_size=MAX_IDENTIFY_SIZE):
            if number == 1:
                public_key = _expect_bytes(number, wire, value)
            elif number == 2:
                _append_bounded(addrs, "listenAddrs")
                addrs.append(_expect_bytes(number, wire, value))
            elif number == 3:
                _append_bounded(protocols, "protocols")
                protocols.append(_text(_expect_bytes(number, wire, value), "protocol id"))
            elif number == 4:
                observed = _expect_bytes(number, wire, value)
            elif number == 5:
                proto_version = _text(_expect_bytes(number, wire, value), "protocolVersion")
            elif number == 6:
                agent = _text(_expect_bytes(number, wire, value), "agentVersion")
        return cls(
            protocol_version=proto_version,
            agent_version=agent,
            public_key=public_key,
            listen_addrs=tuple(addrs),
            observed_addr=observed,
            protocols=tuple(protocols),
        )
