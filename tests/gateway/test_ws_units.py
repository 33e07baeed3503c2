"""Sans-IO parts of the realtime channels: frames, accounting, limits, keys, SSE, feed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.channels import frames
from api.channels.codes import MAX_REASON_BYTES, CloseCode, close_reason
from api.channels.event_feed import EventCursor, event_feed, parse_filter
from api.channels.idempotency import IdempotencyCache, KeyState
from api.channels.inbound import FrameRateLimiter
from api.channels.outbound import OutboundTracker, WriteClock
from api.channels.sse import sse_event
from engine.connection_state import ConnectionState
from engine.errors import InvalidPeerIdError
from engine.events import EventFilter, EventHub
from engine.node import Node

from .ws_kit import AsyncApiContract, build_node, connect_nodes

CONTRACT = AsyncApiContract()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- outbound accounting ---------------------------------------------------------------------


def test_tracker_lag_once_with_hysteresis() -> None:
    tracker = OutboundTracker(capacity=8, lag_threshold=4, max_dropped=0)
    assert tracker.before_send(1, 3, 0) == []
    assert tracker.before_send(2, 4, 0) == [frames.lag(4, 8)]
    assert tracker.before_send(3, 5, 0) == []  # still lagging: no repeat
    assert tracker.before_send(4, 3, 0) == []  # above half: still lagging
    assert tracker.before_send(5, 2, 0) == []  # drained to half: armed again
    assert tracker.before_send(6, 4, 0) == [frames.lag(4, 8)]


def test_tracker_reports_drops_with_positions_and_closes_past_the_limit() -> None:
    tracker = OutboundTracker(capacity=4, lag_threshold=4, max_dropped=2)
    tracker.before_send(10, 0, 0)
    tracker.sent(10)
    out = tracker.before_send(14, 0, 2)
    assert out == [frames.dropped(2, 2, 1, 10, 14, 2)]
    assert not tracker.exceeded
    tracker.sent(14)
    assert tracker.before_send(20, 0, 3)[0]["count"] == 1
    assert tracker.exceeded
    assert tracker.abandon(3) == [frames.dropped(3, 6, 2, 14, None, 2)]
    assert tracker.abandon(0) == []
    assert "6 messages dropped" in tracker.close_reason()


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=60))
def test_delivered_plus_dropped_equals_published(steps: list[tuple[int, int]]) -> None:
    """Against the engine's real bounded subscription: nothing is lost unreported."""
    hub: EventHub[int] = EventHub(buffer_size=4)
    sub = hub.subscribe()
    tracker = OutboundTracker(capacity=4, lag_threshold=2, max_dropped=10**9)
    published = delivered = reported = 0
    for publish, consume in steps:
        for _ in range(publish):
            published += 1
            hub.publish(published)
        for _ in range(consume):
            item = sub.get_nowait()
            if item is None:
                break
            for frame in tracker.before_send(item, sub.pending, sub.dropped):
                if frame["type"] == "dropped":
                    reported += frame["count"]
                    assert frame["after_seq"] < item == frame["before_seq"]
                CONTRACT.validate("stream", frame)
            tracker.sent(item)
            delivered += 1
    pending = sub.pending
    for frame in tracker.before_send(None, 0, sub.dropped):
        reported += frame["count"]
    assert delivered + reported + pending == published


def test_write_clock_detects_a_stalled_write() -> None:
    clock = WriteClock()
    assert not clock.stalled(100.0, 1.0)  # not writing
    clock.since = 100.0
    assert not clock.stalled(100.5, 1.0)
    assert clock.stalled(101.5, 1.0)
    clock.since = None
    assert not clock.stalled(200.0, 1.0)


# -- inbound rate limit ---------------------------------------------------------------------


def test_rate_limiter_refuses_over_burst_and_closes_when_persisting() -> None:
    clock = FakeClock()
    limiter = FrameRateLimiter(rate=10, burst=2, close_after=3, clock=clock)
    assert limiter.check().allowed
    assert limiter.check().allowed
    refused = limiter.check()
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.1)
    assert not refused.close
    clock.now += 0.15  # 1.5 tokens back: one allowed, the refusal streak ends
    assert limiter.check().allowed
    verdicts = [limiter.check() for _ in range(3)]
    assert [v.close for v in verdicts] == [False, False, True]
    with pytest.raises(ValueError, match="rate"):
        FrameRateLimiter(rate=0, burst=1, close_after=1)


# -- idempotency keys -----------------------------------------------------------------------


