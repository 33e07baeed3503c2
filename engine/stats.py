"""Per-peer statistics, bounded in memory (plan 2.3).

:class:`StatsTracker` keeps mutable counters per peer (messages and bytes in and out per
stream, connects, last activity, ping round-trip time, decryption errors, drops by
reason) and hands out immutable :class:`PeerStats` snapshots. The hot path is a dict
lookup, an ``OrderedDict.move_to_end`` and a few integer increments; no lock is needed
because everything runs on one event loop.

Memory is bounded twice: at most ``max_tracked_peers`` peers are tracked (when a new
peer would exceed it, the least recently active *disconnected* peer among the stalest
few is evicted, else simply the stalest), at most ``max_streams_per_peer`` stream names
per peer (further names are counted under :data:`OTHER_STREAMS`), and :meth:`StatsTracker.sweep`
drops disconnected peers idle for longer than ``ttl`` seconds (the node calls it
periodically).

Times are wall-clock epoch seconds; every method takes ``now`` and reads ``time.time()``
only when it is omitted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from engine.crypto.identity import PeerId

__all__ = ["OTHER_STREAMS", "PeerStats", "StatsTracker", "StreamStats"]

#: Stream key that aggregates the streams of a peer beyond ``max_streams_per_peer``.
OTHER_STREAMS: Final = "(other)"

# Eviction looks at this many of the stalest entries for a disconnected one.
_EVICTION_SCAN: Final = 32


@dataclass(frozen=True, slots=True)
class StreamStats:
    """Counters of one named stream of one peer."""

    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True, slots=True)
class PeerStats:
    """A snapshot of one peer's statistics.

    Attributes:
        streams: per stream name, its counters.
        messages_in, messages_out, bytes_in, bytes_out: totals over all streams.
        connect_count: times the peer reached ``established``.
        connected: whether the peer is connected now (as last recorded).
        first_seen: when the peer was first tracked (epoch s).
        last_activity: the latest recorded activity (epoch s).
        ping_rtt: the latest ping round-trip time in seconds, if any.
        decryption_errors: frames that failed to decrypt.
        dropped: dropped messages per reason.
    """

    streams: dict[str, StreamStats]
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    connect_count: int
    connected: bool
    first_seen: float
    last_activity: float
    ping_rtt: float | None
    decryption_errors: int
    dropped: dict[str, int]


class _StreamCounters:
    __slots__ = ("bytes_in", "bytes_out", "messages_in", "messages_out")

    def __init__(self) -> None:
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0


class _PeerCounters:
    __slots__ = (
        "connect_count",
        "connected",
        "decryption_errors",
        "dropped",
        "first_seen",
        "last_activity",
        "ping_rtt",
        "streams",
    )

    def __init__(self, now: float) -> None:
        self.streams: dict[str, _StreamCounters] = {}
        self.connect_count = 0
        self.connected = False
        self.first_seen = now
        self.last_activity = now
        self.ping_rtt: float | None = None
        self.decryption_errors = 0
        self.dropped: dict[str, int] = {}

    def snapshot(self) -> PeerStats:
        streams = {
            name: StreamStats(c.messages_in, c.messages_out, c.bytes_in, c.bytes_out)
            for name, c in self.streams.items()
        }
        return PeerStats(
            streams=streams,
            messages_in=sum(s.messages_in for s in streams.values()),
            messages_out=sum(s.messages_out for s in streams.values()),
            bytes_in=sum(s.bytes_in for s in streams.values()),
            bytes_out=sum(s.bytes_out for s in streams.values()),
            connect_count=self.connect_count,
            connected=self.connected,
            first_seen=self.first_seen,
            last_activity=self.last_activity,
            ping_rtt=self.ping_rtt,
            decryption_errors=self.decryption_errors,
            dropped=dict(self.dropped),
        )


class StatsTracker:
    """Bounded per-peer statistics.

    Args:
        max_tracked_peers: peers kept at most (>= 1).
        ttl: seconds after which a disconnected, idle peer is removed by :meth:`sweep`.
        max_streams_per_peer: stream names counted separately per peer (>= 1).

    Raises:
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        max_tracked_peers: int = 10_000,
        ttl: float = 86_400.0,
        *,
        max_streams_per_peer: int = 256,
    ) -> None:
        if max_tracked_peers < 1:
            raise ValueError(f"max_tracked_peers must be >= 1, got {max_tracked_peers}")
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0, got {ttl}")
        if max_streams_per_peer < 1:
            raise ValueError(f"max_streams_per_peer must be >= 1, got {max_streams_per_peer}")
        self.max_tracked_peers = max_tracked_peers
        self.ttl = float(ttl)
        self.max_streams_per_peer = max_streams_per_peer
        # Least recently active first: every record_* moves its peer to the end.
        self._peers: OrderedDict[PeerId, _PeerCounters] = OrderedDict()
        self._evicted = 0

    # -- hot path ------------------------------------------------------------------------

    def record_in(self, peer_id: PeerId, stream: str, size: int, now: float | None = None) -> None:
        """A message of ``size`` payload bytes arrived on ``stream``."""
        counters = self._stream(self._touch(peer_id, now), stream)
        counters.messages_in += 1
        counters.bytes_in += size

    def record_out(self, peer_id: PeerId, stream: str, size: int, now: float | None = None) -> None:
        """A message of ``size`` payload bytes was sent on ``stream``."""
        counters = self._stream(self._touch(peer_id, now), stream)
        counters.messages_out += 1
        counters.bytes_out += size

    def record_drop(
        self, peer_id: PeerId, reason: str, count: int = 1, now: float | None = None
    ) -> None:
        """``count`` messages of the peer were dropped for ``reason``."""
        peer = self._touch(peer_id, now)
        peer.dropped[reason] = peer.dropped.get(reason, 0) + count

    def record_decryption_error(self, peer_id: PeerId, now: float | None = None) -> None:
        """A frame from the peer failed to decrypt."""
        self._touch(peer_id, now).decryption_errors += 1

    def record_connect(self, peer_id: PeerId, now: float | None = None) -> None:
        """The peer reached ``established``."""
        peer = self._touch(peer_id, now)
        peer.connect_count += 1
        peer.connected = True

    def record_disconnect(self, peer_id: PeerId, now: float | None = None) -> None:
        """The peer's connection ended (it becomes eligible for :meth:`sweep`)."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            peer.connected = False
            peer.last_activity = time.time() if now is None else now
            self._peers.move_to_end(peer_id)

    def record_ping(self, peer_id: PeerId, rtt: float, now: float | None = None) -> None:
        """A ping to the peer took ``rtt`` seconds."""
        self._touch(peer_id, now).ping_rtt = rtt

    # -- reading ------------------------------------------------------------------------------

    def get(self, peer_id: PeerId) -> PeerStats | None:
        """The peer's snapshot, or ``None`` when it is not tracked."""
        peer = self._peers.get(peer_id)
        return None if peer is None else peer.snapshot()

    def all(self) -> dict[PeerId, PeerStats]:
        """Snapshots of every tracked peer (stalest first)."""
        return {peer_id: peer.snapshot() for peer_id, peer in self._peers.items()}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    @property
    def evicted(self) -> int:
        """Peers evicted so far because ``max_tracked_peers`` was reached."""
        return self._evicted

    # -- housekeeping ---------------------------------------------------------------------

    def forget(self, peer_id: PeerId) -> bool:
        """Stop tracking the peer. Returns whether it was tracked."""
        return self._peers.pop(peer_id, None) is not None

    def sweep(self, now: float | None = None) -> int:
        """Remove disconnected peers idle for more than ``ttl`` seconds.

        Returns:
            The number of peers removed.
        """
        cutoff = (time.time() if now is None else now) - self.ttl
        stale: list[PeerId] = []
        for peer_id, peer in self._peers.items():
            if peer.last_activity >= cutoff:
                break  # stalest first: everything after is at least as recent
            if not peer.connected:
                stale.append(peer_id)
        for peer_id in stale:
            del self._peers[peer_id]
        return len(stale)

    # -- internals ----------------------------------------------------------------------------

    def _touch(self, peer_id: PeerId, now: float | None) -> _PeerCounters:
        if now is None:
            now = time.time()
        peer = self._peers.get(peer_id)
        if peer is None:
            if len(self._peers) >= self.max_tracked_peers:
                self._evict_one()
            peer = self._peers[peer_id] = _PeerCounters(now)
        else:
            self._peers.move_to_end(peer_id)
            peer.last_activity = now
        return peer

    def _evict_one(self) -> None:
        victim: PeerId | None = None
        for i, (peer_id, peer) in enumerate(self._peers.items()):
            if i >= _EVICTION_SCAN:
                break
            if not peer.connected:
                victim = peer_id
                break
        if victim is None:
            victim = next(iter(self._peers))
        del self._peers[victim]
        self._evicted += 1

    def _stream(self, peer: _PeerCounters, stream: str) -> _StreamCounters:
        counters = peer.streams.get(stream)
        if counters is None:
            if len(peer.streams) >= self.max_streams_per_peer:
                stream = OTHER_STREAMS
                counters = peer.streams.get(stream)
            if counters is None:
                counters = peer.streams[stream] = _StreamCounters()
        return counters
