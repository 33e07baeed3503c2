"""Lag and drop accounting of one connection's outgoing messages (no I/O).

A channel that forwards received messages to a WebSocket client reads them from its own
engine subscription, which is a bounded queue (``capacity`` messages) that never blocks
the engine: when the client reads slower than messages arrive, the queue fills and the
engine drops the oldest queued message, counting it on the subscription. This class
turns those counters into control frames, so nothing is lost silently:

- ``lag`` once the queue holds ``lag_threshold`` messages (again only after it drained
  to half of that);
- ``dropped`` before the first message after a gap, with the count, the running total,
  how many messages this connection had delivered before the gap and the engine
  sequence numbers around it;
- a close with :attr:`~api.channels.codes.CloseCode.TOO_SLOW` (4008) once more than
  ``max_dropped`` messages were dropped on the connection.

The I/O loop calls :meth:`OutboundTracker.before_send` for every message it dequeues and
sends the frames it returns; when :attr:`OutboundTracker.exceeded` is true it reports the
messages still queued with :meth:`OutboundTracker.abandon` and closes; otherwise it sends
the message and calls :meth:`OutboundTracker.sent`. So for every connection, messages
delivered plus the counts of its ``dropped`` frames equal the messages queued for it.
"""

from __future__ import annotations

from typing import Any

from api.channels import frames

__all__ = ["OutboundTracker", "WriteClock"]


class OutboundTracker:
    """Accounting for one connection.

    Args:
        capacity: size of the subscription queue (reported in ``lag`` frames).
        lag_threshold: queued messages at which a ``lag`` frame is sent (>= 1).
        max_dropped: dropped messages tolerated before closing with 4008 (>= 0).

    Raises:
        ValueError: a bound is out of range.
    """

    __slots__ = (
        "_lagging",
        "capacity",
        "delivered",
        "dropped_seen",
        "lag_threshold",
        "last_seq",
        "max_dropped",
    )

    def __init__(self, capacity: int, lag_threshold: int, max_dropped: int) -> None:
        if capacity < 1 or lag_threshold < 1 or max_dropped < 0:
            raise ValueError("capacity and lag_threshold must be >= 1, max_dropped >= 0")
        self.capacity = capacity
        self.lag_threshold = lag_threshold
        self.max_dropped = max_dropped
        self.delivered = 0  # messages sent to the client on this connection
        self.dropped_seen = 0  # drops already reported
        self.last_seq = 0  # engine seq of the last message sent (0 before any)
        self._lagging = False

    @property
    def exceeded(self) -> bool:
        """More than ``max_dropped`` messages were dropped: close with 4008."""
        return self.dropped_seen > self.max_dropped

    def before_send(
        self, seq: int | None, pending: int, dropped_total: int
    ) -> list[dict[str, Any]]:
        """Control frames to send before the message ``seq`` (``None``: the queue ended).

        Args:
            seq: engine sequence number of the dequeued message.
            pending: messages still queued behind it.
            dropped_total: the subscription's drop counter.

        Returns:
            ``dropped`` and/or ``lag`` frames, possibly none.
        """
        out: list[dict[str, Any]] = []
        if dropped_total > self.dropped_seen:
            count = dropped_total - self.dropped_seen
            self.dropped_seen = dropped_total
            out.append(
                frames.dropped(
                    count,
                    dropped_total,
                    self.delivered,
                    self.last_seq,
                    seq,
                    self.max_dropped,
                )
            )
        if pending >= self.lag_threshold:
            if not self._lagging:
                self._lagging = True
                out.append(frames.lag(pending, self.capacity))
        elif pending <= self.lag_threshold // 2:
            self._lagging = False
        return out

    def abandon(self, count: int) -> list[dict[str, Any]]:
        """The connection closes with ``count`` messages still queued: report them.

        Returns:
            A final ``dropped`` frame (none when ``count`` is 0).
        """
        if count <= 0:
            return []
        self.dropped_seen += count
        return [
            frames.dropped(
                count, self.dropped_seen, self.delivered, self.last_seq, None, self.max_dropped
            )
        ]

    def sent(self, seq: int) -> None:
        """The message ``seq`` went out to the client."""
        self.delivered += 1
        self.last_seq = seq

    def close_reason(self) -> str:
        """The close reason for 4008."""
        return f"too slow: {self.dropped_seen} messages dropped (limit {self.max_dropped})"


class WriteClock:
    """When the write in progress to a client started (``None``: not writing).

    The writer sets :attr:`since` before awaiting a send and clears it after; a
    supervisor polls :meth:`stalled` and closes the connection (4008) when one write
    waits longer than the send timeout, i.e. the client stopped reading altogether.
    Cheaper than a timer per message.
    """

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    def stalled(self, now: float, timeout: float) -> bool:
        """Whether the current write has waited more than ``timeout`` seconds."""
        return self.since is not None and now - self.since > timeout
