"""Messages: send one, and read received ones by long-poll from the retention buffer.

- ``POST /v1/peers/{peer_id}/streams/{stream}/messages`` sends one message.
- ``GET  /v1/peers/{peer_id}/streams/{stream}/messages?since=&wait=`` reads that peer's
  messages on that stream; ``GET /v1/messages?since=&wait=&stream=&peer=`` reads all.

Cursors (``seq``) are gateway-wide; pass the answer's ``next_cursor`` as ``since``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Gateway, Limit, Monitor, NodeDep, PeerIdPath, StreamsSend
from api.errors import AUTH_ERRORS, error_responses
from api.schemas import MessageCreate, MessagePage, SendResult
from api.state import GatewayState
from api.views import message_public
from engine.crypto.identity import PeerId

__all__ = ["router"]

router = APIRouter(tags=["messages"], responses=error_responses(*AUTH_ERRORS))

StreamPath = Annotated[
    str, Path(min_length=1, max_length=128, description="Stream name.", examples=["messages"])
]
Since = Annotated[
    int, Query(ge=0, description="Cursor: the last `seq` already read (0 = everything).")
]
Wait = Annotated[
    float,
    Query(ge=0, le=300, description="Seconds to wait for a message when none is there yet."),
]


async def _read(
    gateway: GatewayState,
    since: int,
    wait: float,
    limit: int,
    peer: str | None,
    stream: str | None,
) -> MessagePage:
    page = await gateway.retention.wait_read(
        since,
        wait=min(wait, gateway.settings.max_long_poll_wait),
        limit=min(limit, gateway.settings.max_page_size),
        peer_id=peer,
        stream=stream,
    )
    return MessagePage(
        messages=[message_public(m) for m in page.messages],
        next_cursor=page.next_cursor,
        gap=page.gap,
        oldest=page.oldest,
    )


@router.post(
    "/v1/peers/{peer_id}/streams/{stream}/messages",
    summary="Send one message",
    responses=error_responses(403, 409, 413, 422, 502, 504),
)
async def send_message(
    _: StreamsSend,
    peer_id: PeerIdPath,
    stream: StreamPath,
    body: MessageCreate,
    node: NodeDep,
) -> SendResult:
    """Encrypt and send one message on a named stream of an Established peer."""
    data = body.payload()
    await node.send(peer_id, stream, data, timeout=body.timeout)
    return SendResult(bytes=len(data))


@router.get(
    "/v1/peers/{peer_id}/streams/{stream}/messages",
    summary="Receive messages from a peer's stream (long-poll)",
    responses=error_responses(422),
)
async def receive_peer_messages(
    _: Monitor,
    peer_id: PeerIdPath,
    stream: StreamPath,
    gateway: Gateway,
    since: Since = 0,
    wait: Wait = 0.0,
    limit: Limit = 100,
) -> MessagePage:
    """Messages received from ``peer_id`` on ``stream`` after ``since``, waiting up to
    ``wait`` seconds for the first one."""
    return await _read(gateway, since, wait, limit, str(peer_id), stream)


@router.get(
    "/v1/messages",
    summary="Receive messages from every peer (long-poll)",
    responses=error_responses(422),
)
async def receive_messages(
    _: Monitor,
    gateway: Gateway,
    since: Since = 0,
    wait: Wait = 0.0,
    limit: Limit = 100,
    stream: Annotated[str | None, Query(max_length=128, description="Only this stream.")] = None,
    peer: Annotated[str | None, Query(max_length=128, description="Only this peer id.")] = None,
) -> MessagePage:
    """Messages received after ``since`` (optionally one stream / one peer)."""
    peer_text = None if peer is None else str(PeerId.from_string(peer))
    return await _read(gateway, since, wait, limit, peer_text, stream)
