"""Client idempotency keys of stream sends (no I/O).

A client that is not sure a send arrived (its connection dropped before the ``ack``)
sends it again with the same ``key``; the gateway acknowledges the duplicate without
sending it to the peer a second time. Keys are scoped to (API key id, peer, stream), kept
for ``ttl`` seconds and at most ``max_entries`` of them (least recently used evicted),
so the cache lives across the client's reconnections but stays bounded.

Only successful sends are remembered: a refused send can be retried with the same key.
A key whose first send is still in flight answers :attr:`KeyState.PENDING`; the channel
refuses that duplicate with a retryable ``duplicate_in_flight`` code.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["IdempotencyCache", "KeyState"]


class KeyState(enum.Enum):
    """What the cache knows about a key."""

    NEW = "new"  # never seen (or expired): send it, then call done() or forget()
    PENDING = "pending"  # the first send with this key is still in flight
    DONE = "done"  # sent and acknowledged before: acknowledge, do not resend


class IdempotencyCache:
    """Bounded, expiring set of idempotency keys.

    Args:
        max_entries: keys kept at most (>= 1).
        ttl: seconds a completed key is remembered (> 0).
        clock: monotonic clock in seconds.

    Raises:
        ValueError: a bound is out of range.
    """

    def __init__(
        self, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("max_entries must be >= 1 and ttl > 0")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        # key -> (done, expires_at); insertion/recency ordered.
        self._entries: OrderedDict[Hashable, tuple[bool, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: Hashable) -> KeyState:
        """Look ``key`` up; when it is new, mark it pending.

        Returns:
            ``NEW`` (now pending: the caller sends), ``PENDING`` or ``DONE``.
        """
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            done, expires_at = entry
            if not done:
                return KeyState.PENDING
            if expires_at > now:
                self._entries.move_to_end(key)
                return KeyState.DONE
        self._entries[key] = (False, now + self.ttl)
        self._entries.move_to_end(key)
        self._evict(now)
        return KeyState.NEW

    def done(self, key: Hashable) -> None:
        """The send with ``key`` succeeded: remember it for ``ttl`` seconds."""
        self._entries[key] = (True, self._clock() + self.ttl)
        self._entries.move_to_end(key)

    def forget(self, key: Hashable) -> None:
        """The send with ``key`` failed: a retry with the same key will send."""
        self._entries.pop(key, None)

    def _evict(self, now: float) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        # Expired completed keys at the old end go too (bounded work per call).
        for _ in range(8):
            if not self._entries:
                break
            _, (done, expires_at) = next(iter(self._entries.items()))
            if not done or expires_at > now:
                break
            self._entries.popitem(last=False)
