"""``/v1/events``: connection events after a cursor, optionally waiting (long-poll).

The REST view of the engine's event log for curl users; browsers and services that
want a push stream use the WebSocket / SSE channels.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Gateway, Limit, Monitor, NodeDep
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import EventPage
from api.views import event_public

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"], responses=error_responses(*AUTH_ERRORS))


def _state_text(state: Any) -> str:
    return str(getattr(state, "value", state))


@router.get("", summary="Connection events after a cursor (long-poll)")
async def list_events(
    _: Monitor,
    node: NodeDep,
    gateway: Gateway,
    since: Annotated[int, Query(ge=0, description="Last event id seen (0 = from the start).")] = 0,
    wait: Annotated[
        float, Query(ge=0, le=300, description="Seconds to wait for a matching event.")
    ] = 0.0,
    peer: Annotated[str | None, Query(max_length=128, description="Only this peer id.")] = None,
    state: Annotated[
        str | None, Query(max_length=32, description="Only transitions into this state.")
    ] = None,
    limit: Limit = 100,
) -> EventPage:
    """Events with ``id > since``, oldest first, optionally filtered by peer and state;
    ``gap`` says when events after the cursor were evicted from the engine's retention."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, gateway.settings.max_long_poll_wait)
    cursor = since
    gap = False
    subscription = node.subscribe() if wait > 0 else None
    try:
        while True:
            events, in_retention = node.events_since(cursor)
            if not in_retention and cursor > node.last_event_id:
                # A cursor from before a restart, ahead of this run: read this run from
                # its start, and say so with gap, rather than answering nothing forever.
                cursor = node.first_event_id - 1
                events, _ = node.events_since(cursor)
            gap = gap or not in_retention
            scanned = events[:limit]
            matching = [
                e
                for e in scanned
                if (peer is None or str(e.peer_id) == peer)
                and (state is None or _state_text(e.state) == state)
            ]
            if scanned:
                cursor = scanned[-1].id
            remaining = deadline - loop.time()
            if matching or subscription is None or remaining <= 0 or len(scanned) == limit:
                return EventPage(
                    events=[event_public(e) for e in matching], next_cursor=cursor, gap=gap
                )
            # The subscription was opened before the first read, so an event published
            # since is queued there: no wake-up can be missed. Each wake-up re-reads.
            with contextlib.suppress(TimeoutError, StopAsyncIteration):
                await asyncio.wait_for(anext(subscription), remaining)
    finally:
        if subscription is not None:
            subscription.unsubscribe()
