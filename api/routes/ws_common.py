"""What every realtime channel shares: authentication, refusal, per-app channel state.

Authentication of a channel (WebSocket or SSE) happens before it is accepted, with
:func:`api.deps.authenticate_connection`: ``Origin`` allow-list, ``Authorization: Bearer``
or a single-use ``?ticket=``, one charge of the HTTP rate limiter, and the channel's
scope (``monitor`` to watch; sends need ``streams:send`` or ``peers:write``, checked per
frame by the channels).

A WebSocket refused before accept gets an HTTP error response (401 / 403 / 422 / 429 /
503, the gateway's JSON error shape) through the ASGI ``websocket.http.response``
extension, or, on servers without it, is accepted and closed at once with the 44xx code
of :class:`~api.channels.codes.CloseCode`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from api.auth import Principal, Scope
from api.channels.codes import CloseCode, close_reason
from api.channels.idempotency import IdempotencyCache
from api.channels.outbound import WriteClock
from api.deps import authenticate_connection
from api.errors import ApiError, error_response, status_for
from api.settings import GatewaySettings
from api.state import GatewayState
from engine.errors import GlueberryError, NodeNotRunningError

__all__ = [
    "ChannelState",
    "channel_state",
    "close_quietly",
    "error_fields",
    "open_channel",
    "refuse",
    "run_channel",
]

_CLOSE_BY_STATUS = {
    401: CloseCode.UNAUTHORIZED,
    403: CloseCode.FORBIDDEN,
    429: CloseCode.RATE_LIMITED,
    503: CloseCode.UNAVAILABLE,
}


@dataclass
class ChannelState:
    """Per-app state of the realtime channels (created on first use)."""

    idempotency: IdempotencyCache
    open_channels: int = 0


def channel_state(gateway: GatewayState, app: Any) -> ChannelState:
    """The app's :class:`ChannelState` (kept on ``app.state.channels``)."""
    state: ChannelState | None = getattr(app.state, "channels", None)
    if state is None:
        settings = gateway.settings
        cache = IdempotencyCache(
            settings.idempotency_keys,
            settings.idempotency_ttl,
            max_per_owner=settings.idempotency_keys_per_api_key,
        )
        state = ChannelState(cache)
        app.state.channels = state
    return state


def error_fields(exc: BaseException) -> tuple[str, str, int]:
    """``(code, message, status)`` of an error, for control frames (no internals)."""
    if isinstance(exc, ApiError):
        return exc.code, exc.message, exc.status
    if isinstance(exc, GlueberryError):
        return exc.code, exc.message, status_for(exc)
    return "internal_error", "internal server error", 500


async def refuse(websocket: WebSocket, exc: ApiError) -> None:
    """Refuse a WebSocket that was not accepted yet (HTTP error, or close 44xx)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
        await websocket.send_denial_response(response)
        return
    code = _CLOSE_BY_STATUS.get(exc.status, CloseCode.BAD_REQUEST)
    await websocket.accept()
    await websocket.close(int(code), close_reason(f"{exc.code}: {exc.message}"))


async def open_channel(websocket: WebSocket, scope: Scope) -> tuple[GatewayState, Principal, Any]:
    """Authenticate a WebSocket and find the node; the socket is not accepted yet.

    Returns:
        ``(gateway, principal, node)``.

    Raises:
        ApiError: the channel is refused (the caller passes it to :func:`refuse`).
    """
    gateway: GatewayState = websocket.app.state.gateway
    principal = await authenticate_connection(websocket, gateway, scope)
    node = gateway.node
    if node is None or not node.running:
        error = NodeNotRunningError("the node is not running")
        raise ApiError(503, error.code, error.message)
    return gateway, principal, node


async def close_quietly(websocket: WebSocket, code: int, reason: str = "") -> None:
    """Close unless already closed; a client that is gone is not an error."""
    if websocket.application_state is WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        await websocket.close(code, close_reason(reason))


async def run_channel(
    websocket: WebSocket,
    reader: asyncio.Future[tuple[int, str]],
    writer: asyncio.Future[tuple[int, str]],
    settings: GatewaySettings,
    clock: WriteClock,
) -> None:
    """Supervise a channel's reader and writer tasks until one finishes, then close.

    Each task returns ``(close code, reason)`` (code 0: the client went away). The
    supervisor also closes with 4008 when one write to the client stalls longer than
    ``ws_send_timeout`` (the client stopped reading). The close frame itself waits for
    the socket to be writable, bounded by the same timeout.
    """
    loop = asyncio.get_running_loop()
    timeout = settings.ws_send_timeout
    period = max(0.05, timeout / 4)
    code, reason = int(CloseCode.NORMAL), ""
    try:
        while True:
            done, _ = await asyncio.wait(
                {reader, writer}, timeout=period, return_when=asyncio.FIRST_COMPLETED
            )
            if done:
                first = writer if writer in done else reader
                if not first.cancelled() and first.exception() is None:
                    code, reason = first.result()
                break
            if clock.stalled(loop.time(), timeout):
                code = int(CloseCode.TOO_SLOW)
                reason = f"too slow: a write stalled for more than {timeout:g}s"
                break
    finally:
        for task in (reader, writer):
            task.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)
    if code:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await close_quietly(websocket, code, reason)
