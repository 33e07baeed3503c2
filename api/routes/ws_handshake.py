"""``WS /v1/handshake``: the application-driven handshake (``handshake_mode = app``).

- **Server -> client.** ``ready`` (with the node's ``handshake_mode``), then every
  handshake message a peer sends: ``{"type": "handshake_message", "peer_id", "data",
  "received_at"}`` (payload in base64). A client reading too slowly gets ``lag`` /
  ``dropped`` frames and, past ``ws_max_dropped``, a close with 4008.
- **Client -> server** commands, each answered in order by ``{"type": "ack", "op",
  "id"}`` or ``{"type": "nack", "op", "id", "code", "status", "message"}`` (``id`` echoes
  the client's correlation id):

  - ``{"type": "send", "id", "peer_id", "data": "<base64>"}`` send a handshake message;
  - ``{"type": "prepare", "id", "peer_id", "streams": [...], "public_key"?}`` derive the
    stream key (the peer's raw Ed25519 key in base64; default: taken from its peer id)
    and become ready to receive;
  - ``{"type": "finalize", "id", "peer_id"}`` enable sending; the peer becomes
    ``established``.

Watch connection events on ``/v1/events?state=connected`` to learn when to start.
Scopes: ``monitor`` to open and watch; ``peers:write`` for the commands (per frame).
Commands are rate limited per connection (``rate_limited`` nack, 4029 when it persists).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, WebSocket

from api.auth import Principal, Scope
from api.channels import frames
from api.channels.codes import CloseCode
from api.channels.outbound import OutboundTracker, WriteClock
from api.routes.ws_common import (
    RATE_LIMITED_CLOSE,
    admit_channel,
    error_fields,
    frame_limiter,
    serve_subscription,
)
from api.settings import GatewaySettings
from engine.crypto.identity import PeerId

__all__ = ["router"]

log = logging.getLogger("glueberry.api.channels")

router = APIRouter()


@router.websocket("/v1/handshake")
async def handshake_channel(websocket: WebSocket) -> None:
    """App-mode handshake channel (see the module docstring)."""
    admitted = await admit_channel(websocket, Scope.MONITOR, lambda node: None)
    if admitted is None:
        return
    gateway, principal, node, slot, _ = admitted
    with slot:
        settings = gateway.settings
        subscription = node.handshake_messages()
        mode = getattr(node.config, "handshake_mode", "auto")
        await serve_subscription(
            websocket,
            gateway,
            subscription,
            lambda: frames.ready(
                "handshake",
                handshake_mode=str(getattr(mode, "value", mode)),
                queue_size=subscription.buffer_size,
            ),
            lambda tracker, clock: _forward(websocket, subscription, tracker, clock),
            lambda: _commands(websocket, node, principal, settings),
        )


async def _forward(
    websocket: WebSocket, subscription: Any, tracker: OutboundTracker, clock: WriteClock
) -> tuple[int, str]:
    # Handshake messages carry no engine sequence number: positions on this connection
    # stand in for it in ``dropped`` frames.
    loop = asyncio.get_running_loop()
    try:
        async for message in subscription:
            position = tracker.delivered + 1
            out = tracker.before_send(position, subscription.pending, subscription.dropped)
            if tracker.exceeded:
                out += tracker.abandon(1 + subscription.pending)
            else:
                out.append(frames.handshake_message(message))
            for frame in out:
                clock.since = loop.time()
                await websocket.send_text(frames.encode(frame))
            clock.since = None
            if tracker.exceeded:
                return CloseCode.TOO_SLOW, tracker.close_reason()
            tracker.sent(position)
    except Exception:
        return 0, ""
    return CloseCode.GOING_AWAY, "the node stopped"


async def _commands(
    websocket: WebSocket, node: Any, principal: Principal, settings: GatewaySettings
) -> tuple[int, str]:
    limiter = frame_limiter(settings)
    may_write = principal.allows(Scope.PEERS_WRITE)
    while True:
        event = await websocket.receive()
        if event["type"] == "websocket.disconnect":
            return 0, ""
        text = event.get("text")
        verdict = limiter.check()
        if not verdict.allowed:
            ref = frames.command_ref(text) if text else None
            nack = frames.command_nack(None, ref, "rate_limited", "too many frames", 429)
            nack["retry_after"] = round(verdict.retry_after, 3)
            await websocket.send_text(frames.encode(nack))
            if verdict.close:
                return RATE_LIMITED_CLOSE
            continue
        reply = await _execute(node, text, may_write)
        await websocket.send_text(frames.encode(reply))


async def _execute(node: Any, text: str | None, may_write: bool) -> dict[str, Any]:
    """Run one command; the reply frame (never raises)."""
    if text is None:
        return frames.command_nack(None, None, "bad_frame", "commands are JSON text frames", 400)
    try:
        command = frames.parse_handshake_command(text)
    except frames.FrameError as exc:
        return frames.command_nack(None, frames.command_ref(text), exc.code, exc.message, 400)
    op = command.type
    if not may_write:
        return frames.command_nack(
            op, command.id, "forbidden", "this API key lacks the 'peers:write' scope", 403
        )
    try:
        peer = PeerId.from_string(command.peer_id)
        if isinstance(command, frames.SendCommand):
            await node.send_handshake_message(peer, command.payload())
        elif isinstance(command, frames.PrepareCommand):
            key = command.key_bytes()
            await node.prepare_streams(
                peer, peer.public_key if key is None else key, list(command.streams)
            )
        else:
            await node.finalize_handshake(peer)
    except frames.FrameError as exc:
        return frames.command_nack(op, command.id, exc.code, exc.message, 400)
    except Exception as exc:  # every failure goes back to the client as a nack
        code, message, status = error_fields(exc)
        if status >= 500:
            log.warning("handshake %s failed: %s", op, code, exc_info=code == "internal_error")
        return frames.command_nack(op, command.id, code, message, status)
    return frames.command_ack(op, command.id)
