"""Unit tests of the sans-IO yamux session (engine.net.yamux)."""

from __future__ import annotations

import struct

import pytest

from engine.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MuxerError,
    StreamLimitError,
)
from engine.net.yamux import (
    DEFAULT_MAX_FRAME_PAYLOAD,
    HEADER_SIZE,
    INITIAL_WINDOW,
    STREAM_TRANSITIONS,
    DataReceived,
    Event,
    Flag,
    FrameHeader,
    FrameType,
    GoAwayCode,
    GoAwayReceived,
    PingReceived,
    PongReceived,
    SendWindowAvailable,
    StreamEnded,
    StreamInput,
    StreamOpened,
    StreamReset,
    StreamState,
    YamuxSession,
)

KiB = 1024


def hdr(ftype: int, flags: int, stream_id: int, length: int, version: int = 0) -> bytes:
    return struct.pack(">BBHII", version, ftype, flags, stream_id, length)


def frames(data: bytes) -> list[FrameHeader]:
    """Split serialized frames into headers (payloads skipped)."""
    out = []
    pos = 0
    while pos < len(data):
        h = FrameHeader.parse(data[pos : pos + HEADER_SIZE])
        out.append(h)
        pos += HEADER_SIZE + (h.length if h.type == FrameType.DATA else 0)
    assert pos == len(data)
    return out


