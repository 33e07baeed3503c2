"""Fan-out of events to subscribers that can never block the engine.

Three things are fanned out this way: connection events, received messages and handshake
messages. Each is an :class:`EventHub`; each subscriber gets a :class:`Subscription`, an
async iterator over its own bounded queue.

Publishing is synchronous and never waits: when a subscriber's queue is full (in items,
or -- when the hub weighs its items, e.g. received messages by payload size -- in
bytes), the
**oldest** queued item is dropped to make room (a monitor wants the latest state more
than a stale one; ``overflow=Overflow.DROP_NEWEST`` keeps the oldest instead) and the drop
is counted on the subscription (``dropped``, ``drop_reasons``) and reported to the hub's
``on_drop`` callback (plan 2.4). ``unsubscribe()`` removes the subscription from its hub
at once, so an abandoned subscriber costs nothing afterwards (plan 2.6).

Connection events additionally go through :class:`ConnectionEventHub`, which gives every
event a global, strictly increasing ``id`` at publish time (independent of any filter)
and keeps the latest ``retention`` events in a ring buffer, so a client can resume from
a cursor (:meth:`ConnectionEventHub.events_since`) or take a backlog and a live
subscription in one race-free step (:meth:`ConnectionEventHub.subscribe_from`).

Everything here runs on one asyncio loop and holds no lock: publish, subscribe and
unsubscribe are synchronous, so no item can slip between a backlog and a subscription.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar

from engine.connection_state import ConnectionState
from engine.errors import StreamBusyError

if TYPE_CHECKING:
    from engine.connection_state import Emit
    from engine.crypto.identity import PeerId

__all__ = [
    "BUFFER_FULL",
    "ConnectionEvent",
    "ConnectionEventHub",
    "EventFilter",
    "EventHub",
    "Filter",
    "Overflow",
    "Subscription",
    "run_cursor_base",
]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

#: The drop reason counted when a subscriber's queue overflows.
BUFFER_FULL: Final = "buffer_full"


class Overflow(enum.Enum):
    """What a full subscription queue drops."""

    DROP_OLDEST = "drop_oldest"  # default: keep the newest items
    DROP_NEWEST = "drop_newest"  # keep what is queued, drop the incoming item


class Filter(Protocol[T_contra]):
    """Anything with ``matches(item) -> bool`` (e.g. :class:`EventFilter`)."""

    def matches(self, item: T_contra, /) -> bool:
        """True when ``item`` is wanted."""
        ...


# -- connection events ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A peer changed connection state.

    Attributes:
        id: global, strictly increasing, assigned by :class:`ConnectionEventHub` when
            published (the value passed in is replaced); independent of filters.
        peer_id: the peer.
        state: the new state.
        previous_state: the state before.
        timestamp: wall-clock time of the change, epoch seconds.
        error_code: stable error code when the change was caused by an error.
        error_message: human-readable cause (no secrets).
    """

    id: int
    peer_id: PeerId
    state: ConnectionState
    previous_state: ConnectionState
    timestamp: float
    error_code: str | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (peer id as text, states as their string values)."""
        return {
            "id": self.id,
            "peer_id": self.peer_id.to_string(),
            "state": self.state.value,
            "previous_state": self.previous_state.value,
            "timestamp": self.timestamp,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


@dataclass(frozen=True, slots=True, init=False)
class EventFilter:
    """Which connection events a subscriber wants; ``None`` means "any".

    Args:
        peers: only events of these peers.
        states: only events entering these states.
    """

    peers: frozenset[PeerId] | None
    states: frozenset[ConnectionState] | None

    def __init__(
        self,
        peers: AbstractSet[PeerId] | Iterable[PeerId] | None = None,
        states: AbstractSet[ConnectionState] | Iterable[ConnectionState] | None = None,
    ) -> None:
        object.__setattr__(self, "peers", None if peers is None else frozenset(peers))
        object.__setattr__(
            self,
            "states",
            None if states is None else frozenset(ConnectionState(s) for s in states),
        )

    def matches(self, event: ConnectionEvent, /) -> bool:
        """True when ``event`` passes the filter."""
        return (self.peers is None or event.peer_id in self.peers) and (
            self.states is None or event.state in self.states
        )


# -- subscriptions ------------------------------------------------------------------------


class Subscription(Generic[T]):
    """One subscriber's bounded queue; an async iterator of ``T``.

    Created by :meth:`EventHub.subscribe`. Iteration ends when :meth:`unsubscribe` is
    called (at once; queued items are discarded) or when the hub is closed (after the
    queued items were delivered). One task at a time may wait on a subscription.

    Usable as ``with sub:`` / ``async with sub:`` (unsubscribes on exit).
    """

    __slots__ = (
        "__weakref__",
        "_bytes",
        "_closed",
        "_draining",
        "_drop_reasons",
        "_dropped",
        "_hub",
        "_match",
        "_max_bytes",
        "_overflow",
        "_queue",
        "_waiter",
        "_weigh",
        "buffer_size",
    )

    def __init__(
        self,
        hub: EventHub[T] | None,
        match: Callable[[T], bool] | None,
        buffer_size: int,
        overflow: Overflow = Overflow.DROP_OLDEST,
        *,
        max_bytes: int | None = None,
        weigh: Callable[[T], int] | None = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if max_bytes is not None and (max_bytes < 1 or weigh is None):
            raise ValueError(f"max_bytes must be >= 1 and come with weigh, got {max_bytes}")
        self.buffer_size = buffer_size
        # Byte bound (optional): queued items weigh at most max_bytes, except a single
        # item heavier than that, which is queued alone.
        self._weigh = weigh if max_bytes is not None else None
        self._max_bytes = max_bytes if max_bytes is not None else 0
        self._bytes = 0
        self._hub = hub
        self._match = match
        self._overflow = overflow
        self._queue: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False  # unsubscribed: end now
        self._draining = False  # hub closed: end once the queue is empty
        self._dropped = 0
        self._drop_reasons: dict[str, int] = {}

    # -- state ------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Items dropped because this subscriber was slow (all reasons)."""
        return self._dropped

    @property
    def drop_reasons(self) -> dict[str, int]:
        """Drops per reason (a copy)."""
        return dict(self._drop_reasons)

    @property
    def pending(self) -> int:
        """Items queued and not yet consumed."""
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        """Weight of the queued items (0 when the subscription has no byte bound)."""
        return self._bytes

    @property
    def max_bytes(self) -> int | None:
        """The byte bound of the queue, or ``None``."""
        return self._max_bytes if self._weigh is not None else None

    @property
    def closed(self) -> bool:
        """True once no further item will be delivered (unsubscribed or hub closed)."""
        return self._closed or self._draining

    # -- consumer side ------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._queue:
                return self._pop()
            if self._draining:
                self._closed = True
                raise StopAsyncIteration
            if self._waiter is not None:
                raise StreamBusyError("another task is already waiting on this subscription")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                # Whether woken or cancelled: the publisher only ever appends to the queue,
                # so nothing is lost when the waiting task is cancelled.
                self._waiter = None

    def get_nowait(self) -> T | None:
        """The next queued item, or ``None`` when the queue is empty or ended."""
        if self._closed or not self._queue:
            return None
        return self._pop()

    def _pop(self) -> T:
        item = self._queue.popleft()
        if self._weigh is not None:
            self._bytes -= self._weigh(item)
        return item

    def unsubscribe(self) -> None:
        """Stop receiving: leave the hub, drop the queue, end the iteration. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._bytes = 0
        hub, self._hub = self._hub, None
        if hub is not None:
            hub._remove(self)
        self._wake()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    # -- hub side -----------------------------------------------------------------------

    def _offer(self, item: T) -> tuple[bool, list[T] | None]:
        """Queue ``item`` if it matches; returns (delivered, dropped items or None)."""
        if self._closed or self._draining:
            return False, None  # e.g. unsubscribed by an on_drop callback mid-publish
        if self._match is not None and not self._match(item):
            return False, None
        if self._weigh is not None:
            return self._offer_weighed(item, self._weigh)
        dropped: list[T] | None = None
        if len(self._queue) >= self.buffer_size:
            if self._overflow is Overflow.DROP_NEWEST:
                self._count_drop(BUFFER_FULL)
                return False, [item]
            dropped = [self._queue.popleft()]
            self._count_drop(BUFFER_FULL)
        self._queue.append(item)
        self._wake()
        return True, dropped

    def _offer_weighed(self, item: T, weigh: Callable[[T], int]) -> tuple[bool, list[T] | None]:
        queue = self._queue
        size = weigh(item)
        dropped: list[T] | None = None
        if len(queue) >= self.buffer_size or self._bytes + size > self._max_bytes:
            if self._overflow is Overflow.DROP_NEWEST and queue:
                self._count_drop(BUFFER_FULL)
                return False, [item]
            dropped = []
            while queue and (
                len(queue) >= self.buffer_size or self._bytes + size > self._max_bytes
            ):
                old = queue.popleft()
                self._bytes -= weigh(old)
                self._count_drop(BUFFER_FULL)
                dropped.append(old)
        queue.append(item)
        self._bytes += size
        self._wake()
        return True, dropped

    def _count_drop(self, reason: str) -> None:
        self._dropped += 1
        self._drop_reasons[reason] = self._drop_reasons.get(reason, 0) + 1

    def _end(self) -> None:
        """The hub closed: deliver what is queued, then end."""
        self._draining = True
        self._hub = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<Subscription {state} pending={len(self._queue)}/{self.buffer_size} "
            f"dropped={self._dropped}>"
        )


# -- hubs -----------------------------------------------------------------------------------


class EventHub(Generic[T]):
    """Fan-out of ``T`` items to subscriptions with bounded queues.

    Args:
        buffer_size: default queue size of a subscription.
        overflow: what a full queue drops (default: the oldest item).
        on_drop: called as ``on_drop(subscription, item, reason)`` for every dropped
            item (metrics, stats, debug logging); must not raise.
        weigh: the weight of an item (e.g. its payload size); with ``max_bytes``,
            subscription queues are bounded by total weight too.
        max_bytes: default byte bound of a subscription (needs ``weigh``).

    Raises:
        ValueError: ``buffer_size`` < 1, or ``max_bytes`` < 1 or without ``weigh``.
    """

    def __init__(
        self,
        buffer_size: int = 1024,
        *,
        overflow: Overflow = Overflow.DROP_OLDEST,
        on_drop: Callable[[Subscription[T], T, str], None] | None = None,
        weigh: Callable[[T], int] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if max_bytes is not None and (max_bytes < 1 or weigh is None):
            raise ValueError(f"max_bytes must be >= 1 and come with weigh, got {max_bytes}")
        self.weigh = weigh
        self.max_bytes = max_bytes
        self.buffer_size = buffer_size
        self.overflow = overflow
        self.on_drop = on_drop
        # Insertion-ordered; a dict so that removal is O(1).
        self._subs: dict[Subscription[T], None] = {}
        self._closed = False
        self._published = 0
        self._dropped = 0

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions."""
        return len(self._subs)

    @property
    def published(self) -> int:
        """Items published so far."""
        return self._published

    @property
    def dropped(self) -> int:
        """Items dropped over all subscriptions so far (including removed ones)."""
        return self._dropped

    def subscribe(
        self,
        filter: Filter[T] | None = None,
        buffer_size: int | None = None,
    ) -> Subscription[T]:
        """A new subscription receiving the items ``filter.matches``.

        Args:
            filter: an object with ``matches(item) -> bool`` (e.g. :class:`EventFilter`),
                or ``None`` for everything.
            buffer_size: queue size (default: the hub's).

        Returns:
            The subscription; already ended if the hub is closed.

        Raises:
            ValueError: ``buffer_size`` < 1.
        """
        return self.subscribe_where(None if filter is None else filter.matches, buffer_size)

    def subscribe_where(
        self,
        predicate: Callable[[T], bool] | None = None,
        buffer_size: int | None = None,
        *,
        max_bytes: int | None = None,
    ) -> Subscription[T]:
        """Like :meth:`subscribe` with a plain predicate function.

        Args:
            predicate: which items to queue (``None``: all).
            buffer_size: queue size in items (default: the hub's).
            max_bytes: queue bound in weight (default: the hub's; needs the hub's
                ``weigh``).

        Raises:
            ValueError: ``buffer_size`` < 1, or a bad ``max_bytes``.
        """
        sub = Subscription(
            self,
            predicate,
            self.buffer_size if buffer_size is None else buffer_size,
            self.overflow,
            max_bytes=self.max_bytes if max_bytes is None else max_bytes,
            weigh=self.weigh,
        )
        if self._closed:
            sub._end()
        else:
            self._subs[sub] = None
        return sub

    def publish(self, item: T) -> int:
        """Deliver ``item`` to every matching subscription; never blocks.

        Returns:
            The number of subscriptions that queued the item.
        """
        if self._closed:
            return 0
        self._published += 1
        delivered = 0
        # Copy: an on_drop callback may unsubscribe.
        for sub in tuple(self._subs):
            queued, dropped = sub._offer(item)
            if queued:
                delivered += 1
            if dropped:
                self._dropped += len(dropped)
                if self.on_drop is not None:
                    for old in dropped:
                        self.on_drop(sub, old, BUFFER_FULL)
        return delivered

    def close(self) -> None:
        """End every subscription (after it delivered its queue). Idempotent.

        Later :meth:`publish` calls are ignored and later subscriptions end at once.
        """
        if self._closed:
            return
        self._closed = True
        subs, self._subs = self._subs, {}
        for sub in subs:
            sub._end()

    def _remove(self, sub: Subscription[T]) -> None:
        self._subs.pop(sub, None)


