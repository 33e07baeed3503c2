"""Tests of engine.stats.StatsTracker: counters, snapshots, LRU eviction, TTL sweep."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.crypto.identity import Identity, PeerId
from engine.stats import OTHER_STREAMS, PeerStats, StatsTracker, StreamStats

PEERS: list[PeerId] = [Identity.generate().peer_id for _ in range(40)]
P1, P2, P3 = PEERS[:3]


def test_counters_and_snapshot() -> None:
    st_ = StatsTracker()
    st_.record_in(P1, "chat", 10, now=1.0)
    st_.record_in(P1, "chat", 5, now=2.0)
    st_.record_out(P1, "chat", 7, now=3.0)
    st_.record_out(P1, "files", 1000, now=4.0)
    st_.record_connect(P1, now=0.5)
    st_.record_ping(P1, 0.002, now=5.0)
    st_.record_decryption_error(P1, now=6.0)
    st_.record_drop(P1, "oversized", now=7.0)
    st_.record_drop(P1, "oversized", count=2, now=7.0)
    st_.record_drop(P1, "buffer_full", now=8.0)
    snap = st_.get(P1)
    assert snap == PeerStats(
        streams={
            "chat": StreamStats(messages_in=2, messages_out=1, bytes_in=15, bytes_out=7),
            "files": StreamStats(messages_out=1, bytes_out=1000),
        },
        messages_in=2,
        messages_out=2,
        bytes_in=15,
        bytes_out=1007,
        connect_count=1,
        connected=True,
        first_seen=1.0,
        last_activity=8.0,
        ping_rtt=0.002,
        decryption_errors=1,
        dropped={"oversized": 3, "buffer_full": 1},
    )
    assert st_.get(P2) is None
    assert P1 in st_
    assert len(st_) == 1


def test_snapshots_are_independent_of_later_updates() -> None:
    st_ = StatsTracker()
    st_.record_in(P1, "a", 1, now=1.0)
    st_.record_drop(P1, "x", now=1.0)
    snap = st_.get(P1)
    assert snap is not None
    st_.record_in(P1, "a", 1, now=2.0)
    st_.record_drop(P1, "x", now=2.0)
    assert snap.streams["a"].messages_in == 1
    assert snap.dropped == {"x": 1}
    snap.dropped["x"] = 99  # mutating a snapshot does not touch the tracker
    again = st_.get(P1)
    assert again is not None
    assert again.dropped == {"x": 2}


def test_connect_disconnect_cycle() -> None:
    st_ = StatsTracker()
    st_.record_disconnect(P1, now=1.0)  # untracked: ignored
    assert P1 not in st_
    for t in range(3):
        st_.record_connect(P1, now=float(t))
        st_.record_disconnect(P1, now=t + 0.5)
    snap = st_.get(P1)
    assert snap is not None
    assert (snap.connect_count, snap.connected, snap.last_activity) == (3, False, 2.5)


def test_default_clock_is_used_when_now_is_omitted() -> None:
    st_ = StatsTracker()
    st_.record_in(P1, "a", 1)
    snap = st_.get(P1)
    assert snap is not None
    assert snap.last_activity > 1_600_000_000


def test_lru_eviction_prefers_disconnected_then_stalest() -> None:
    st_ = StatsTracker(max_tracked_peers=3)
    st_.record_connect(P1, now=1.0)
    st_.record_in(P2, "a", 1, now=2.0)
    st_.record_connect(P3, now=3.0)
    st_.record_in(PEERS[3], "a", 1, now=4.0)  # evicts P2: the stalest disconnected one
    assert set(st_.all()) == {P1, P3, PEERS[3]}
    assert st_.evicted == 1
    st_.record_connect(PEERS[3], now=5.0)
    st_.record_in(PEERS[4], "a", 1, now=6.0)  # all connected: the stalest (P1) goes
    assert set(st_.all()) == {P3, PEERS[3], PEERS[4]}
    assert st_.evicted == 2


def test_activity_refreshes_lru_position() -> None:
    st_ = StatsTracker(max_tracked_peers=2)
    st_.record_in(P1, "a", 1, now=1.0)
    st_.record_in(P2, "a", 1, now=2.0)
    st_.record_out(P1, "a", 1, now=3.0)  # P1 is now the most recent
    st_.record_in(P3, "a", 1, now=4.0)
    assert list(st_.all()) == [P1, P3]


def test_sweep_removes_idle_disconnected_peers_only() -> None:
    st_ = StatsTracker(ttl=10.0)
    st_.record_in(P1, "a", 1, now=0.0)  # idle, disconnected -> swept
    st_.record_connect(P2, now=1.0)  # idle but connected -> kept
    st_.record_in(P3, "a", 1, now=15.0)  # recent -> kept
    assert st_.sweep(now=20.0) == 1
    assert set(st_.all()) == {P2, P3}
    st_.record_disconnect(P2, now=21.0)
    st_.record_in(P3, "a", 1, now=28.0)
    assert st_.sweep(now=30.0) == 0  # disconnect counts as activity
    assert st_.sweep(now=31.5) == 1
    assert set(st_.all()) == {P3}
    assert st_.sweep(now=100.0) == 1
    assert len(st_) == 0


def test_streams_per_peer_are_bounded() -> None:
    st_ = StatsTracker(max_streams_per_peer=2)
    for i in range(10):
        st_.record_in(P1, f"s{i}", 1, now=1.0)
    snap = st_.get(P1)
    assert snap is not None
    assert set(snap.streams) == {"s0", "s1", OTHER_STREAMS}
    assert snap.streams[OTHER_STREAMS].messages_in == 8
    assert snap.messages_in == 10


def test_forget() -> None:
    st_ = StatsTracker()
    st_.record_in(P1, "a", 1, now=1.0)
    assert st_.forget(P1)
    assert not st_.forget(P1)
    assert st_.get(P1) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tracked_peers": 0}, "max_tracked_peers"),
        ({"ttl": 0.0}, "ttl"),
        ({"max_streams_per_peer": 0}, "max_streams_per_peer"),
    ],
)
def test_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StatsTracker(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(1, 10),
    ops=st.lists(
        st.tuples(st.integers(0, len(PEERS) - 1), st.sampled_from(["in", "connect", "gone"])),
        max_size=200,
    ),
)
def test_never_exceeds_the_limit(limit: int, ops: list[tuple[int, str]]) -> None:
    st_ = StatsTracker(max_tracked_peers=limit)
    totals: dict[PeerId, int] = {}
    for t, (i, op) in enumerate(ops):
        peer = PEERS[i]
        if op == "in":
            st_.record_in(peer, "a", 3, now=float(t))
            totals[peer] = totals.get(peer, 0) + 1
        elif op == "connect":
            st_.record_connect(peer, now=float(t))
        else:
            st_.record_disconnect(peer, now=float(t))
        assert len(st_) <= limit
        for tracked, snap in st_.all().items():
            # a tracked peer never has more than it was given (eviction resets it)
            assert snap.messages_in <= totals.get(tracked, 0)
            assert snap.bytes_in == 3 * snap.messages_in
    if ops:
        last = PEERS[ops[-1][0]]
        assert last in st_ or ops[-1][1] == "gone"


def test_many_peers_bounded_memory() -> None:
    rng = random.Random(1)
    ids = [PeerId(bytes(rng.getrandbits(8) for _ in range(38))) for _ in range(5000)]
    st_ = StatsTracker(max_tracked_peers=100)
    for t, peer in enumerate(ids):
        st_.record_in(peer, "a", 1, now=float(t))
    assert len(st_) == 100
    assert st_.evicted == 4900
    assert list(st_.all()) == ids[-100:]
