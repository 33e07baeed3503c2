"""engine.varint: strict unsigned varints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import MalformedFrameError
from engine.varint import (
    MAX_UVARINT,
    MAX_UVARINT_LEN,
    decode_uvarint,
    encode_uvarint,
    uvarint_size,
)

KNOWN = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (300, "ac02"),
    (16_383, "ff7f"),
    (16_384, "808001"),
    (2**32, "8080808010"),
    (2**63, "80808080808080808001"),
    (MAX_UVARINT, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize(("value", "hex_"), KNOWN)
def test_known_encodings(value: int, hex_: str) -> None:
    raw = bytes.fromhex(hex_)
    assert encode_uvarint(value) == raw
    assert uvarint_size(value) == len(raw)
    assert decode_uvarint(raw) == (value, len(raw))


@given(st.integers(min_value=0, max_value=MAX_UVARINT))
def test_round_trip(value: int) -> None:
    raw = encode_uvarint(value)
    assert len(raw) == uvarint_size(value) <= MAX_UVARINT_LEN
    assert decode_uvarint(b"\xaa" + raw + b"\x55", 1) == (value, 1 + len(raw))


@given(st.integers(min_value=0, max_value=MAX_UVARINT))
def test_every_strict_prefix_is_incomplete(value: int) -> None:
    raw = encode_uvarint(value)
    for cut in range(len(raw)):
        assert decode_uvarint(raw[:cut]) is None
        assert decode_uvarint(raw, 0, cut) is None


@pytest.mark.parametrize("value", [-1, MAX_UVARINT + 1, 2**100])
def test_encode_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_uvarint(value)
    with pytest.raises(ValueError, match="out of range"):
        uvarint_size(value)


@pytest.mark.parametrize(
    "hex_",
    [
        "8000",  # zero in two bytes
        "8100",  # one in two bytes
        "ff8000",  # 127 in three bytes
        "80808080808080808000",  # zero in ten bytes
    ],
)
def test_non_minimal_rejected(hex_: str) -> None:
    with pytest.raises(MalformedFrameError, match="non-minimal"):
        decode_uvarint(bytes.fromhex(hex_))


def test_more_than_64_bits_rejected() -> None:
    with pytest.raises(MalformedFrameError, match="64 bits"):
        decode_uvarint(bytes.fromhex("ffffffffffffffffff02"))  # 2**64
    with pytest.raises(MalformedFrameError, match="64 bits"):
        decode_uvarint(bytes.fromhex("ffffffffffffffffff7f"))


def test_longer_than_ten_bytes_rejected_after_ten() -> None:
    # The error comes as soon as the 10th byte still has its continuation bit set: no
    # caller ever needs to buffer more than 10 bytes to decide.
    with pytest.raises(MalformedFrameError, match="longer than 10"):
        decode_uvarint(b"\x80" * 10)
    assert decode_uvarint(b"\x80" * 9) is None


def test_end_bounds_the_bytes_looked_at() -> None:
    raw = bytes.fromhex("ac02")
    assert decode_uvarint(raw, 0, 1) is None
    assert decode_uvarint(raw + b"\x01", 2) == (1, 3)
    assert decode_uvarint(b"", 0) is None


@given(st.binary(max_size=16))
def test_random_bytes_decode_or_raise_typed(data: bytes) -> None:
    try:
        result = decode_uvarint(data)
    except MalformedFrameError:
        return
    if result is not None:
        value, end = result
        assert encode_uvarint(value) == data[:end]
