"""The fault core and the frame trackers, without sockets."""

from __future__ import annotations

import random

import pytest

from engine.framing import encode_frame

from .faulty_proxy import (
    Close,
    FaultInjector,
    Forward,
    GlueberryFrameTracker,
    Kill,
    NoiseFrameTracker,
    Way,
)


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, 40)
        out.append(data[pos : pos + size])
        pos += size
    return out


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _noise_stream(bodies: list[bytes]) -> tuple[bytes, set[int]]:
    head = b""
    for line in (b"/multistream/1.0.0\n", b"/noise\n"):
        head += _uvarint(len(line)) + line
    data, body_positions = bytearray(head), set()
    for body in bodies:
        data += len(body).to_bytes(2, "big")
        body_positions |= set(range(len(data), len(data) + len(body)))
        data += body
    return bytes(data), body_positions


@pytest.mark.parametrize("seed", range(20))
def test_noise_tracker_finds_exactly_the_frame_bodies(seed: int) -> None:
    rng = random.Random(seed)
    bodies = [rng.randbytes(rng.choice([0, 1, 32, 200, 300])) for _ in range(8)]
    data, expected = _noise_stream(bodies)
    tracker = NoiseFrameTracker()
    found: set[int] = set()
    offset = 0
    indexes = set()
    for chunk in _chunks(data, rng):
        for span in tracker.feed(chunk):
            found |= set(range(offset + span.start, offset + span.end))
            indexes.add(span.index)
        offset += len(chunk)
    assert found == expected
    assert tracker.frames == len(bodies)
    assert indexes == {i for i, b in enumerate(bodies) if b}


@pytest.mark.parametrize("seed", range(20))
def test_glueberry_tracker_finds_exactly_the_payloads(seed: int) -> None:
    rng = random.Random(seed)
    payloads = [rng.randbytes(rng.choice([1, 28, 127, 128, 300, 20_000])) for _ in range(6)]
    data = bytearray()
    expected: set[int] = set()
    for p in payloads:
        frame = encode_frame(p)
        start = len(data) + len(frame) - len(p)
        expected |= set(range(start, start + len(p)))
        data += frame
    tracker = GlueberryFrameTracker()
    found: set[int] = set()
    offset = 0
    for chunk in _chunks(bytes(data), rng):
        for span in tracker.feed(chunk):
            found |= set(range(offset + span.start, offset + span.end))
        offset += len(chunk)
    assert found == expected
    assert tracker.frames == len(payloads)


def test_latency_never_reorders_and_stays_in_range() -> None:
    core = FaultInjector(3)
    core.set_latency(0.05, 0.2)
    link = core.new_link()
    last = 0.0
    for i in range(200):
        now = i * 0.001
        (action,) = core.on_data(link, Way.UP, b"x", now)
        assert isinstance(action, Forward)
        assert action.at >= last
        assert action.at <= now + 0.2
        last = action.at


def test_drop_forwards_the_prefix_then_kills() -> None:
    core = FaultInjector()
    link = core.new_link()
    core.arm_drop(10, Way.UP)
    assert core.on_data(link, Way.DOWN, b"d" * 50, 0)[0] == Forward(b"d" * 50, 0)
    assert core.on_data(link, Way.UP, b"abcd", 0) == [Forward(b"abcd", 0)]
    assert core.on_data(link, Way.UP, b"efgh", 0) == [Forward(b"efgh", 0)]
    actions = core.on_data(link, Way.UP, b"ijklmn", 0)
    assert actions[0] == Forward(b"ij", 0)
    assert isinstance(actions[1], Kill)
    assert core.kills == 1
    assert not core.drop_armed
    assert core.on_data(link, Way.UP, b"more", 0) == []  # the link is dead


def test_partition_holds_everything_and_heal_releases_in_order() -> None:
    core = FaultInjector()
    link = core.new_link()
    core.partition()
    assert core.on_data(link, Way.UP, b"one", 1.0) == []
    assert core.on_data(link, Way.UP, b"two", 1.0) == []
    assert core.on_eof(link, Way.UP, 1.0) == []
    assert core.on_data(link, Way.DOWN, b"back", 1.0) == []
    released = {way: actions for _, way, actions in core.heal(2.0)}
    assert released[Way.UP] == [Forward(b"one", 2.0), Forward(b"two", 2.0), Close(2.0)]
    assert released[Way.DOWN] == [Forward(b"back", 2.0)]
    assert core.on_data(link, Way.UP, b"after", 3.0) == [Forward(b"after", 3.0)]


def test_heal_with_forget_leaves_old_links_dead_and_new_ones_working() -> None:
    core = FaultInjector()
    old = core.new_link()
    core.partition()
    core.on_data(old, Way.UP, b"held", 0)
    assert core.heal(1.0, forget=True) == []
    assert core.on_data(old, Way.UP, b"x", 1.0) == []
    assert core.on_eof(old, Way.DOWN, 1.0, reset=True) == []
    new = core.new_link()
    assert core.on_data(new, Way.UP, b"y", 1.0) == [Forward(b"y", 1.0)]


def test_corruption_flips_one_bit_of_one_body_byte() -> None:
    core = FaultInjector(5)
    link = core.new_link()
    data, bodies = _noise_stream([b"\x00" * 48, b"\x00" * 64, b"\x00" * 80])
    core.arm_corruption(Way.UP, min_frame=1)
    (action,) = core.on_data(link, Way.UP, data, 0)
    assert isinstance(action, Forward)
    diff = [i for i in range(len(data)) if data[i] != action.data[i]]
    assert len(diff) == 1
    assert diff[0] in bodies
    assert diff[0] >= len(data) - 80 - 2 - 64  # not in frame 0
    assert bin(data[diff[0]] ^ action.data[diff[0]]).count("1") == 1
    assert core.corruptions == 1
    assert not core.corruption_armed