def test_idempotency_states_ttl_and_bound() -> None:
    clock = FakeClock()
    cache = IdempotencyCache(max_entries=2, ttl=10, clock=clock)
    assert cache.begin("o", "a") is KeyState.NEW
    assert cache.begin("o", "a") is KeyState.PENDING
    cache.done("o", "a")
    assert cache.begin("o", "a") is KeyState.DONE
    assert cache.begin("o", "b") is KeyState.NEW
    cache.forget("o", "b")  # a failed send may be retried with the same key
    assert cache.begin("o", "b") is KeyState.NEW
    cache.done("o", "b")
    clock.now += 11
    assert cache.begin("o", "a") is KeyState.NEW  # expired
    cache.done("o", "a")
    assert cache.begin("o", "c") is KeyState.NEW  # evicts the least recently used ("b")
    assert len(cache) == 2
    cache.done("o", "c")
    assert cache.begin("o", "b") is KeyState.NEW


def test_idempotency_in_flight_keys_are_never_evicted() -> None:
    cache = IdempotencyCache(max_entries=100, ttl=10, max_per_owner=2, clock=FakeClock())
    assert cache.begin("o", "a") is KeyState.NEW
    assert cache.begin("o", "b") is KeyState.NEW
    # The quota is all in flight: a new key is refused, nothing is evicted.
    assert cache.begin("o", "c") is KeyState.FULL
    assert cache.begin("o", "a") is KeyState.PENDING
    assert cache.begin("o", "b") is KeyState.PENDING
    assert (len(cache), cache.in_flight("o")) == (2, 2)
    cache.done("o", "a")
    assert cache.begin("o", "c") is KeyState.NEW  # evicts the completed "a" only
    assert cache.begin("o", "b") is KeyState.PENDING  # still in flight: no double send
    assert cache.begin("o", "a") is KeyState.FULL  # "a" was evicted; b and c in flight
    cache.forget("o", "b")
    cache.forget("o", "c")
    assert (len(cache), cache.in_flight("o")) == (0, 0)


def test_idempotency_quota_is_per_owner() -> None:
    cache = IdempotencyCache(max_entries=100, ttl=10, max_per_owner=3, clock=FakeClock())
    for key in ("x1", "x2"):
        assert cache.begin("victim", key) is KeyState.NEW
        cache.done("victim", key)
    # Another API key churning many keys evicts only its own.
    for i in range(50):
        assert cache.begin("noisy", i) is KeyState.NEW
        cache.done("noisy", i)
    assert cache.begin("victim", "x1") is KeyState.DONE
    assert cache.begin("victim", "x2") is KeyState.DONE
    assert len(cache) == 5


def test_idempotency_global_bound_spares_in_flight_and_small_owners() -> None:
    cache = IdempotencyCache(max_entries=4, ttl=10, max_per_owner=3, clock=FakeClock())
    assert cache.begin("a", 1) is KeyState.NEW  # in flight
    assert cache.begin("b", 1) is KeyState.NEW
    cache.done("b", 1)
    for key in (1, 2):
        assert cache.begin("c", key) is KeyState.NEW
        cache.done("c", key)
    # Full: the owner with the most completed keys ("c") gives up its oldest.
    assert cache.begin("a", 2) is KeyState.NEW
    assert cache.begin("b", 1) is KeyState.DONE
    assert cache.begin("c", 2) is KeyState.DONE
    assert cache.begin("a", 1) is KeyState.PENDING
    assert len(cache) == 4
    # Completed keys go one by one; then everything is in flight and nothing is evicted.
    assert cache.begin("d", 1) is KeyState.NEW
    assert cache.begin("e", 1) is KeyState.NEW
    assert cache.begin("f", 1) is KeyState.FULL
    assert cache.begin("c", 1) is KeyState.FULL  # c1 was evicted first
    for owner, key in (("a", 1), ("a", 2), ("d", 1), ("e", 1)):
        assert cache.begin(owner, key) is KeyState.PENDING
    assert len(cache) == 4


def test_idempotency_bounds_validated() -> None:
    with pytest.raises(ValueError, match="max_per_owner"):
        IdempotencyCache(max_entries=10, ttl=1, max_per_owner=0)


# -- frames ---------------------------------------------------------------------------------


def test_preformatted_ack_matches_encode() -> None:
    assert frames.ack_text(12) == frames.encode(frames.ack(12))


def test_stream_send_frames() -> None:
    frame = frames.parse_stream_frame('{"type": "send", "data": "aGk=", "key": "k"}')
    assert (frame.payload(), frame.key) == (b"hi", "k")
    for text, message in (
        ("[]", "JSON object"),
        ("{", "not valid JSON"),
        ('{"type": "send"}', "data"),
        ('{"type": "send", "data": "aGk=", "extra": 1}', "extra"),
    ):
        with pytest.raises(frames.FrameError, match=message):
            frames.parse_stream_frame(text)
    with pytest.raises(frames.FrameError, match="base64"):
        frames.parse_stream_frame('{"type": "send", "data": "!!"}').payload()