class Pair:
    """Two sessions connected in memory (h11's ConnectionPair)."""

    def __init__(self, **kw: int) -> None:
        self.client = YamuxSession(True, **kw)
        self.server = YamuxSession(False, **kw)

    def peer(self, side: YamuxSession) -> YamuxSession:
        return self.server if side is self.client else self.client

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Exchange bytes until both are quiet; return (client events, server events)."""
        ce: list[Event] = []
        se: list[Event] = []
        for _ in range(100):
            c2s = self.client.data_to_send()
            s2c = self.server.data_to_send()
            if not c2s and not s2c:
                return ce, se
            se += self.server.receive_data(c2s)
            ce += self.client.receive_data(s2c)
        raise AssertionError("no quiescence")


def data_of(events: list[Event], stream_id: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id
    )


# -- frame header ---------------------------------------------------------------------------


def test_header_roundtrip() -> None:
    h = FrameHeader(FrameType.WINDOW_UPDATE, Flag.SYN | Flag.ACK, 7, 12345)
    raw = h.serialize()
    assert raw == bytes.fromhex("00 01 0003 00000007 00003039")
    assert FrameHeader.parse(raw) == h


@pytest.mark.parametrize(
    "raw",
    [b"\x00" * 11, hdr(0, 0, 1, 0, version=1), hdr(4, 0, 1, 0)],
)
def test_header_parse_rejects(raw: bytes) -> None:
    with pytest.raises(MuxerError):
        FrameHeader.parse(raw)


def test_constructor_limits() -> None:
    with pytest.raises(ValueError, match="window_size"):
        YamuxSession(True, window_size=INITIAL_WINDOW - 1)
    with pytest.raises(ValueError, match="max_streams"):
        YamuxSession(True, max_streams=0)
    with pytest.raises(ValueError, match="max_frame_payload"):
        YamuxSession(True, max_frame_payload=0)


# -- opening --------------------------------------------------------------------------------


def test_stream_id_parity_and_syn_ack() -> None:
    p = Pair()
    assert [p.client.open_stream(), p.client.open_stream()] == [1, 3]
    assert [p.server.open_stream(), p.server.open_stream()] == [2, 4]
    syn = frames(p.client.data_to_send())
    assert [(f.type, f.flags, f.stream_id, f.length) for f in syn] == [
        (FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0),
        (FrameType.WINDOW_UPDATE, Flag.SYN, 3, 0),
    ]
    events = p.server.receive_data(b"".join(f.serialize() for f in syn))
    assert events == [StreamOpened(1), StreamOpened(3)]
    acks = frames(p.server.data_to_send())
    assert [(f.type, f.flags, f.stream_id) for f in acks][-2:] == [
        (FrameType.WINDOW_UPDATE, Flag.ACK, 1),
        (FrameType.WINDOW_UPDATE, Flag.ACK, 3),
    ]


def test_data_flows_both_ways_and_syn_on_data_frame_accepted() -> None:
    p = Pair()
    sid = p.client.open_stream()
    assert p.client.send_data(sid, b"hello") == 5
    ce, se = p.pump()
    assert se == [StreamOpened(sid), DataReceived(sid, b"hello")]
    assert p.server.send_data(sid, b"world") == 5
    ce, se = p.pump()
    assert data_of(ce, sid) == b"world"
    # A peer may open with a Data|SYN frame carrying payload.
    s = YamuxSession(False)
    ev = s.receive_data(hdr(0, Flag.SYN, 5, 3) + b"abc")
    assert ev == [StreamOpened(5), DataReceived(5, b"abc")]


def test_larger_window_is_announced_in_syn_and_ack() -> None:
    p = Pair(window_size=1024 * KiB)
    sid = p.client.open_stream()
    ce, se = p.pump()
    extra = 1024 * KiB - INITIAL_WINDOW
    assert SendWindowAvailable(sid, 1024 * KiB) in ce
    assert SendWindowAvailable(sid, 1024 * KiB) in se
    assert p.client.send_window(sid) == p.server.send_window(sid) == INITIAL_WINDOW + extra


def test_syn_with_our_parity_or_duplicate_is_fatal() -> None:
    s = YamuxSession(True)  # client: peer must use even ids
    with pytest.raises(MuxerError):
        s.receive_data(hdr(1, Flag.SYN, 1, 0))
    assert frames(s.data_to_send()) == [
        FrameHeader(FrameType.GO_AWAY, Flag.NONE, 0, GoAwayCode.PROTOCOL_ERROR)
    ]
    s = YamuxSession(True)
    s.receive_data(hdr(1, Flag.SYN, 2, 0))
    with pytest.raises(MuxerError):
        s.receive_data(hdr(1, Flag.SYN, 2, 0))


def test_stream_frame_on_session_id_is_fatal() -> None:
    with pytest.raises(MuxerError):
        YamuxSession(False).receive_data(hdr(0, 0, 0, 0))


def test_dead_session_keeps_raising_and_refuses_local_ops() -> None:
    s = YamuxSession(False)
    sid = s.open_stream()
    with pytest.raises(MuxerError) as first:
        s.receive_data(hdr(0, 0, 1, 0, version=9))
    with pytest.raises(MuxerError) as again:
        s.receive_data(b"")
    assert again.value is first.value is s.error
    with pytest.raises(ConnectionClosedError):
        s.open_stream()
    with pytest.raises(ConnectionClosedError):
        s.send_data(sid, b"x")
    with pytest.raises(ConnectionClosedError):
        s.ping()
    s.reset_stream(sid)
    # Only the GoAway goes out after the failure.
    assert frames(s.data_to_send()) == [
        FrameHeader(FrameType.GO_AWAY, Flag.NONE, 0, GoAwayCode.PROTOCOL_ERROR)
    ]


# -- limits ---------------------------------------------------------------------------------


def test_inbound_stream_limit_refuses_with_rst() -> None:
    server = YamuxSession(False, max_streams=2)
    client = YamuxSession(True, max_streams=10)
    ids = [client.open_stream() for _ in range(3)]
    client.send_data(ids[2], b"payload-for-refused")
    ev = server.receive_data(client.data_to_send())
    assert ev == [StreamOpened(ids[0]), StreamOpened(ids[1])]
    assert server.refused_streams == 1
    assert server.num_streams == 2
    out = server.data_to_send()
    assert FrameHeader(FrameType.WINDOW_UPDATE, Flag.RST, ids[2], 0) in frames(out)
    cev = client.receive_data(out)
    assert StreamReset(ids[2], refused=True) in cev
    assert client.stream_state(ids[2]) is None
    # Closing one frees a slot.
    server.reset_stream(ids[0])
    client.receive_data(server.data_to_send())
    sid = client.open_stream()
    assert server.receive_data(client.data_to_send()) == [StreamOpened(sid)]


def test_outbound_stream_limit_raises() -> None:
    s = YamuxSession(True, max_streams=2)
    a = s.open_stream()
    s.open_stream()
    with pytest.raises(StreamLimitError):
        s.open_stream()
    s.reset_stream(a)
    s.open_stream()


def test_stream_ids_exhausted() -> None:
    s = YamuxSession(True)
    s._next_id = 0xFFFFFFFF
    assert s.open_stream() == 0xFFFFFFFF
    with pytest.raises(StreamLimitError):
        s.open_stream()


# -- flow control ---------------------------------------------------------------------------


def test_send_window_limits_send_and_window_update_replenishes() -> None:
    p = Pair()
    sid = p.client.open_stream()
    p.pump()
    big = bytes(INITIAL_WINDOW + 1000)
    assert p.client.send_data(sid, big) == INITIAL_WINDOW
    assert p.client.send_window(sid) == 0
    assert p.client.send_data(sid, b"more") == 0
    ce, se = p.pump()
    assert len(data_of(se, sid)) == INITIAL_WINDOW
    assert p.server.receive_window(sid) == 0
    # Consuming less than half a window sends nothing.
    p.server.consume(sid, INITIAL_WINDOW // 2 - 1)
    assert p.server.data_to_send() == b""
    p.server.consume(sid, 1)
    ce, se = p.pump()
    assert ce == [SendWindowAvailable(sid, INITIAL_WINDOW // 2)]
    assert p.client.send_window(sid) == INITIAL_WINDOW // 2
    p.server.consume(sid, INITIAL_WINDOW // 2)
    ce, se = p.pump()
    assert ce == [SendWindowAvailable(sid, INITIAL_WINDOW)]


def test_consume_more_than_delivered_is_local_error() -> None:
    p = Pair()
    sid = p.client.open_stream()
    p.client.send_data(sid, b"abc")
    p.pump()
    with pytest.raises(LocalProtocolError):
        p.server.consume(sid, 4)
    with pytest.raises(LocalProtocolError):
        p.server.consume(sid, -1)
    p.server.consume(12345, 1)  # unknown stream: ignored


def test_data_frames_split_at_max_frame_payload() -> None:
    s = YamuxSession(True, max_frame_payload=1000)
    sid = s.open_stream()
    s.data_to_send()
    assert s.send_data(sid, bytes(2500)) == 2500
    assert [f.length for f in frames(s.data_to_send())] == [1000, 1000, 500]
    assert s.bytes_to_send == 0
    big = YamuxSession(True)
    sid = big.open_stream()
    big.data_to_send()
    big.send_data(sid, bytes(INITIAL_WINDOW))
    assert big.bytes_to_send == INITIAL_WINDOW + HEADER_SIZE * 5
    assert max(f.length for f in frames(big.data_to_send())) == DEFAULT_MAX_FRAME_PAYLOAD


def test_send_copies_mutable_buffers() -> None:
    s = YamuxSession(True)
    sid = s.open_stream()
    s.data_to_send()
    buf = bytearray(b"abcd")
    s.send_data(sid, buf)
    buf[:] = b"zzzz"
    assert s.data_to_send()[HEADER_SIZE:] == b"abcd"


def test_peer_exceeding_window_is_fatal_before_payload() -> None:
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0))
    s.data_to_send()
    with pytest.raises(MuxerError) as exc:
        s.receive_data(hdr(0, 0, 1, INITIAL_WINDOW + 1))  # header only: no payload yet
    assert exc.value.details["window"] == INITIAL_WINDOW
    assert frames(s.data_to_send())[-1].type == FrameType.GO_AWAY


def test_window_exceeded_across_frames() -> None:
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0))
    s.receive_data(hdr(0, 0, 1, INITIAL_WINDOW - 10) + bytes(INITIAL_WINDOW - 10))
    with pytest.raises(MuxerError):
        s.receive_data(hdr(0, 0, 1, 11))


def test_unknown_stream_data_is_discarded_but_bounded() -> None:
    s = YamuxSession(False)
    assert s.receive_data(hdr(0, 0, 9, 5) + b"hello" + hdr(2, Flag.SYN, 0, 1)) == [PingReceived(1)]
    assert s.receive_data(hdr(1, 0, 9, 100) + hdr(1, Flag.RST, 9, 0)) == []
    with pytest.raises(MuxerError):
        s.receive_data(hdr(0, 0, 9, INITIAL_WINDOW + 1))


def test_window_update_overflow_is_fatal() -> None:
    s = YamuxSession(True)
    sid = s.open_stream()
    with pytest.raises(MuxerError):
        s.receive_data(hdr(1, 0, sid, 0xFFFFFFFF))


def test_payload_split_across_chunks_is_delivered_incrementally() -> None:
    s = YamuxSession(False)
    raw = hdr(0, Flag.SYN, 1, 10) + b"0123456789" + hdr(0, Flag.FIN, 1, 0)
    events: list[Event] = []
    for i in range(len(raw)):
        events += s.receive_data(raw[i : i + 1])
    assert events[0] == StreamOpened(1)
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"0123456789"
    assert events[-1] == StreamEnded(1)
    assert s.unconsumed(1) == 10


def test_consume_mid_frame_does_not_grant_the_undelivered_rest() -> None:
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0))
    s.data_to_send()
    ev = s.receive_data(hdr(0, 0, 1, 200 * KiB) + bytes(150 * KiB))
    assert sum(len(e.data) for e in ev if isinstance(e, DataReceived)) == 150 * KiB
    s.consume(1, 150 * KiB)
    # 50 KiB of the frame are still on their way: they are not credit to hand out again.
    assert frames(s.data_to_send()) == [
        FrameHeader(FrameType.WINDOW_UPDATE, Flag.NONE, 1, 150 * KiB)
    ]
    s.receive_data(bytes(50 * KiB))
    assert s.receive_window(1) + s.unconsumed(1) == INITIAL_WINDOW


def test_discarded_frame_returns_its_credit() -> None:
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0))
    s.data_to_send()
    s.close_read(1)
    assert s.receive_data(hdr(0, 0, 1, INITIAL_WINDOW) + bytes(INITIAL_WINDOW)) == []
    assert frames(s.data_to_send()) == [
        FrameHeader(FrameType.WINDOW_UPDATE, Flag.NONE, 1, INITIAL_WINDOW)
    ]


# -- half-close and reset -------------------------------------------------------------------


def test_half_close_then_close() -> None:
    p = Pair()
    sid = p.client.open_stream()
    p.client.send_data(sid, b"req")
    p.client.close_stream(sid)
    assert p.client.stream_state(sid) is StreamState.LOCAL_CLOSED
    with pytest.raises(LocalProtocolError):
        p.client.send_data(sid, b"x")
    with pytest.raises(LocalProtocolError):
        p.client.close_stream(sid)
    _, se = p.pump()
    assert se == [StreamOpened(sid), DataReceived(sid, b"req"), StreamEnded(sid)]
    assert p.server.stream_state(sid) is StreamState.REMOTE_CLOSED
    # Server can still answer after the client's FIN.
    assert p.server.send_data(sid, b"resp") == 4
    p.server.consume(sid, 3)
    p.server.close_stream(sid)
    assert p.server.stream_state(sid) is None  # closed and fully consumed: gone
    ce, _ = p.pump()
    assert ce == [DataReceived(sid, b"resp"), StreamEnded(sid)]
    # Closed but unread data keeps the stream in the table until consumed.
    assert p.client.stream_state(sid) is StreamState.CLOSED
    assert p.client.num_streams == 1
    p.client.consume(sid, 4)
    assert p.client.num_streams == 0


def test_fin_carried_on_data_frame_is_delivered_after_data() -> None:
    s = YamuxSession(False)
    ev = s.receive_data(hdr(0, Flag.SYN | Flag.FIN, 1, 2) + b"ok")
    assert ev == [StreamOpened(1), DataReceived(1, b"ok"), StreamEnded(1)]


def test_data_after_fin_and_double_fin_are_fatal() -> None:
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN | Flag.FIN, 1, 0))
    with pytest.raises(MuxerError):
        s.receive_data(hdr(0, 0, 1, 1) + b"x")
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN | Flag.FIN, 1, 0))
    with pytest.raises(MuxerError):
        s.receive_data(hdr(1, Flag.FIN, 1, 0))


def test_remote_fin_does_not_shrink_our_send_side() -> None:
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN | Flag.FIN, 1, 0))
    assert s.send_window(1) == INITIAL_WINDOW
    # Window updates after FIN still count.
    assert s.receive_data(hdr(1, 0, 1, 10)) == [SendWindowAvailable(1, INITIAL_WINDOW + 10)]


def test_reset_by_peer_and_by_us() -> None:
    p = Pair()
    sid = p.client.open_stream()
    p.client.send_data(sid, b"abc")
    p.pump()
    p.server.reset_stream(sid)
    assert p.server.stream_state(sid) is None
    p.server.reset_stream(sid)  # idempotent
    ce, _ = p.pump()
    assert ce == [StreamReset(sid, refused=False)]
    assert p.client.stream_state(sid) is None
    with pytest.raises(LocalProtocolError):
        p.client.send_data(sid, b"x")
    # Late frames for the reset stream are ignored.
    assert p.client.receive_data(hdr(0, 0, sid, 3) + b"xyz") == []


def test_reset_while_payload_in_flight_discards_rest() -> None:
    s = YamuxSession(False)
    ev = s.receive_data(hdr(0, Flag.SYN, 1, 10) + b"01234")
    assert ev[-1] == DataReceived(1, b"01234")
    s.reset_stream(1)
    assert s.receive_data(b"56789" + hdr(2, Flag.SYN, 0, 3)) == [PingReceived(3)]


def test_rst_on_data_frame_discards_payload() -> None:
    s = YamuxSession(False)
    s.receive_data(hdr(1, Flag.SYN, 1, 0))
    ev = s.receive_data(hdr(0, Flag.RST, 1, 3) + b"abc" + hdr(2, Flag.ACK, 0, 7))
    assert ev == [StreamReset(1), PongReceived(7)]


def test_close_read_discards_and_keeps_credit_flowing() -> None:
    p = Pair()
    sid = p.client.open_stream()
    p.pump()
    p.client.send_data(sid, bytes(100 * KiB))
    p.pump()
    p.server.close_read(sid)
    assert p.server.unconsumed(sid) == 0
    assert p.client.send_data(sid, bytes(INITIAL_WINDOW)) == INITIAL_WINDOW - 100 * KiB
    ce, se = p.pump()
    assert not [e for e in se if isinstance(e, DataReceived)]
    assert any(isinstance(e, SendWindowAvailable) for e in ce)
    p.client.close_stream(sid)
    _, se = p.pump()
    assert se == []  # no StreamEnded once the app stopped reading
    p.server.close_stream(sid)
    assert p.server.num_streams == 0


# -- ping and go away -----------------------------------------------------------------------


def test_ping_is_answered_automatically() -> None:
    p = Pair()
    o1 = p.client.ping()
    o2 = p.client.ping()
    assert o1 != o2
    ce, se = p.pump()
    assert se == [PingReceived(o1), PingReceived(o2)]
    assert ce == [PongReceived(o1), PongReceived(o2)]


def test_go_away() -> None:
    p = Pair()
    sid = p.client.open_stream()
    p.pump()
    p.server.go_away(GoAwayCode.NORMAL)
    p.server.go_away()  # once only
    ce, _ = p.pump()
    assert ce == [GoAwayReceived(0)]
    assert p.client.remote_go_away == 0
    with pytest.raises(ConnectionClosedError):
        p.client.open_stream()
    with pytest.raises(ConnectionClosedError):
        p.server.open_stream()
    # Existing streams keep working.
    p.client.send_data(sid, b"still")
    _, se = p.pump()
    assert data_of(se, sid) == b"still"
    # A SYN after our GoAway is refused with RST.
    raw = hdr(1, Flag.SYN, 101, 0)
    assert p.server.receive_data(raw) == []
    assert frames(p.server.data_to_send()) == [
        FrameHeader(FrameType.WINDOW_UPDATE, Flag.RST, 101, 0)
    ]


def test_receive_eof() -> None:
    s = YamuxSession(False)
    s.receive_eof()  # clean
    s.receive_data(hdr(0, Flag.SYN, 1, 5) + b"ab")
    with pytest.raises(MuxerError):
        s.receive_eof()
    s = YamuxSession(False)
    s.receive_data(b"\x00\x01")
    with pytest.raises(MuxerError):
        s.receive_eof()


# -- state table ----------------------------------------------------------------------------


def test_transition_table_is_complete_for_resets_and_terminal_states() -> None:
    for state in StreamState:
        if state is not StreamState.RESET:
            assert STREAM_TRANSITIONS[(state, StreamInput.LOCAL_RST)] is StreamState.RESET
            assert STREAM_TRANSITIONS[(state, StreamInput.REMOTE_RST)] is StreamState.RESET
    for inp in StreamInput:
        assert (StreamState.RESET, inp) not in STREAM_TRANSITIONS
    assert (StreamState.CLOSED, StreamInput.REMOTE_FIN) not in STREAM_TRANSITIONS
    assert (StreamState.LOCAL_CLOSED, StreamInput.LOCAL_FIN) not in STREAM_TRANSITIONS
