"""engine.framing: property tests (hypothesis) against a straightforward reference decoder."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from engine.errors import FrameError, FrameTooLargeError, MalformedFrameError
from engine.framing import FrameDecoder, encode_frame, encode_frames, frame_size
from engine.varint import encode_uvarint, uvarint_size

# A small limit makes the size checks reachable by random inputs.
LIMIT = 300


def reference_decode(data: bytes, limit: int) -> tuple[list[bytes], type[FrameError] | None]:
    """Whole-buffer decoder written directly from the spec, for comparison.

    Returns the payloads before the first error and the error type (or None), plus it
    treats trailing incomplete bytes as "need more" (no error).
    """
    max_m = limit + uvarint_size(limit)
    out: list[bytes] = []

    def varint(pos: int, end: int) -> tuple[int, int] | type[FrameError] | None:
        value = 0
        for i in range(10):
            if pos + i >= end:
                return None
            byte = data[pos + i]
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                if i and byte == 0:
                    return MalformedFrameError
                if value >= 2**64:
                    return MalformedFrameError
                return value, pos + i + 1
        return MalformedFrameError

    pos = 0
    while pos < len(data):
        outer = varint(pos, len(data))
        if outer is None:
            break
        if not isinstance(outer, tuple):
            return out, outer
        m_len, m_start = outer
        if m_len > max_m:
            return out, FrameTooLargeError
        if m_len == 0:
            return out, MalformedFrameError
        m_end = m_start + m_len
        inner = varint(m_start, min(len(data), m_end))
        if inner is None:
            if len(data) >= m_end:
                return out, MalformedFrameError
            break
        if not isinstance(inner, tuple):
            return out, inner
        p_len, p_start = inner
        if p_len > limit:
            return out, FrameTooLargeError
        if p_start + p_len != m_end:
            return out, MalformedFrameError
        if m_end > len(data):
            break
        out.append(data[p_start:m_end])
        pos = m_end
    return out, None


def feed_split(
    data: bytes, cuts: list[int], limit: int
) -> tuple[list[bytes], type[FrameError] | None, FrameDecoder]:
    """Feed ``data`` cut at ``cuts``; collect payloads until the first error."""
    decoder = FrameDecoder(limit)
    out: list[bytes] = []
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        try:
            out += decoder.feed(data[start:end])
        except FrameError as exc:
            return out, type(exc), decoder
        assert decoder.buffered <= frame_size(limit)
    return out, None, decoder


payloads_st = st.lists(st.binary(max_size=LIMIT), max_size=12)
cuts_st = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@given(payloads_st, cuts_st)
def test_any_split_of_a_valid_stream_decodes_to_the_same_payloads(
    payloads: list[bytes], cuts: list[int]
) -> None:
    stream = encode_frames(payloads)
    got, error, decoder = feed_split(stream, cuts, LIMIT)
    assert error is None
    assert got == payloads
    assert decoder.buffered == 0
    decoder.feed_eof()


@given(payloads_st, st.data())
def test_byte_at_a_time_and_one_shot_agree(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    cut = data.draw(st.integers(min_value=0, max_value=len(stream)))
    decoder = FrameDecoder(LIMIT)
    got = decoder.feed(stream[:cut])
    for i in range(cut, len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == payloads


@given(st.binary(max_size=600), cuts_st)
@example(b"\x00", [])
@example(b"\x80" * 11, [3])
@example(b"\xad\x02\xac\x02", [1, 2])  # outer 301: within max_m (302); inner 300 leaves 0
def test_random_bytes_raise_only_frame_errors_and_match_reference(
    data: bytes, cuts: list[int]
) -> None:
    got, error, decoder = feed_split(data, cuts, LIMIT)  # anything else would propagate
    ref_payloads, ref_error = reference_decode(data, LIMIT)
    assert error == ref_error
    if error is None:
        assert got == ref_payloads
        assert decoder.buffered <= frame_size(LIMIT)
    else:
        # Payloads of the chunk that failed are dropped; earlier ones match the reference.
        assert got == ref_payloads[: len(got)]
        assert decoder.failed


@given(payloads_st, st.binary(min_size=1, max_size=64), cuts_st)
def test_garbage_after_valid_frames(payloads: list[bytes], junk: bytes, cuts: list[int]) -> None:
    stream = encode_frames(payloads) + junk
    got, error, _ = feed_split(stream, cuts, LIMIT)
    ref_payloads, ref_error = reference_decode(stream, LIMIT)
    assert error == ref_error
    assert got == ref_payloads[: len(got)]
    if error is None:
        assert got[: len(payloads)] == payloads


MAX_M = LIMIT + uvarint_size(LIMIT)


@given(
    st.one_of(
        # outer length too large
        st.builds(
            lambda m, tail: (encode_uvarint(m) + tail, m),
            st.integers(min_value=MAX_M + 1, max_value=2**64 - 1),
            st.binary(max_size=30),
        ),
        # outer length fine, inner length too large
        st.builds(
            lambda m, p, tail: (encode_uvarint(m) + encode_uvarint(p) + tail, p),
            st.integers(min_value=11, max_value=MAX_M),
            st.integers(min_value=LIMIT + 1, max_value=2**64 - 1),
            st.binary(max_size=30),
        ),
    )
)
def test_oversized_announcements_rejected_within_header(case: tuple[bytes, int]) -> None:
    stream, announced = case
    decoder = FrameDecoder(LIMIT)
    error: FrameTooLargeError | None = None
    consumed = 0
    for i in range(len(stream)):
        consumed = i + 1
        try:
            decoder.feed(stream[i : i + 1])
        except FrameTooLargeError as exc:
            error = exc
            break
    assert error is not None, "oversized frame accepted"
    assert error.announced == announced
    assert consumed <= 20
    assert decoder.buffered == 0
