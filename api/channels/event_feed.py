"""The connection-event feed shared by the WebSocket and SSE channels of ``/v1/events``.

:func:`event_feed` yields the JSON frames one client receives, in order; the channel
only writes them out (WebSocket text frames, or SSE events with ``id:`` lines). It
implements the guarantees of the channel:

- **One global cursor.** Event ids are the engine's (global, strictly increasing,
  independent of filters). The feed tracks ``cursor``: every matching event with an id
  up to it was delivered. ``heartbeat`` frames (when idle) carry the cursor, so a client
  with a narrow filter can resume from a recent id even if no event matched for a while.
- **Resume.** With ``since`` the feed first sends the retained events after it, then the
  live ones; backlog and subscription are taken in one synchronous step
  (:meth:`Node.subscribe_from`), so there is no gap and no duplicate between them.
- **Reset, never a silent skip.** When events after ``since`` were evicted from the
  engine's retention (or ``since`` is ahead of the node: a cursor from another run), the
  feed sends ``reset`` and then a ``snapshot``, and continues from the snapshot.
- **Snapshot then changes.** With ``snapshot`` the feed first sends the current state
  of the matching peers as of event ``last_event_id``, then the events after it. The
  peers are the address book, every peer the engine tracks (:meth:`Node.peer_states`:
  also inbound peers connected, in cooldown, ...) and the peers named by the filter.
  The states are read and the subscription is made in the same synchronous step, so no
  change can fall between them.
- **Slow clients.** If the client reads so slowly that its subscription dropped events,
  the feed refills the gap from the retention ring; if the gap is no longer retained it
  sends ``reset`` and a fresh ``snapshot``.

The feed ends when the node stops (its subscription ends).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from typing import Any

from api.channels import frames
from engine.connection_state import ConnectionState
from engine.crypto.identity import PeerId
from engine.events import ConnectionEvent, EventFilter, Subscription

__all__ = ["EventCursor", "event_feed", "parse_filter"]

_PAGE = 1000


class EventCursor:
    """Cursor bookkeeping of one client (no I/O).

    Args:
        cursor: every matching event with an id up to this one was delivered.
    """

    __slots__ = ("cursor",)

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor

    def admit(self, event: ConnectionEvent) -> bool:
        """Whether ``event`` is new for this client (and advance the cursor if so)."""
        if event.id <= self.cursor:
            return False
        self.cursor = event.id
        return True

    def advance(self, last_event_id: int) -> None:
        """Every matching event up to ``last_event_id`` was delivered."""
        self.cursor = max(self.cursor, last_event_id)


async def _address_book(node: Any) -> list[PeerId]:
    peers: list[PeerId] = []
    offset = 0
    while True:
        page, total = await node.list_peers(offset=offset, limit=_PAGE)
        peers.extend(record.peer_id for record in page)
        offset += len(page)
        if not page or offset >= total:
            return peers


def _states(
    node: Any, candidates: Iterable[PeerId], event_filter: EventFilter
) -> list[tuple[str, str]]:
    """Synchronous: the current state of every candidate peer passing the filter."""
    out: dict[str, str] = {}
    for peer in candidates:
        if event_filter.peers is not None and peer not in event_filter.peers:
            continue
        state = node.connection_state(peer)
        if event_filter.states is not None and state not in event_filter.states:
            continue
        out[str(peer)] = str(state.value)
    return sorted(out.items())


async def _snapshot_and_subscribe(
    node: Any, event_filter: EventFilter
) -> tuple[dict[str, Any], Subscription[ConnectionEvent], int]:
    """Snapshot of current states + a live subscription, consistent at one event id."""
    book: list[PeerId] = []
    if event_filter.peers is None:
        book = await _address_book(node)
    # -- one synchronous step: no event can be published between these lines ----------
    candidates: list[PeerId] = list(event_filter.peers or ())
    candidates += book
    # Every peer the engine tracks: connected, dialing, reconnecting, in cooldown
    # (inbound ones too, which are in no address book).
    candidates += node.peer_states()
    subscription: Subscription[ConnectionEvent] = node.subscribe(event_filter)
    last = int(node.last_event_id)
    states = _states(node, candidates, event_filter)
    # ------------------------------------------------------------------------------------
    return frames.snapshot(last, states), subscription, last


def _subscribe_from(
    node: Any, since: int, event_filter: EventFilter
) -> tuple[list[ConnectionEvent], bool, Subscription[ConnectionEvent], int]:
    """Synchronous: retained events after ``since`` + a live subscription + last id."""
    backlog, complete, subscription = node.subscribe_from(since, event_filter)
    return backlog, complete, subscription, int(node.last_event_id)


def _reset_reason(node: Any, since: int, last: int) -> str:
    """Why the cursor ``since`` cannot be resumed (the ``reason`` of a reset frame)."""
    if since > last:
        return "cursor_ahead"
    if 0 < since < int(node.first_event_id) - 1:
        return "cursor_earlier_run"  # issued before the node restarted
    return "cursor_expired"


def _oldest_retained(node: Any) -> int | None:
    events, _ = node.events_since(0)
    return int(events[0].id) if events else None


async def event_feed(
    node: Any,
    event_filter: EventFilter,
    *,
    since: int | None,
    snapshot: bool,
    heartbeat: float,
) -> AsyncGenerator[dict[str, Any], None]:
    """The frames of one events client, in order (see the module docstring).

    Args:
        node: the engine node.
        event_filter: peers / states wanted.
        since: resume after this event id (``None``: live changes only).
        snapshot: send the current states first (ignored when resuming from ``since``
            succeeds; always sent after a ``reset``).
        heartbeat: idle seconds between ``heartbeat`` frames.

    Yields:
        ``ready``, then ``snapshot`` / ``reset`` / ``event`` / ``heartbeat`` frames.
    """
    subscription: Subscription[ConnectionEvent]
    reset_from: int | None = None
    backlog: list[ConnectionEvent] = []
    if since is not None:
        backlog, complete, subscription, last = _subscribe_from(node, since, event_filter)
        if not complete:
            subscription.unsubscribe()
            reset_from = since
    elif snapshot:
        snap, subscription, last = await _snapshot_and_subscribe(node, event_filter)
    else:
        subscription = node.subscribe(event_filter)
        last = int(node.last_event_id)
    try:
        if reset_from is not None:
            reason = _reset_reason(node, reset_from, last)
            yield frames.ready("events", last_event_id=last)
            yield frames.reset(reason, reset_from, _oldest_retained(node), last)
            snap, subscription, last = await _snapshot_and_subscribe(node, event_filter)
            yield snap
        else:
            yield frames.ready("events", last_event_id=last)
            if since is None and snapshot:
                yield snap
        cursor = EventCursor(last if since is None or reset_from is not None else since)
        for event in backlog:
            if cursor.admit(event):
                yield frames.event_frame(event)
        cursor.advance(last)
        seen_drops = 0
        while True:
            try:
                async with asyncio.timeout(heartbeat):
                    event = await anext(subscription)
            except TimeoutError:
                if subscription.pending == 0:
                    cursor.advance(int(node.last_event_id))
                yield frames.heartbeat(cursor.cursor)
                continue
            except StopAsyncIteration:
                return
            if subscription.dropped != seen_drops:
                # The client was too slow and its queue overflowed: refill from retention.
                seen_drops = subscription.dropped
                missed, complete = node.events_since(cursor.cursor)
                if not complete:
                    subscription.unsubscribe()
                    last = int(node.last_event_id)
                    yield frames.reset(
                        "cursor_expired", cursor.cursor, _oldest_retained(node), last
                    )
                    snap, subscription, last = await _snapshot_and_subscribe(node, event_filter)
                    seen_drops = 0
                    yield snap
                    cursor = EventCursor(last)
                    continue
                for item in missed:
                    if event_filter.matches(item) and cursor.admit(item):
                        yield frames.event_frame(item)
            if cursor.admit(event):
                yield frames.event_frame(event)
    finally:
        subscription.unsubscribe()


def parse_filter(peers: Iterable[str], states: Iterable[str]) -> EventFilter:
    """An :class:`EventFilter` from query values (repeated or comma-separated).

    Raises:
        InvalidPeerIdError: a peer id is malformed.
        ValueError: a state is not a :class:`ConnectionState` value.
    """
    peer_ids = {PeerId.from_string(p) for v in peers for p in v.split(",") if p.strip()}
    state_set = {ConnectionState(s.strip()) for v in states for s in v.split(",") if s.strip()}
    return EventFilter(peers=peer_ids or None, states=state_set or None)
