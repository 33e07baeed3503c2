"""The bounded protobuf codec for NoiseHandshakePayload and Identify."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import MalformedFrameError
from engine.net.protobuf import IdentifyMessage, NoiseHandshakePayload, iter_fields


def test_noise_payload_round_trip_and_known_bytes() -> None:
    msg = NoiseHandshakePayload(identity_key=b"\x01\x02", identity_sig=b"\x03")
    assert msg.serialize() == b"\x0a\x02\x01\x02\x12\x01\x03"
    assert NoiseHandshakePayload.parse(msg.serialize()) == msg


def test_noise_payload_extensions_are_parsed() -> None:
    msg = NoiseHandshakePayload(b"k", b"s", stream_muxers=("/yamux/1.0.0", "/mplex/6.7.0"))
    assert NoiseHandshakePayload.parse(msg.serialize()).stream_muxers == msg.stream_muxers


def test_unknown_fields_are_skipped() -> None:
    # field 9 varint, field 10 fixed64, field 11 fixed32, field 12 bytes
    extra = b"\x48\x05" + b"\x51" + bytes(8) + b"\x5d" + bytes(4) + b"\x62\x01z"
    msg = NoiseHandshakePayload(b"k", b"s")
    assert NoiseHandshakePayload.parse(extra + msg.serialize()) == msg


def test_identify_round_trip() -> None:
    msg = IdentifyMessage(
        protocol_version="ipfs/0.1.0",
        agent_version="glueberry-py/0.1.0",
        public_key=b"\x08\x01\x12\x20" + bytes(32),
        listen_addrs=(b"\x04\x7f\x00\x00\x01\x06\x0f\xa1",),
        observed_addr=b"\x04\x7f\x00\x00\x01\x06\x00\x01",
        protocols=("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"),
    )
    assert IdentifyMessage.parse(msg.serialize()) == msg
    assert IdentifyMessage.parse(b"") == IdentifyMessage()


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05ab",  # length beyond the message
        b"\x0a",  # truncated length
        b"\x08",  # truncated varint
        b"\x0b",  # group start (wire type 3)
        b"\x0e\x00",  # wire type 6
        b"\x02\x00",  # field number 0
        b"\x08\x01",  # identity_key as a varint
        b"\x51\x00",  # truncated fixed64
        b"\x0a\x80\x00",  # non-minimal varint
    ],
)
def test_malformed_payloads_raise_typed_errors(data: bytes) -> None:
    with pytest.raises(MalformedFrameError):
        NoiseHandshakePayload.parse(data)


def test_size_bound() -> None:
    with pytest.raises(MalformedFrameError):
        list(iter_fields(bytes(100), max_size=99))


def test_repeated_fields_are_bounded() -> None:
    data = b"\x1a\x01a" * 1025
    with pytest.raises(MalformedFrameError, match="too many"):
        IdentifyMessage.parse(data)


def test_invalid_utf8_protocol() -> None:
    with pytest.raises(MalformedFrameError):
        IdentifyMessage.parse(b"\x1a\x01\xff")


@given(st.binary(max_size=512))
def test_random_bytes_give_typed_errors_only(data: bytes) -> None:
    for parse in (NoiseHandshakePayload.parse, IdentifyMessage.parse):
        with contextlib.suppress(MalformedFrameError):
            parse(data)


@given(
    st.builds(
        IdentifyMessage,
        protocol_version=st.none() | st.text(max_size=20),
        agent_version=st.none() | st.text(max_size=20),
        public_key=st.none() | st.binary(max_size=40),
        listen_addrs=st.lists(st.binary(max_size=20), max_size=5).map(tuple),
        observed_addr=st.none() | st.binary(max_size=20),
        protocols=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    )
)
def test_identify_round_trip_property(msg: IdentifyMessage) -> None:
    assert IdentifyMessage.parse(msg.serialize()) == msg


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=63))
def test_truncated_payload_never_crashes(key: bytes, cut: int) -> None:
    data = NoiseHandshakePayload(key, b"sig").serialize()[:cut]
    with contextlib.suppress(MalformedFrameError):
        NoiseHandshakePayload.parse(data)