def run_cursor_base() -> int:
    """A first id/sequence number for this run: the current time in microseconds.

    Event ids and message cursors restart with every run of a node. Starting each run
    above every id an earlier run can have issued (one per microsecond at most) lets a
    cursor from an earlier run be recognised as such, instead of silently skipping the
    new run's first events. The value stays below 2**53, so JavaScript clients read it
    exactly.
    """
    return max(1, time.time_ns() // 1000)


class ConnectionEventHub(EventHub[ConnectionEvent]):
    """The connection-event hub: global ids, a retention ring, resumable cursors.

    Args:
        buffer_size: default queue size of a subscription.
        retention: events kept for :meth:`events_since` (>= 1).
        first_id: id of the first event (ids are dense: first_id, first_id + 1, ...).
        overflow: what a full queue drops (default: the oldest item).
        on_drop: see :class:`EventHub`.

    Raises:
        ValueError: ``retention`` < 1 or ``first_id`` < 1.
    """

    def __init__(
        self,
        buffer_size: int = 1024,
        *,
        retention: int = 10_000,
        first_id: int = 1,
        overflow: Overflow = Overflow.DROP_OLDEST,
        on_drop: Callable[[Subscription[ConnectionEvent], ConnectionEvent, str], None]
        | None = None,
    ) -> None:
        super().__init__(buffer_size, overflow=overflow, on_drop=on_drop)
        if retention < 1:
            raise ValueError(f"retention must be >= 1, got {retention}")
        if first_id < 1:
            raise ValueError(f"first_id must be >= 1, got {first_id}")
        self.retention = retention
        self._first_id = first_id
        self._last_id = first_id - 1
        self._ring: deque[ConnectionEvent] = deque(maxlen=retention)

    @property
    def first_id(self) -> int:
        """Id of this run's first event (see :func:`run_cursor_base`)."""
        return self._first_id

    @property
    def last_id(self) -> int:
        """Id of the latest event (``first_id - 1``, i.e. 0 by default, before any)."""
        return self._last_id

    @property
    def oldest_retained_id(self) -> int | None:
        """Id of the oldest event still in retention (``None`` before any)."""
        return self._ring[0].id if self._ring else None

    def publish(self, item: ConnectionEvent) -> int:
        """Number ``item`` (its ``id`` is replaced), retain it and fan it out.

        Use :meth:`emit` to get the numbered event back.

        Returns:
            The number of subscriptions that queued the event.
        """
        self._last_id += 1
        event = dataclasses.replace(item, id=self._last_id)
        self._ring.append(event)
        return super().publish(event)

    def emit(
        self,
        peer_id: PeerId,
        state: ConnectionState,
        previous_state: ConnectionState,
        timestamp: float,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> ConnectionEvent:
        """Build, number, retain and publish an event.

        Returns:
            The published event (with its id). Events published after :meth:`close`
            are numbered and retained but reach no subscriber.
        """
        self._last_id += 1
        event = ConnectionEvent(
            self._last_id, peer_id, state, previous_state, timestamp, error_code, error_message
        )
        self._ring.append(event)
        EventHub.publish(self, event)
        return event

    def emit_action(self, peer_id: PeerId, action: Emit) -> ConnectionEvent:
        """Publish the event of a state-machine :class:`~engine.connection_state.Emit`.

        Returns:
            The published event (with its id).
        """
        return self.emit(
            peer_id,
            action.state,
            action.previous_state,
            action.timestamp,
            action.error_code,
            action.error_message,
        )

    def events_since(
        self,
        event_id: int,
        filter: Filter[ConnectionEvent] | None = None,
    ) -> tuple[list[ConnectionEvent], bool]:
        """Retained events with ``id > event_id``, oldest first.

        Args:
            event_id: the last id the client has seen (0, or ``first_id - 1``, for "from
                the start").
            filter: keep only matching events (the bool still refers to all events).

        Returns:
            ``(events, complete)``: ``complete`` is True when no event after ``event_id``
            has left the retention ring, i.e. the list is everything the client missed.
            It is False when the cursor is too old (events were evicted: the client must
            reset) or lies in the future (a cursor from another run of the node).
        """
        if event_id > self._last_id:
            return [], False
        if 0 < event_id < self._first_id - 1:
            # A cursor below this run's first id was issued by an earlier run of the node
            # (see run_cursor_base): everything retained is new to the client, and what the
            # earlier run emitted after its cursor is gone. Incomplete: the client resets.
            return self._since_start(filter), False
        after = max(event_id, self._first_id - 1)
        if not self._ring:  # nothing published yet (the ring never empties afterwards)
            return [], True
        oldest = self._ring[0].id
        complete = oldest <= after + 1
        start = max(0, after + 1 - oldest)
        events = [self._ring[i] for i in range(start, len(self._ring))]
        if filter is not None:
            events = [e for e in events if filter.matches(e)]
        return events, complete

    def _since_start(self, filter: Filter[ConnectionEvent] | None) -> list[ConnectionEvent]:
        return [e for e in self._ring if filter is None or filter.matches(e)]

    def subscribe_from(
        self,
        event_id: int,
        filter: Filter[ConnectionEvent] | None = None,
        buffer_size: int | None = None,
    ) -> tuple[list[ConnectionEvent], bool, Subscription[ConnectionEvent]]:
        """The backlog after ``event_id`` plus a live subscription, atomically.

        Both happen in one synchronous call on the event loop, so every event is either
        in the backlog or delivered by the subscription, exactly once, in id order.

        Returns:
            ``(backlog, complete, subscription)``; see :meth:`events_since`.

        Raises:
            ValueError: ``buffer_size`` < 1.
        """
        backlog, complete = self.events_since(event_id, filter)
        return backlog, complete, self.subscribe(filter, buffer_size)
