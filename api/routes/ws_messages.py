"""``WS /v1/messages?stream=&peer=``: fan-in of received messages.

Every message the node receives (optionally only one stream and/or one peer) goes out
as a JSON text frame ``{"type": "message", "seq", "peer_id", "stream", "data", "received_at"}``
with the payload in base64 and ``seq`` the engine's node-wide receive sequence number.
The first frame is ``ready``. A client reading too slowly gets ``lag`` / ``dropped``
frames and finally a close with code 4008, as on the stream channel. The channel takes
no commands: any frame the client sends is answered with an ``error`` frame (code
``unsupported``), subject to the per-connection rate limit (4029 when it persists).

Scope: ``monitor``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket

from api.auth import Scope
from api.channels import frames
from api.routes.ws_common import (
    RATE_LIMITED_CLOSE,
    admit_channel,
    frame_limiter,
    serve_subscription,
)
from api.routes.ws_streams import pump_messages
from api.settings import GatewaySettings
from engine.crypto.identity import PeerId
from engine.stream_name import check_stream_name

__all__ = ["reject_commands", "router"]

router = APIRouter()


@router.websocket("/v1/messages")
async def messages_channel(
    websocket: WebSocket,
    stream: Annotated[str | None, Query(max_length=128)] = None,
    peer: Annotated[str | None, Query(max_length=128)] = None,
) -> None:
    """Fan-in of received messages (see the module docstring)."""

    def check(node: Any) -> PeerId | None:
        pid = PeerId.from_string(peer) if peer else None
        if stream:
            check_stream_name(stream, node.config.max_stream_name_length)
        return pid

    admitted = await admit_channel(websocket, Scope.MONITOR, check)
    if admitted is None:
        return
    gateway, _, node, slot, pid = admitted
    with slot:
        settings = gateway.settings
        subscription = node.messages(stream or None, pid, buffer_size=settings.ws_queue_size)
        await serve_subscription(
            websocket,
            gateway,
            subscription,
            lambda: frames.ready(
                "messages",
                stream=stream or None,
                peer_id=None if pid is None else str(pid),
                queue_size=subscription.buffer_size,
            ),
            lambda tracker, clock: pump_messages(
                websocket, subscription, tracker, clock, binary=False
            ),
            lambda: reject_commands(websocket, settings),
        )


async def reject_commands(websocket: WebSocket, settings: GatewaySettings) -> tuple[int, str]:
    """Reader of a watch-only channel: answer every frame with ``unsupported``.

    Returns:
        ``(close code, reason)``: 0 when the client went away, 4029 when it kept
        sending over the rate limit.
    """
    limiter = frame_limiter(settings)
    while True:
        event = await websocket.receive()
        if event["type"] == "websocket.disconnect":
            return 0, ""
        verdict = limiter.check()
        if verdict.allowed:
            frame = frames.error("unsupported", "this channel takes no commands", 400)
        else:
            frame = frames.error(
                "rate_limited", "too many frames; slow down", 429, retry_after=verdict.retry_after
            )
        await websocket.send_text(frames.encode(frame))
        if verdict.close:
            return RATE_LIMITED_CLOSE
