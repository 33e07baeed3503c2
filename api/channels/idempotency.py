"""Client idempotency keys of stream sends (no I/O).

A client that is not sure a send arrived (its connection dropped before the ``ack``)
sends it again with the same ``key``; the gateway acknowledges the duplicate without
sending it to the peer a second time. Keys belong to an *owner* (the API key id) and are
scoped further by the caller (peer, stream, client key); they are kept for ``ttl``
seconds, so the cache lives across the client's reconnections but stays bounded:

- each owner holds at most ``max_per_owner`` keys (its own least recently used completed
  keys are evicted first), so one API key cannot flush another's keys;
- the whole cache holds at most ``max_entries``; when it is full, the owner holding the
  most completed keys loses its least recently used one;
- a key whose send is **in flight is never evicted** (evicting it would let a retry send
  a second time). When a new key finds no completed key to evict (the owner's quota, or
  the whole cache, is all in flight), :meth:`IdempotencyCache.begin` answers
  :attr:`KeyState.FULL` and the caller refuses the send (retryable).

Only successful sends are remembered: a refused send can be retried with the same key.
A key whose first send is still in flight answers :attr:`KeyState.PENDING`; the channel
refuses that duplicate with a retryable ``duplicate_in_flight`` code.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

__all__ = ["IdempotencyCache", "KeyState"]


class KeyState(enum.Enum):
    """What the cache knows about a key."""

    NEW = "new"  # never seen (or expired): now in flight; send, then done() or forget()
    PENDING = "pending"  # the first send with this key is still in flight
    DONE = "done"  # sent and acknowledged before: acknowledge, do not resend
    FULL = "full"  # no room without evicting an in-flight key: refuse, retry later


@dataclass
class _Owner:
    """One owner's keys: completed (LRU order, key -> expiry) and in flight."""

    done: OrderedDict[Hashable, float] = field(default_factory=OrderedDict)
    pending: set[Hashable] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.done) + len(self.pending)


class IdempotencyCache:
    """Bounded, expiring, per-owner sets of idempotency keys.

    Args:
        max_entries: keys kept at most, all owners together (>= 1).
        ttl: seconds a completed key is remembered (> 0).
        max_per_owner: keys one owner may hold (>= 1; default ``max_entries``).
        clock: monotonic clock in seconds.

    Raises:
        ValueError: a bound is out of range.
    """

    def __init__(
        self,
        max_entries: int,
        ttl: float,
        max_per_owner: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        per_owner = max_entries if max_per_owner is None else max_per_owner
        if max_entries < 1 or per_owner < 1 or ttl <= 0:
            raise ValueError("max_entries and max_per_owner must be >= 1 and ttl > 0")
        self.max_entries = max_entries
        self.max_per_owner = per_owner
        self.ttl = ttl
        self._clock = clock
        self._owners: dict[Hashable, _Owner] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def in_flight(self, owner: Hashable) -> int:
        """Keys of ``owner`` whose send is in flight."""
        entry = self._owners.get(owner)
        return len(entry.pending) if entry is not None else 0

    def begin(self, owner: Hashable, key: Hashable) -> KeyState:
        """Look ``key`` of ``owner`` up; when it is new and there is room, mark it in flight.

        Returns:
            ``NEW`` (now in flight: the caller sends, then calls :meth:`done` or
            :meth:`forget`), ``PENDING``, ``DONE``, or ``FULL`` (nothing recorded: the
            caller refuses the send).
        """
        now = self._clock()
        entry = self._owners.get(owner)
        if entry is not None:
            if key in entry.pending:
                return KeyState.PENDING
            expires_at = entry.done.get(key)
            if expires_at is not None:
                if expires_at > now:
                    entry.done.move_to_end(key)
                    return KeyState.DONE
                del entry.done[key]
                self._size -= 1
            self._expire(entry, now)
            if len(entry.pending) >= self.max_per_owner:
                return KeyState.FULL
            if len(entry) >= self.max_per_owner:
                entry.done.popitem(last=False)  # not empty: pending < max_per_owner
                self._size -= 1
        if self._size >= self.max_entries and not self._evict_one():
            self._drop_if_empty(owner)
            return KeyState.FULL
        if entry is None:
            entry = self._owners[owner] = _Owner()
        entry.pending.add(key)
        self._size += 1
        return KeyState.NEW

    def done(self, owner: Hashable, key: Hashable) -> None:
        """The send with ``key`` succeeded: remember it for ``ttl`` seconds."""
        entry = self._owners.get(owner)
        if entry is None or key not in entry.pending:
            return  # never begun (or already settled): nothing to remember
        entry.pending.discard(key)
        entry.done[key] = self._clock() + self.ttl

    def forget(self, owner: Hashable, key: Hashable) -> None:
        """The send with ``key`` failed: a retry with the same key will send."""
        entry = self._owners.get(owner)
        if entry is None or key not in entry.pending:
            return
        entry.pending.discard(key)
        self._size -= 1
        self._drop_if_empty(owner)

    def _expire(self, entry: _Owner, now: float) -> None:
        # Expired completed keys at the old end go (bounded work per call).
        for _ in range(8):
            if not entry.done:
                return
            expires_at = next(iter(entry.done.values()))
            if expires_at > now:
                return
            entry.done.popitem(last=False)
            self._size -= 1

    def _evict_one(self) -> bool:
        # The owner holding the most completed keys gives up its least recently used one.
        if not self._owners:
            return False
        owner = max(self._owners, key=lambda o: len(self._owners[o].done))
        victim = self._owners[owner]
        if not victim.done:
            return False
        victim.done.popitem(last=False)
        self._size -= 1
        self._drop_if_empty(owner)
        return True

    def _drop_if_empty(self, owner: Hashable) -> None:
        entry = self._owners.get(owner)
        if entry is not None and not len(entry):
            del self._owners[owner]
