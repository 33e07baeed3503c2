"""``/v1/events``: connection events after a cursor (the REST view of the event log)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Limit, Monitor, NodeDep
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import EventPage
from api.views import event_public

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"], responses=error_responses(*AUTH_ERRORS))


@router.get("", summary="Connection events after a cursor")
async def list_events(
    _: Monitor,
    node: NodeDep,
    since: Annotated[int, Query(ge=0, description="Last event id seen (0 = from the start).")] = 0,
    limit: Limit = 100,
) -> EventPage:
    """Events with ``id > since``, oldest first; ``gap`` says when some were evicted."""
    events, in_retention = node.events_since(since)
    page = events[:limit]
    next_cursor = page[-1].id if page else max(since, 0)
    return EventPage(
        events=[event_public(e) for e in page], next_cursor=next_cursor, gap=not in_retention
    )
