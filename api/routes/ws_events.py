"""``/v1/events`` as a push stream: WebSocket, and Server-Sent Events for browsers.

- ``WS  /v1/events?peer=&state=&since=&snapshot=``
- ``GET /v1/events/stream?peer=&state=&since=&snapshot=`` (``text/event-stream``; the
  ``Last-Event-ID`` header, which EventSource sends when it reconnects, takes precedence
  over ``since``). Works from ``curl -N``.

Both carry the frames of :func:`api.channels.event_feed.event_feed`: ``ready``, then
``snapshot`` (when asked, or after a ``reset``), ``event`` frames in id order, and
``heartbeat`` frames when idle. ``peer`` and ``state`` may repeat or hold
comma-separated values. Event ids are global: resume with the id of the last ``event``,
``snapshot`` or ``heartbeat`` received, and no matching event is missed; a cursor that
cannot be resumed gets an explicit ``reset`` followed by a fresh ``snapshot``.

Scope: ``monitor``. Frames a WebSocket client sends are answered with ``error``
(``unsupported``) and rate limited (4029 when it persists).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope

from api.auth import Scope
from api.channels import frames
from api.channels.codes import CloseCode
from api.channels.event_feed import event_feed, parse_filter
from api.channels.outbound import WriteClock
from api.channels.sse import RETRY_MS, sse_event
from api.deps import authenticate_connection, bearer_scheme
from api.errors import AUTH_ERRORS, ApiError, error_responses
from api.routes.ws_common import ChannelSlot, admit_channel, channel_state, run_channel
from api.routes.ws_messages import reject_commands
from api.state import GatewayState
from engine.errors import GlueberryError, NodeNotRunningError

__all__ = ["router"]

router = APIRouter()

_SSE_EXAMPLE = (
    "retry: 2000\n\n"
    'event: ready\ndata: {"type":"ready","channel":"events","last_event_id":41}\n\n'
    "id: 42\nevent: event\n"
    'data: {"type":"event","id":42,'
    '"peer_id":"12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",'
    '"state":"established","previous_state":"connected","timestamp":1767225600.0,'
    '"error_code":null,"error_message":null}\n\n'
)

PeerQuery = Annotated[
    list[str], Query(description="Only these peer ids (repeat or comma-separate).")
]
StateQuery = Annotated[
    list[str], Query(description="Only transitions into these states (repeat or comma-separate).")
]
SinceQuery = Annotated[
    int | None, Query(ge=0, description="Resume after this event id (omit: live changes only).")
]
SnapshotQuery = Annotated[
    bool, Query(description="Send the current peer states first, then the changes.")
]


def _filter(peer: list[str], state: list[str]) -> Any:
    try:
        return parse_filter(peer, state)
    except GlueberryError as exc:
        raise ApiError.from_engine(exc) from None
    except ValueError:
        raise ApiError(422, "invalid_state", "state must be a connection state name") from None


@router.websocket("/v1/events")
async def events_channel(
    websocket: WebSocket,
    peer: PeerQuery = [],  # noqa: B006 - FastAPI copies list defaults per request
    state: StateQuery = [],  # noqa: B006
    since: SinceQuery = None,
    snapshot: SnapshotQuery = False,
) -> None:
    """Connection events over a WebSocket (see the module docstring)."""
    admitted = await admit_channel(websocket, Scope.MONITOR, lambda node: _filter(peer, state))
    if admitted is None:
        return
    gateway, _, node, slot, event_filter = admitted
    with slot:
        await websocket.accept()
        feed = event_feed(
            node,
            event_filter,
            since=since,
            snapshot=snapshot,
            heartbeat=gateway.settings.ws_heartbeat,
        )
        reader = asyncio.ensure_future(reject_commands(websocket, gateway.settings))
        clock = WriteClock()
        writer = asyncio.ensure_future(_write_feed(websocket, feed, clock))
        try:
            await run_channel(websocket, reader, writer, gateway.settings, clock)
        finally:
            await feed.aclose()


async def _write_feed(
    websocket: WebSocket, feed: AsyncGenerator[dict[str, Any], None], clock: WriteClock
) -> tuple[int, str]:
    loop = asyncio.get_running_loop()
    try:
        async for frame in feed:
            clock.since = loop.time()
            await websocket.send_text(frames.encode(frame))
            clock.since = None
    except Exception:
        return 0, ""  # the client went away
    return CloseCode.GOING_AWAY, "the node stopped"


@router.get(
    "/v1/events/stream",
    tags=["events"],
    summary="Connection events as Server-Sent Events",
    dependencies=[Depends(bearer_scheme)],
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": _SSE_EXAMPLE,
                }
            },
            "description": "An endless `text/event-stream`; see openapi/asyncapi.yaml.",
        },
        **error_responses(*AUTH_ERRORS, 422, 503),
    },
)
async def events_sse(
    request: Request,
    peer: PeerQuery = [],  # noqa: B006
    state: StateQuery = [],  # noqa: B006
    since: SinceQuery = None,
    snapshot: SnapshotQuery = False,
    last_event_id: Annotated[
        str | None, Header(description="Set by EventSource on reconnection; wins over since.")
    ] = None,
    ticket: Annotated[
        str | None,
        Query(max_length=256, description="Single-use ticket (browsers) instead of a key."),
    ] = None,
) -> StreamingResponse:
    """Connection events as ``text/event-stream`` (``?ticket=`` for EventSource).

    Each SSE event is named after the frame type and carries the frame's JSON in its
    ``data:`` line; ``event``, ``snapshot`` and ``heartbeat`` events have an ``id:``.
    """
    gateway: GatewayState = request.app.state.gateway
    principal = await authenticate_connection(request, gateway, Scope.MONITOR)
    node = gateway.node
    if node is None or not node.running:
        raise NodeNotRunningError("the node is not running")
    event_filter = _filter(peer, state)
    if last_event_id is not None and last_event_id.strip():
        try:
            since = int(last_event_id.strip())
        except ValueError:
            raise ApiError(422, "invalid_cursor", "Last-Event-ID must be an event id") from None
        if since < 0:
            raise ApiError(422, "invalid_cursor", "Last-Event-ID must be an event id")
    slot = channel_state(gateway, request.app).claim(principal.key_id)
    feed = event_feed(
        node, event_filter, since=since, snapshot=snapshot, heartbeat=gateway.settings.ws_heartbeat
    )

    async def body() -> AsyncIterator[str]:
        try:
            yield f"retry: {RETRY_MS}\n\n"
            async for frame in feed:
                yield sse_event(frame)
        finally:
            await feed.aclose()

    return _ChannelResponse(
        slot,
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _ChannelResponse(StreamingResponse):
    """A streaming response that gives its channel slot back however it ends."""

    def __init__(self, slot: ChannelSlot, content: AsyncIterator[str], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._slot = slot

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()
