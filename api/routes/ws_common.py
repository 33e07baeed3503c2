"""What every realtime channel shares: authentication, refusal, per-app channel state.

Authentication of a channel (WebSocket or SSE) happens before it is accepted, with
:func:`api.deps.authenticate_connection`: ``Origin`` allow-list, ``Authorization: Bearer``
or a single-use ``?ticket=``, one charge of the HTTP rate limiter, and the channel's
scope (``monitor`` to watch; sends need ``streams:send`` or ``peers:write``, checked per
frame by the channels). Each API key holds at most ``ws_max_channels_per_key`` channels
open (:meth:`ChannelState.claim`); one more is refused with 429 ``too_many_channels``.

A WebSocket refused before accept gets an HTTP error response (401 / 403 / 422 / 429 /
503, the gateway's JSON error shape) through the ASGI ``websocket.http.response``
extension, or, on servers without it, is accepted and closed at once with the 44xx code
of :class:`~api.channels.codes.CloseCode`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.websockets import WebSocket, WebSocketState

from api.auth import Principal, Scope
from api.channels import frames
from api.channels.codes import CloseCode, close_reason
from api.channels.idempotency import IdempotencyCache
from api.channels.inbound import FrameRateLimiter
from api.channels.outbound import OutboundTracker, WriteClock
from api.deps import authenticate_connection
from api.errors import ApiError, error_response, status_for
from api.settings import GatewaySettings
from api.state import GatewayState
from engine.errors import GlueberryError, NodeNotRunningError

__all__ = [
    "RATE_LIMITED_CLOSE",
    "ChannelSlot",
    "ChannelState",
    "admit_channel",
    "channel_state",
    "close_quietly",
    "error_fields",
    "frame_limiter",
    "open_channel",
    "refuse",
    "run_channel",
    "serve_subscription",
]

T = TypeVar("T")

#: A reader's close decision when the client kept sending over the frame rate limit.
RATE_LIMITED_CLOSE: tuple[int, str] = (
    CloseCode.RATE_LIMITED,
    "rate limited: too many frames over the limit",
)

#: The body of a channel's reader or writer task; it returns ``(close code, reason)``.
_TaskBody = Coroutine[Any, Any, tuple[int, str]]

_CLOSE_BY_STATUS = {
    401: CloseCode.UNAUTHORIZED,
    403: CloseCode.FORBIDDEN,
    429: CloseCode.RATE_LIMITED,
    503: CloseCode.UNAVAILABLE,
}


class ChannelSlot:
    """One open channel counted against its API key; :meth:`release` once it ends.

    Releasing twice is harmless, so every exit path may release.
    """

    def __init__(self, state: ChannelState, key_id: str) -> None:
        self._state = state
        self._key_id: str | None = key_id

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        key_id, self._key_id = self._key_id, None
        if key_id is not None:
            self._state.release(key_id)

    def __enter__(self) -> ChannelSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class ChannelState:
    """Per-app state of the realtime channels (created on first use).

    ``per_key`` counts the open channels (WebSocket and SSE) of each API key, bounded
    by ``max_channels_per_key``.
    """

    idempotency: IdempotencyCache
    max_channels_per_key: int = 64
    open_channels: int = 0
    per_key: dict[str, int] = field(default_factory=dict)

    def claim(self, key_id: str) -> ChannelSlot:
        """Count one more open channel of ``key_id``.

        Returns:
            the slot; release it when the channel ends.

        Raises:
            ApiError: 429 ``too_many_channels`` when the key already has
                ``max_channels_per_key`` channels open.
        """
        count = self.per_key.get(key_id, 0)
        if count >= self.max_channels_per_key:
            raise ApiError(
                429,
                "too_many_channels",
                f"this API key already has {count} channels open "
                f"(limit {self.max_channels_per_key}); close one first",
                details={"limit": self.max_channels_per_key},
            )
        self.per_key[key_id] = count + 1
        return ChannelSlot(self, key_id)

    def release(self, key_id: str) -> None:
        """One channel of ``key_id`` ended (use :meth:`ChannelSlot.release`)."""
        count = self.per_key.get(key_id, 0) - 1
        if count > 0:
            self.per_key[key_id] = count
        else:
            self.per_key.pop(key_id, None)


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
        state = ChannelState(cache, settings.ws_max_channels_per_key)
        app.state.channels = state
    return state


def error_fields(exc: BaseException) -> tuple[str, str, int]:
    """``(code, message, status)`` of an error, for control frames (no internals)."""
    if isinstance(exc, ApiError):
        return exc.code, exc.message, exc.status
    if isinstance(exc, GlueberryError):
        return exc.code, exc.message, status_for(exc)
    return "internal_error", "internal server error", 500


def frame_limiter(settings: GatewaySettings) -> FrameRateLimiter:
    """The inbound frame rate limit of one connection (``ws_rate_*`` settings)."""
    return FrameRateLimiter(
        settings.ws_rate_limit, settings.ws_rate_burst, settings.ws_rate_close_after
    )


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


async def admit_channel(
    websocket: WebSocket, scope: Scope, check: Callable[[Any], T]
) -> tuple[GatewayState, Principal, Any, ChannelSlot, T] | None:
    """Everything a WebSocket channel does before accept: :func:`open_channel`, the
    route's own parameter ``check`` and :meth:`ChannelState.claim`.

    Args:
        websocket: the socket, not accepted yet.
        scope: the scope needed to open the channel.
        check: called with the node; checks the route's parameters and returns what the
            route needs of them. An engine error it raises refuses the channel with that
            error's status, code and message.

    Returns:
        ``(gateway, principal, node, slot, checked)``, or ``None`` when the channel was
        refused (the refusal is already sent; see :func:`refuse`). Release the slot when
        the channel ends (``with slot:``).
    """
    try:
        gateway, principal, node = await open_channel(websocket, scope)
        try:
            checked = check(node)
        except GlueberryError as exc:
            raise ApiError.from_engine(exc) from None
        slot = channel_state(gateway, websocket.app).claim(principal.key_id)
    except ApiError as exc:
        await refuse(websocket, exc)
        return None
    return gateway, principal, node, slot, checked


async def serve_subscription(
    websocket: WebSocket,
    gateway: GatewayState,
    subscription: Any,
    ready: Callable[[], dict[str, Any]],
    writer: Callable[[OutboundTracker, WriteClock], _TaskBody],
    reader: Callable[[], _TaskBody],
) -> None:
    """Accept a channel that forwards an engine subscription, and run it until it ends.

    Sends the ``ready`` frame right after accept (a client gone by then ends the channel
    quietly), starts ``writer`` (forwards the subscription, with the connection's lag/drop
    accounting and write clock) and ``reader`` (the client's frames) and supervises them
    with :func:`run_channel`. The subscription is unsubscribed however the channel ends.

    Args:
        websocket: the socket, admitted but not accepted yet.
        gateway: the gateway state (settings, channel state).
        subscription: the engine subscription (a bounded queue with ``buffer_size``,
            ``pending``, ``dropped`` and ``unsubscribe()``).
        ready: builds the ``ready`` frame (called after accept).
        writer: starts the writer task, given the tracker and the clock.
        reader: starts the reader task.
    """
    settings = gateway.settings
    channels = channel_state(gateway, websocket.app)
    try:
        await websocket.accept()
        await websocket.send_text(frames.encode(ready()))
    except Exception:
        subscription.unsubscribe()
        return
    channels.open_channels += 1
    tracker = OutboundTracker(
        subscription.buffer_size,
        max(1, int(subscription.buffer_size * settings.ws_lag_threshold)),
        settings.ws_max_dropped,
    )
    clock = WriteClock()
    writer_task = asyncio.ensure_future(writer(tracker, clock))
    reader_task = asyncio.ensure_future(reader())
    try:
        await run_channel(websocket, reader_task, writer_task, settings, clock)
    finally:
        subscription.unsubscribe()
        channels.open_channels -= 1


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
