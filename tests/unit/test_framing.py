"""engine.framing: the v1 double-length-prefixed frame codec (example-based tests)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from engine.errors import (
    FrameError,
    FrameTooLargeError,
    MalformedFrameError,
    MessageTooLargeError,
)
from engine.framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_HEADER_SIZE,
    FrameDecoder,
    encode_frame,
    encode_frames,
    frame_size,
)
from engine.varint import encode_uvarint

VECTORS = json.loads(Path("/work/shared/reference/wire-v1-vectors.json").read_text())["vectors"]
if not VECTORS:  # pragma: no cover - guards against an empty vector file
    raise RuntimeError("no wire vectors")


def feed_chunks(decoder: FrameDecoder, *chunks: bytes) -> list[bytes]:
    """Feed several chunks, returning every payload."""
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def peak_of_refused_feed(decoder: FrameDecoder, chunk: bytes) -> int:
    """Feed ``chunk``, which must raise FrameTooLargeError; the peak bytes traced meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLargeError):
            decoder.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def raw_frame(m_len: int, p_len: int, body: bytes) -> bytes:
    """Hand-built frame with arbitrary (possibly inconsistent) lengths."""
    return encode_uvarint(m_len) + encode_uvarint(p_len) + body


# -- encoding -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_wire_vectors_encode_and_decode(vector: dict[str, str]) -> None:
    payload = bytes.fromhex(vector["P_hex"])
    message = bytes.fromhex(vector["M_hex"])
    frame = bytes.fromhex(vector["frame_hex"])
    assert encode_frame(payload) == frame
    assert frame == encode_uvarint(len(message)) + message
    assert message == encode_uvarint(len(payload)) + payload
    assert frame_size(len(payload)) == len(frame)
    assert FrameDecoder().feed(frame) == [payload]


def test_empty_payload() -> None:
    assert encode_frame(b"") == b"\x01\x00"
    assert FrameDecoder().feed(b"\x01\x00\x01\x00") == [b"", b""]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 128, 16_381, 16_382, 16_383, 16_384, 70_000])
def test_varint_boundaries_round_trip(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    frame = encode_frame(payload)
    assert len(frame) == frame_size(size)
    assert FrameDecoder(max_message_size=size).feed(frame) == [payload]


def test_encode_frames_equals_joined_frames() -> None:
    payloads = [b"", b"a", b"x" * 127, b"y" * 128, bytearray(b"z" * 300), memoryview(b"m" * 5)]
    expected = b"".join(encode_frame(p) for p in payloads)
    assert encode_frames(payloads) == expected
    assert FrameDecoder().feed(expected) == [bytes(p) for p in payloads]
    assert encode_frames([]) == b""


def test_encode_enforces_optional_limit() -> None:
    assert encode_frame(b"x" * 10, max_message_size=10)
    with pytest.raises(MessageTooLargeError) as info:
        encode_frame(b"x" * 11, max_message_size=10)
    assert info.value.details == {"size": 11, "limit": 10}
    with pytest.raises(MessageTooLargeError):
        encode_frames([b"ok", b"x" * 11], max_message_size=10)


# -- decoding: incremental --------------------------------------------------------------------


def test_byte_by_byte_feeding() -> None:
    payloads = [b"hello", b"", b"w" * 200, b"q" * 20_000]
    stream = encode_frames(payloads)
    decoder = FrameDecoder()
    got: list[bytes] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == payloads
    assert decoder.buffered == 0


def test_accepts_bytearray_and_memoryview_chunks() -> None:
    frame = encode_frame(b"payload")
    decoder = FrameDecoder()
    assert decoder.feed(bytearray(frame[:3])) == []
    assert decoder.feed(memoryview(frame)[3:]) == [b"payload"]
    assert decoder.feed(b"") == []


def test_tiny_frames_after_partial_header_are_all_returned() -> None:
    # The pending-header path takes up to MAX_HEADER_SIZE bytes; whatever belongs to the
    # following frames must still be decoded from the same chunk.
    decoder = FrameDecoder()
    stream = encode_frames([b"", b"a", b"bc", b"", b"def"])
    assert decoder.feed(stream[:1]) == []
    assert decoder.feed(stream[1:]) == [b"", b"a", b"bc", b"", b"def"]


def test_payloads_are_bytes_and_independent_of_input_buffer() -> None:
    chunk = bytearray(encode_frame(b"abc") + encode_frame(b"d" * 300)[:10])
    decoder = FrameDecoder()
    out = decoder.feed(chunk)
    chunk[:] = bytes(len(chunk))
    rest = encode_frame(b"d" * 300)[10:]
    out += decoder.feed(rest)
    assert out == [b"abc", b"d" * 300]
    assert all(type(p) is bytes for p in out)


def test_feed_eof() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"abc"))
    decoder.feed_eof()  # clean end between frames
    decoder.feed(encode_frame(b"abc")[:-1])
    with pytest.raises(MalformedFrameError, match="ended inside a frame"):
        decoder.feed_eof()
    assert decoder.failed
    with pytest.raises(MalformedFrameError):
        decoder.feed(b"\x01\x00")


# -- decoding: limits ---------------------------------------------------------------------------


def test_limit_is_inclusive_on_payload_length() -> None:
    limit = 1000
    assert FrameDecoder(limit).feed(encode_frame(b"x" * limit)) == [b"x" * limit]
    # One byte over: the outer length (limit + 1 + 2-byte inner varint) is checked first.
    with pytest.raises(FrameTooLargeError) as info:
        FrameDecoder(limit).feed(encode_frame(b"x" * (limit + 1)))
    assert (info.value.announced, info.value.limit) == (limit + 3, limit + 2)
    assert info.value.details == {"announced": limit + 3, "limit": limit + 2}
    # A frame whose outer length passes but whose payload is one byte too long.
    with pytest.raises(FrameTooLargeError) as info:
        FrameDecoder(limit).feed(raw_frame(limit + 2, limit + 1, b""))
    assert (info.value.announced, info.value.limit) == (limit + 1, limit)


