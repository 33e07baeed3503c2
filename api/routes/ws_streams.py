"""``WS /v1/peers/{peer_id}/streams/{stream}``: a bidirectional stream channel.

- **Client -> server.** A binary frame is one message to send. A text frame
  ``{"type": "send", "data": "<base64>", "key": "<idempotency key>"}`` sends too, and a
  ``key`` makes it idempotent: a send whose key was already acknowledged (on this or an
  earlier connection of the same API key, peer and stream) is acknowledged with
  ``duplicate: true`` and not sent again. Each API key holds at most
  ``idempotency_keys_per_api_key`` keys; a key in flight is never forgotten, so when
  all of them are in flight a new key is nacked with ``idempotency_keys_exhausted``
  (status 429, retryable).
- **Every inbound frame gets exactly one reply**, in order: ``{"type": "ack", "seq": n}``
  or ``{"type": "nack", "seq": n, "code", "status", "message"}``, where ``n`` counts the
  frames the client sent on this connection (1, 2, ...). A nack means nothing was sent.
- **Backpressure.** The server reads the next frame only after the engine accepted the
  previous one; while the engine's flow control blocks the send, the server stops
  reading the socket, so TCP pushes back to the client.
- **Server -> client.** Messages received from the peer on this stream are binary
  frames. A client that reads too slowly gets ``lag`` and ``dropped`` control frames and,
  past ``ws_max_dropped`` dropped messages (or a write stalled for ``ws_send_timeout``
  seconds), a close with code 4008.
- **Limits.** Inbound frames are rate limited per connection (``ws_rate_limit``): a
  frame over the limit is nacked with ``rate_limited`` (status 429, ``retry_after``);
  after ``ws_rate_close_after`` such frames in a row the server closes with 4029.

Scopes: ``monitor`` to open and receive; ``streams:send`` to send (checked per frame).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, WebSocket

from api.auth import Principal, Scope
from api.channels import frames
from api.channels.codes import CloseCode
from api.channels.idempotency import IdempotencyCache, KeyState
from api.channels.outbound import OutboundTracker, WriteClock
from api.routes.ws_common import (
    RATE_LIMITED_CLOSE,
    admit_channel,
    channel_state,
    error_fields,
    frame_limiter,
    serve_subscription,
)
from api.settings import GatewaySettings
from engine.crypto.identity import PeerId
from engine.stream_name import check_stream_name

__all__ = ["pump_messages", "router"]

log = logging.getLogger("glueberry.api.channels")

router = APIRouter()


@router.websocket("/v1/peers/{peer_id}/streams/{stream}")
async def stream_channel(websocket: WebSocket, peer_id: str, stream: str) -> None:
    """Bidirectional channel on one named stream of one peer (see the module docstring)."""

    def check(node: Any) -> PeerId:
        pid = PeerId.from_string(peer_id)
        check_stream_name(stream, node.config.max_stream_name_length)
        return pid

    admitted = await admit_channel(websocket, Scope.MONITOR, check)
    if admitted is None:
        return
    gateway, principal, node, slot, pid = admitted
    with slot:
        settings = gateway.settings
        idempotency = channel_state(gateway, websocket.app).idempotency
        # Subscribe before accepting: every message received from here on is delivered.
        subscription = node.messages(stream, pid, buffer_size=settings.ws_queue_size)
        await serve_subscription(
            websocket,
            gateway,
            subscription,
            lambda: frames.ready(
                "stream",
                peer_id=str(pid),
                stream=stream,
                state=str(node.connection_state(pid).value),
                queue_size=subscription.buffer_size,
                max_message_size=int(node.config.max_message_size),
            ),
            lambda tracker, clock: pump_messages(
                websocket, subscription, tracker, clock, binary=True
            ),
            lambda: _read_sends(websocket, node, pid, stream, principal, settings, idempotency),
        )


async def pump_messages(
    websocket: WebSocket,
    subscription: Any,
    tracker: OutboundTracker,
    clock: WriteClock,
    *,
    binary: bool,
) -> tuple[int, str]:
    """Forward received messages to the client with lag/drop accounting.

    Args:
        websocket: the accepted socket.
        subscription: the engine message subscription (the bounded queue).
        tracker: the connection's accounting.
        clock: set while a write is in progress (the supervisor detects stalls).
        binary: send payloads as binary frames (stream channel) or ``message`` JSON
            frames (fan-in channel).

    Returns:
        ``(close code, reason)``; code 0 when the client went away.
    """
    loop = asyncio.get_running_loop()
    send_text, send_bytes = websocket.send_text, websocket.send_bytes
    try:
        async for message in subscription:
            for frame in tracker.before_send(
                message.seq, subscription.pending, subscription.dropped
            ):
                clock.since = loop.time()
                await send_text(frames.encode(frame))
            if tracker.exceeded:
                for frame in tracker.abandon(1 + subscription.pending):
                    clock.since = loop.time()
                    await send_text(frames.encode(frame))
                return CloseCode.TOO_SLOW, tracker.close_reason()
            clock.since = loop.time()
            if binary:
                await send_bytes(message.data)
            else:
                await send_text(frames.encode(frames.message_frame(message)))
            clock.since = None
            tracker.sent(message.seq)
        # The subscription ended: the node stopped. Report drops not yet reported.
        for frame in tracker.before_send(None, 0, subscription.dropped):
            clock.since = loop.time()
            await send_text(frames.encode(frame))
    except Exception:
        return 0, ""  # the client went away
    return CloseCode.GOING_AWAY, "the node stopped"


async def _read_sends(
    websocket: WebSocket,
    node: Any,
    peer: PeerId,
    stream: str,
    principal: Principal,
    settings: GatewaySettings,
    cache: IdempotencyCache,
) -> tuple[int, str]:
    """Read frames one at a time, send each, reply ack/nack. Returns the close decision."""
    limiter = frame_limiter(settings)
    may_send = principal.allows(Scope.STREAMS_SEND)
    owner = principal.key_id
    scope_prefix = (str(peer), stream)
    send_text = websocket.send_text
    seq = 0
    while True:
        event = await websocket.receive()
        if event["type"] == "websocket.disconnect":
            return 0, ""
        seq += 1
        verdict = limiter.check()
        if not verdict.allowed:
            await send_text(
                frames.encode(
                    frames.nack(
                        seq,
                        "rate_limited",
                        "too many frames; slow down",
                        429,
                        retry_after=verdict.retry_after,
                    )
                )
            )
            if verdict.close:
                return RATE_LIMITED_CLOSE
            continue
        data: bytes | None = event.get("bytes")
        key: str | None = None
        if data is None:
            try:
                request = frames.parse_stream_frame(event.get("text") or "")
                data = request.payload()
                key = request.key
            except frames.FrameError as exc:
                await send_text(frames.encode(frames.nack(seq, exc.code, exc.message, 400)))
                continue
        if not may_send:
            await send_text(
                frames.encode(
                    frames.nack(
                        seq, "forbidden", "this API key lacks the 'streams:send' scope", 403, key
                    )
                )
            )
            continue
        cache_key = (*scope_prefix, key) if key is not None else None
        if cache_key is not None:
            state = cache.begin(owner, cache_key)
            if state is KeyState.DONE:
                await send_text(frames.encode(frames.ack(seq, key, duplicate=True)))
                continue
            if state is KeyState.PENDING:
                await send_text(
                    frames.encode(
                        frames.nack(
                            seq,
                            "duplicate_in_flight",
                            "a send with this key is in flight; retry later",
                            409,
                            key,
                        )
                    )
                )
                continue
            if state is KeyState.FULL:
                await send_text(
                    frames.encode(
                        frames.nack(
                            seq,
                            "idempotency_keys_exhausted",
                            "too many keyed sends of this API key in flight; retry later",
                            429,
                            key,
                        )
                    )
                )
                continue
        sent = False
        try:
            await node.send(peer, stream, data)
            sent = True
        except Exception as exc:  # every failure is reported to the client, never raised
            code, message, status = error_fields(exc)
            if code == "internal_error":
                log.error("stream send to %s/%s failed", peer, stream, exc_info=exc)
            await send_text(frames.encode(frames.nack(seq, code, message, status, key)))
            continue
        finally:
            # Also on cancellation: a key must not stay "pending" when its connection dies.
            if cache_key is not None:
                if sent:
                    cache.done(owner, cache_key)
                else:
                    cache.forget(owner, cache_key)
        if key is None:
            await send_text(frames.ack_text(seq))
        else:
            await send_text(frames.encode(frames.ack(seq, key)))
