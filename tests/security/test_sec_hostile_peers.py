"""Hostile remote peers against the sans-IO cores: structured attacks random bytes miss.

Random-byte fuzzing of every parser lives next to each parser's unit tests; these tests
feed *well-formed but malicious* input (deep JSON nesting, floods of frames that need an
answer while the answers are never read, terminal escapes in peer-supplied text) and check
that only typed :class:`GlueberryError` subclasses come out and memory stays bounded.
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.crypto.identity import Identity
from engine.errors import GlueberryError, HandshakeError, MuxerError, RemoteProtocolError
from engine.handshake import (
    MAX_HANDSHAKE_MESSAGE_SIZE,
    Abort,
    AutoHandshake,
    Failed,
    Prepare,
    parse_message,
)
from engine.net.yamux import HEADER_SIZE, YamuxSession

_YAMUX = struct.Struct(">BBHII")
_PING_SYN = _YAMUX.pack(0, 2, 1, 0, 7)


def _handshake() -> AutoHandshake:
    a, b = Identity.generate(), Identity.generate()
    hs = AutoHandshake(local_public_key=a.public_key, peer_id=b.peer_id, streams=("chat",))
    hs.start()
    return hs


# -- the Glueberry handshake JSON ------------------------------------------------------------


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deeply_nested_handshake_json_is_a_protocol_error(opener: bytes) -> None:
    payload = opener * 5000  # well under the 64 KiB frame limit
    with pytest.raises(RemoteProtocolError):
        parse_message(payload)
    [action] = _handshake().receive(payload)
    assert isinstance(action, Failed)
    assert isinstance(action.error, RemoteProtocolError)


def test_nested_value_inside_a_hello_is_a_protocol_error() -> None:
    payload = b'{"type":"hello","version":1,"streams":' + b"[" * 3000 + b"]" * 3000 + b"}"
    [action] = _handshake().receive(payload)
    assert isinstance(action, Failed)
    assert isinstance(action.error, GlueberryError)


def test_oversized_handshake_payload_is_refused_before_parsing() -> None:
    payload = b'{"type":"complete","pad":"' + b"x" * MAX_HANDSHAKE_MESSAGE_SIZE + b'"}'
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(payload)
    assert info.value.details["limit"] == MAX_HANDSHAKE_MESSAGE_SIZE


def test_peer_abort_reason_cannot_inject_log_lines_or_escapes() -> None:
    reason = "bye\n2026-01-01 CRITICAL forged\x1b[31m red\r\x00"
    msg = parse_message(json.dumps({"type": "abort", "reason": reason}).encode())
    assert isinstance(msg, Abort)
    assert msg.reason.isprintable()
    [action] = _handshake().receive(json.dumps({"type": "abort", "reason": reason}).encode())
    assert isinstance(action, Failed)
    assert isinstance(action.error, HandshakeError)
    assert "\n" not in str(action.error)
    assert "\x1b" not in str(action.error)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["type", "version", "public_key", "capabilities", "streams", "reason"]),
        json_values,
    ),
    kind=st.sampled_from(["hello", "complete", "abort", None]),
    depth=st.integers(0, 3000),
)
def test_structured_json_gives_typed_failures_only(
    fields: dict[str, object], kind: str | None, depth: int
) -> None:
    if kind is not None:
        fields["type"] = kind
    body = json.dumps(fields)
    payload = ("[" * depth + body + "]" * depth).encode()
    for action in _handshake().receive(payload):
        assert isinstance(action, (Prepare, Failed))
        if isinstance(action, Failed):
            assert isinstance(action.error, GlueberryError)


# -- yamux: answers the peer never reads -----------------------------------------------------


def _feed_all(session: YamuxSession, chunks: list[bytes]) -> None:
    for chunk in chunks:
        session.receive_data(chunk)


@pytest.mark.parametrize("is_client", [True, False])
def test_ping_flood_without_reading_fails_the_session_with_bounded_output(
    is_client: bool,
) -> None:
    session = YamuxSession(is_client, max_queued_replies=100)
    # The writer is stuck (the peer does not read): nothing calls data_to_send.
    with pytest.raises(MuxerError, match="floods"):
        _feed_all(session, [_PING_SYN * 10] * 1000)
    assert session.error is not None
    assert session.bytes_to_send <= HEADER_SIZE  # only the GoAway is left


def test_syn_flood_beyond_the_stream_limit_is_bounded_too() -> None:
    session = YamuxSession(False, max_streams=1, max_queued_replies=50)
    # Client-initiated (odd) WindowUpdate SYN then RST: a rapid-reset flood.
    frames = [
        _YAMUX.pack(0, 1, 1, sid, 0) + _YAMUX.pack(0, 1, 8, sid, 0) for sid in range(1, 2001, 2)
    ]
    with pytest.raises(MuxerError, match="floods"):
        _feed_all(session, frames)
    assert session.bytes_to_send <= HEADER_SIZE


def test_pings_answered_while_the_peer_reads_never_fail() -> None:
    session = YamuxSession(True, max_queued_replies=10)
    for _ in range(500):
        session.receive_data(_PING_SYN * 5)
        out = session.data_to_send()  # the writer takes the answers
        assert len(out) == 5 * HEADER_SIZE
    assert session.error is None


def test_max_queued_replies_is_validated() -> None:
    with pytest.raises(ValueError, match="max_queued_replies"):
        YamuxSession(True, max_queued_replies=0)


# -- identify: the announced length is checked before buffering ------------------------------


class _OneChunkStream:
    """Serves one chunk, then fails the test if read again (the reader must stop)."""

    remote_peer = Identity.generate().peer_id

    def __init__(self, chunk: bytes) -> None:
        self.chunk: bytes | None = chunk
        self.reads = 0

    async def read(self, max_bytes: int = 65536) -> bytes:
        self.reads += 1
        if self.chunk is None:
            raise AssertionError("read past an oversized announcement")
        chunk, self.chunk = self.chunk, None
        return chunk


async def test_identify_refuses_an_oversized_announcement_before_buffering() -> None:
    from engine.net.identify import read_identify
    from engine.net.protobuf import MAX_IDENTIFY_SIZE
    from engine.varint import encode_uvarint

    stream = _OneChunkStream(encode_uvarint(MAX_IDENTIFY_SIZE + 1) + b"\x0a")
    with pytest.raises(RemoteProtocolError, match="too large"):
        await read_identify(stream)  # type: ignore[arg-type]
    assert stream.reads == 1