def test_outer_length_limit_allows_only_inner_varint_overhead() -> None:
    limit = 1000  # inner varint of 1000 is 2 bytes: len(M) may be at most 1002
    with pytest.raises(FrameTooLargeError) as info:
        FrameDecoder(limit).feed(encode_uvarint(1003))
    assert (info.value.announced, info.value.limit) == (1003, 1002)
    # 1002 itself passes the outer check and then fails on the inner length.
    decoder = FrameDecoder(limit)
    assert decoder.feed(encode_uvarint(1002)) == []
    with pytest.raises(FrameTooLargeError) as info:
        decoder.feed(encode_uvarint(1001))
    assert (info.value.announced, info.value.limit) == (1001, 1000)


def test_zero_limit_accepts_only_empty_payloads() -> None:
    decoder = FrameDecoder(max_message_size=0)
    assert decoder.feed(b"\x01\x00") == [b""]
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"\x02\x01x")


def test_negative_limit_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        FrameDecoder(-1)


def test_default_limit() -> None:
    assert FrameDecoder().max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 1024 * 1024


def test_four_gib_announcement_rejected_early_without_allocation() -> None:
    announce = encode_uvarint(4 * 1024**3)  # 5 bytes
    # Byte by byte: count the bytes consumed before the error.
    decoder = FrameDecoder()
    stream = announce + b"\x00" * 100
    consumed = 0
    for byte in stream:
        consumed += 1
        try:
            decoder.feed(bytes([byte]))
        except FrameTooLargeError as exc:
            error = exc
            break
    else:
        pytest.fail("4 GiB frame accepted")
    assert error.announced == 4 * 1024**3
    assert consumed <= 20
    # In one chunk followed by a large body: rejected without copying the body.
    chunk = announce + encode_uvarint(4 * 1024**3 - 5) + bytes(4 * 1024 * 1024)
    decoder = FrameDecoder()
    assert peak_of_refused_feed(decoder, chunk) < 16 * 1024
    assert decoder.buffered == 0


def test_large_inner_announcement_rejected_without_allocation() -> None:
    limit = 1024
    # Outer length within limits, inner length absurd: rejected on the header.
    chunk = encode_uvarint(limit) + encode_uvarint(2**63) + bytes(1024 * 1024)
    decoder = FrameDecoder(limit)
    assert peak_of_refused_feed(decoder, chunk) < 16 * 1024


def test_buffered_bytes_bounded_by_one_frame() -> None:
    limit = 4096
    decoder = FrameDecoder(limit)
    stream = encode_frames([b"a" * limit] * 20)
    bound = frame_size(limit)
    for i in range(0, len(stream), 1500):
        decoder.feed(stream[i : i + 1500])
        assert decoder.buffered <= bound
    assert decoder.buffered == 0


def test_header_bound_constant() -> None:
    assert MAX_HEADER_SIZE == 20


# -- decoding: malformed frames -----------------------------------------------------------------

MALFORMED = {
    "empty message": b"\x00",
    "non-minimal outer varint": b"\x82\x00\x01x",
    "non-minimal inner varint": b"\x03\x81\x00x",
    "outer varint longer than 10 bytes": b"\x80" * 10 + b"\x01",
    "inner shorter than message (bytes left over)": raw_frame(5, 2, b"abcd"),
    "inner longer than message": raw_frame(3, 5, b"abcde"),
    "inner varint runs past message": b"\x01\x80\x01",
    "inner varint exactly fills message": b"\x01\x05abcde",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames(data: bytes) -> None:
    for split in range(len(data) + 1):
        decoder = FrameDecoder()
        with pytest.raises(MalformedFrameError):
            # The zeros supply the bytes the incomplete cases are waiting for.
            feed_chunks(decoder, data[:split], data[split:], b"\x00" * 32)


def test_error_message_carries_no_payload_bytes() -> None:
    secret = b"TOP-SECRET-PAYLOAD"
    with pytest.raises(MalformedFrameError) as info:
        FrameDecoder().feed(raw_frame(len(secret) + 2, len(secret), secret + b"!!"))
    assert "SECRET" not in str(info.value)
    assert "SECRET" not in json.dumps(info.value.to_dict())


@pytest.mark.parametrize(
    ("first", "error"),
    [(b"\x00", MalformedFrameError), (encode_uvarint(10**9), FrameTooLargeError)],
)
def test_failed_decoder_stays_failed(first: bytes, error: type[FrameError]) -> None:
    decoder = FrameDecoder()
    with pytest.raises(error) as original:
        decoder.feed(first)
    assert decoder.failed
    for _ in range(3):
        with pytest.raises(error) as again:
            decoder.feed(encode_frame(b"valid"))
        assert again.value is not original.value
        assert again.value.to_dict() == original.value.to_dict()
    with pytest.raises(error):
        decoder.feed_eof()
    assert decoder.buffered == 0


def test_frames_before_an_error_are_lost_with_the_chunk() -> None:
    # The error aborts the whole feed: the caller resets the stream, so payloads decoded
    # earlier in the same chunk are not delivered (documented behaviour).
    decoder = FrameDecoder()
    with pytest.raises(MalformedFrameError):
        decoder.feed(encode_frame(b"ok") + b"\x00")