def test_handshake_commands_and_refs() -> None:
    cmd = frames.parse_handshake_command(
        '{"type": "prepare", "id": 1, "peer_id": "p", "streams": ["a"]}'
    )
    assert isinstance(cmd, frames.PrepareCommand)
    assert cmd.key_bytes() is None
    with pytest.raises(frames.FrameError, match="invalid field"):
        frames.parse_handshake_command('{"type": "dance", "id": 3}')
    assert frames.command_ref('{"type": "dance", "id": 3}') == 3
    assert frames.command_ref('{"id": true}') is None
    assert frames.command_ref("nope") is None


@given(st.text(max_size=200))
def test_parsers_never_raise_anything_but_frame_error(text: str) -> None:
    codes = []
    for parse in (frames.parse_stream_frame, frames.parse_handshake_command):
        try:
            parse(text)
        except frames.FrameError as exc:
            codes.append(exc.code)
    assert set(codes) <= {"bad_frame"}


def test_close_codes_and_reasons() -> None:
    assert {c.value for c in CloseCode} >= {4008, 4029, 4401, 4403}
    reason = close_reason("é" * 100)
    assert len(reason.encode()) <= MAX_REASON_BYTES
    assert reason == "é" * 61
    doc = CONTRACT.doc["info"]["description"]
    for code in CloseCode:
        assert f"| {code.value} |" in doc, code


def test_sse_encoding() -> None:
    event = {"type": "heartbeat", "last_event_id": 7}
    assert (
        sse_event(event)
        == f"id: 7\nevent: heartbeat\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
    )
    assert sse_event(frames.ready("events", last_event_id=3)).startswith("event: ready\n")


def test_cursor_and_filter_parsing() -> None:
    cursor = EventCursor(5)
    assert not cursor.admit(type("E", (), {"id": 5})())  # type: ignore[arg-type]
    assert cursor.admit(type("E", (), {"id": 6})())  # type: ignore[arg-type]
    cursor.advance(4)
    assert cursor.cursor == 6
    assert parse_filter([], ["established,cooldown", "connected"]).states == {
        ConnectionState.ESTABLISHED,
        ConnectionState.COOLDOWN,
        ConnectionState.CONNECTED,
    }
    with pytest.raises(ValueError, match="bogus"):
        parse_filter([], ["bogus"])
    with pytest.raises(InvalidPeerIdError):
        parse_filter(["nope"], [])


# -- the event feed against real nodes ------------------------------------------------------


async def _churn(node: Node, other: Node, times: int) -> None:
    for _ in range(times):
        await connect_nodes(node, other)
        with node.subscribe(EventFilter(peers={other.peer_id})) as sub:
            await node.disconnect(other.peer_id)
            while node.connection_state(other.peer_id) is not ConnectionState.DISCONNECTED:
                await anext(sub)


@pytest.mark.parametrize(("retention", "expect_reset"), [(1000, False), (3, True)])
async def test_feed_recovers_a_slow_clients_drops(
    tmp_path: Path, retention: int, expect_reset: bool
) -> None:
    """The feed's own subscription overflows while the client does not read: the gap is
    refilled from retention, or, when retention no longer has it, reset + snapshot."""
    node = build_node(tmp_path / "n", event_buffer_size=2, event_retention=retention)
    other = build_node(tmp_path / "o")
    await node.start()
    await other.start()
    try:
        feed = event_feed(node, EventFilter(), since=None, snapshot=False, heartbeat=30)
        ready = await anext(feed)
        start = ready["last_event_id"]
        await _churn(node, other, 3)  # ~12 events; the subscription keeps 2
        last = node.last_event_id
        got: list[dict[str, Any]] = []
        while True:
            frame = await anext(feed)
            got.append(frame)
            cursor = frame.get("id", frame.get("last_event_id", -1))
            if frame["type"] in ("event", "snapshot") and cursor >= last:
                break
        for frame in got:
            CONTRACT.validate("events", frame)
        kinds = [f["type"] for f in got]
        if expect_reset:
            assert kinds[:2] == ["reset", "snapshot"]
        else:
            assert set(kinds) == {"event"}
            assert [f["id"] for f in got] == list(range(start + 1, last + 1))
        await feed.aclose()
    finally:
        await other.stop()
        await node.stop()
