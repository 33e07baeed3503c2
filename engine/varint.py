"""Unsigned LEB128 varints (the ``uvarint`` of Go, protobuf and libp2p), strict decoding.

Encoding is the usual 7 bits per byte, least significant group first, high bit set on
every byte but the last. Decoding is strict, because a length prefix with two encodings
is a smuggling vector: it rejects

- non-minimal encodings (a trailing ``0x00`` group, e.g. ``80 00`` for zero),
- encodings longer than 10 bytes or values above ``2**64 - 1``.

Used by the Glueberry frame codec (:mod:`engine.framing`) and by the libp2p layer
(multistream-select length prefixes, protobuf fields).
"""

from __future__ import annotations

from engine.errors import MalformedFrameError

__all__ = [
    "MAX_UVARINT",
    "MAX_UVARINT_LEN",
    "decode_uvarint",
    "encode_uvarint",
    "uvarint_size",
]

MAX_UVARINT = 2**64 - 1
"""Largest value a uvarint may carry (64 bits)."""

MAX_UVARINT_LEN = 10
"""Longest valid encoding in bytes (ceil(64 / 7))."""

# Encodings of 0..127 are the byte itself: precomputed, they make the common small
# lengths allocation-free.
_SMALL = tuple(bytes([i]) for i in range(128))


def encode_uvarint(value: int) -> bytes:
    """Encode ``value`` as a minimal unsigned varint.

    Args:
        value: an integer in ``0 .. 2**64 - 1``.

    Returns:
        The 1..10 byte encoding.

    Raises:
        ValueError: ``value`` is negative or does not fit in 64 bits (a caller bug).
    """
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0 or value > MAX_UVARINT:
        raise ValueError(f"uvarint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def uvarint_size(value: int) -> int:
    """Number of bytes :func:`encode_uvarint` produces for ``value`` (0 counts as 1).

    Raises:
        ValueError: ``value`` is negative or does not fit in 64 bits.
    """
    if value < 0 or value > MAX_UVARINT:
        raise ValueError(f"uvarint out of range: {value}")
    return max(1, (value.bit_length() + 6) // 7)


def decode_uvarint(
    data: bytes | bytearray | memoryview, offset: int = 0, end: int | None = None
) -> tuple[int, int] | None:
    """Decode one strict uvarint from ``data[offset:end]``.

    Args:
        data: the buffer (not copied).
        offset: where the varint starts.
        end: where the readable bytes stop (default ``len(data)``); bytes from ``end`` on
            are not looked at.

    Returns:
        ``(value, next_offset)`` where ``next_offset`` is the index just after the varint,
        or ``None`` when the bytes before ``end`` are a valid but incomplete prefix (feed
        more data and call again).

    Raises:
        MalformedFrameError: non-minimal encoding, more than 10 bytes, or above 64 bits.
            Raised as soon as the available bytes prove it, so a caller never needs more
            than 10 bytes to decide.
    """
    if end is None:
        end = len(data)
    if offset < end:
        first = data[offset]
        if first < 0x80:  # fast path: one-byte varint (always minimal)
            return first, offset + 1
    value = 0
    shift = 0
    i = offset
    while i < end:
        byte = data[i]
        i += 1
        if byte < 0x80:
            if byte == 0 and i - offset > 1:
                raise MalformedFrameError("non-minimal varint encoding")
            if shift == 63 and byte > 1:
                raise MalformedFrameError("varint exceeds 64 bits")
            return value | (byte << shift), i
        if i - offset >= MAX_UVARINT_LEN:
            raise MalformedFrameError("varint longer than 10 bytes")
        value |= (byte & 0x7F) << shift
        shift += 7
    return None
