"""Property tests of the sans-IO yamux session: fuzzed input, window accounting, delivery."""

from __future__ import annotations

import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import MuxerError
from engine.net.yamux import (
    HEADER_SIZE,
    DataReceived,
    Event,
    FrameHeader,
    FrameType,
    SendWindowAvailable,
    StreamEnded,
    YamuxSession,
)

KiB = 1024
WINDOW = 256 * KiB


def check_invariants(s: YamuxSession) -> None:
    # Window accounting never negative; the peer's credit plus unread data never exceeds
    # the window; nothing but a partial header is ever buffered by the parser.
    assert len(s._hdr_buf) < HEADER_SIZE
    assert 0 <= s._payload_left <= s.window_size
    for rec in s._streams.values():
        assert rec.send_window >= 0
        assert rec.recv_window >= 0
        assert rec.unconsumed >= 0
        in_flight = s._payload_left if s._payload_stream is rec else 0
        assert rec.recv_window + rec.unconsumed + in_flight <= s.window_size
    assert s.num_streams <= 2 * s.max_streams


def feed(s: YamuxSession, data: bytes, cuts: list[int]) -> list[Event]:
    events: list[Event] = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        events += s.receive_data(data[a:b])
        check_invariants(s)
    return events


frame_types = st.integers(0, 4)
flags = st.sampled_from([0, 1, 2, 4, 8, 1 | 4, 1 | 8, 2 | 4, 15, 0xFFFF])
stream_ids = st.sampled_from([0, 1, 2, 3, 4, 5, 0xFFFFFFFF])
lengths = st.one_of(st.integers(0, 64), st.sampled_from([WINDOW, WINDOW + 1, 0xFFFFFFFF]))


@st.composite
def plausible_frames(draw: st.DrawFn) -> bytes:
    """Frames that are mostly well-formed, so the fuzzer reaches deep states."""
    out = []
    for _ in range(draw(st.integers(1, 12))):
        version = draw(st.sampled_from([0, 0, 0, 0, 1]))
        ftype = draw(frame_types)
        fl = draw(flags)
        sid = draw(stream_ids)
        length = draw(lengths)
        out.append(struct.pack(">BBHII", version, ftype, fl, sid, length))
        if ftype == 0 and length <= 64:
            out.append(draw(st.binary(min_size=length, max_size=length)))
    return b"".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    is_client=st.booleans(),
    data=st.one_of(st.binary(max_size=200), plausible_frames()),
    cuts=st.lists(st.integers(0, 1000), max_size=6),
    eof=st.booleans(),
)
def test_random_bytes_give_muxer_error_only(
    is_client: bool, data: bytes, cuts: list[int], eof: bool
) -> None:
    s = YamuxSession(is_client, max_streams=2)
    try:
        feed(s, data, cuts)
        if eof:
            s.receive_eof()
    except MuxerError:
        # The session is dead, says so again, and only a GoAway can go out.
        assert s.error is not None
        out = s.data_to_send()
        assert out == struct.pack(">BBHII", 0, 3, 0, 0, 1)
    else:
        # Anything queued in answer is a sequence of well-formed control frames.
        out = s.data_to_send()
        assert len(out) % HEADER_SIZE == 0
        for pos in range(0, len(out), HEADER_SIZE):
            h = FrameHeader.parse(out[pos : pos + HEADER_SIZE])
            assert h.type != FrameType.DATA
        check_invariants(s)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n_streams=st.integers(1, 3),
    window=st.sampled_from([WINDOW, 2 * WINDOW]),
    max_frame=st.sampled_from([997, 16 * KiB, 64 * KiB]),
)
def test_random_interleavings_deliver_all_bytes_in_order(
    data: st.DataObject, n_streams: int, window: int, max_frame: int
) -> None:
    client = YamuxSession(True, window_size=window, max_frame_payload=max_frame)
    server = YamuxSession(False, window_size=window, max_frame_payload=max_frame)
    ids = [client.open_stream() for _ in range(n_streams)]
    pattern = bytes(range(251)) * 3000  # 753,000 bytes, period coprime to frame sizes
    payload = {sid: pattern[sid : sid + data.draw(st.integers(0, 600_000))] for sid in ids}
    sent = dict.fromkeys(ids, 0)
    received: dict[int, bytearray] = {sid: bytearray() for sid in ids}
    unread = dict.fromkeys(ids, 0)
    ended: set[int] = set()
    closed: set[int] = set()

    def maybe_close(sid: int) -> None:
        if sent[sid] == len(payload[sid]) and sid not in closed:
            client.close_stream(sid)
            closed.add(sid)

    wire_c2s = bytearray()
    wire_s2c = bytearray()

    def deliver_server(chunk: bytes) -> None:
        for ev in server.receive_data(chunk):
            if isinstance(ev, DataReceived):
                received[ev.stream_id] += ev.data
                unread[ev.stream_id] += len(ev.data)
            elif isinstance(ev, StreamEnded):
                ended.add(ev.stream_id)
        check_invariants(server)

    for _ in range(400):
        if (
            all(sent[s] == len(payload[s]) for s in ids)
            and not wire_c2s
            and not wire_s2c
            and all(unread[s] == 0 for s in ids)
        ):
            break
        op = data.draw(st.integers(0, 3))
        sid = data.draw(st.sampled_from(ids))
        if op == 0 and sent[sid] < len(payload[sid]):
            size = data.draw(st.integers(1, 200_000))
            chunk = payload[sid][sent[sid] : sent[sid] + size]
            taken = client.send_data(sid, chunk)
            assert 0 <= taken <= len(chunk)
            sent[sid] += taken
            maybe_close(sid)
            wire_c2s += client.data_to_send()
        elif op == 1 and wire_c2s:
            n = data.draw(st.integers(1, len(wire_c2s)))
            deliver_server(bytes(wire_c2s[:n]))
            del wire_c2s[:n]
        elif op == 2 and unread[sid]:
            n = data.draw(st.integers(1, unread[sid]))
            server.consume(sid, n)
            unread[sid] -= n
            wire_s2c += server.data_to_send()
        else:
            # Flush everything pending in both directions and read everything.
            wire_c2s += client.data_to_send()
            deliver_server(bytes(wire_c2s))
            wire_c2s.clear()
            for s in ids:
                if unread[s]:
                    server.consume(s, unread[s])
                    unread[s] = 0
            wire_s2c += server.data_to_send()
            for ev in client.receive_data(bytes(wire_s2c)):
                assert not isinstance(ev, DataReceived)
                if isinstance(ev, SendWindowAvailable):
                    assert ev.window > 0
            wire_s2c.clear()
            check_invariants(client)
    # Drain fully: send everything that is left with unlimited reading.
    stalls = 0
    while stalls < 2:  # two rounds without progress: done, or flow control is stuck
        progress = False
        for s in ids:
            if sent[s] < len(payload[s]):
                taken = client.send_data(s, payload[s][sent[s] :])
                if taken:
                    progress = True
                sent[s] += taken
            maybe_close(s)
        deliver_server(bytes(wire_c2s) + client.data_to_send())
        wire_c2s.clear()
        for s in ids:
            if unread[s]:
                server.consume(s, unread[s])
                unread[s] = 0
        back = bytes(wire_s2c) + server.data_to_send()
        wire_s2c.clear()
        client.receive_data(back)
        stalls = 0 if progress else stalls + 1
    for s in ids:
        assert bytes(received[s]) == payload[s]
        assert s in ended
