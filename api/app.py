"""The app factory: :func:`create_app` wires settings, node, key store and limiter.

Nothing is built at import time. The lifespan starts the node (when the app owns it),
the message retention consumer, the loop-lag monitor and the bootstrap dials, and on
shutdown stops them in reverse order: background tasks first, then the node (which
flushes its repository), then the limiter and ticket store connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from api.auth import ApiKeyVerifier, MemoryTicketStore, RedisTicketStore, TicketStore
from api.errors import install_error_handlers
from api.health import LoopLagMonitor
from api.metrics import EngineCollector, GatewayMetrics, MetricsMiddleware
from api.middleware import BodyLimitMiddleware, RateLimitHeadersMiddleware
from api.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from api.retention import MessageRetention
from api.routes import ROUTERS
from api.settings import GatewaySettings
from api.state import GatewayState
from engine.events import run_cursor_base

__all__ = ["API_VERSION", "create_app", "operation_id"]

log = logging.getLogger("glueberry.api")

API_VERSION = "1.0.0"

_DESCRIPTION = """\
REST gateway of a Glueberry P2P node: address book, connections, blacklist, statistics,
encrypted messages (send, long-poll receive) and the app-mode handshake.

Every route except `/healthz` and `/readyz` needs `Authorization: Bearer <API key>`
(create one with `glueberry apikey create --scope admin`). Scopes: `monitor` (read and
watch), `peers:write`, `streams:send`, `admin` (everything).

Errors always have the shape `{"error": {"code", "message", "details"}}`.
Rate limits answer 429 with `Retry-After` and `RateLimit-*` headers.
"""


def operation_id(route: APIRoute) -> str:
    """Stable operation ids: the handler's name (unique across the app by construction)."""
    return route.name


def create_app(
    settings: GatewaySettings,
    *,
    node: Any = None,
    api_keys: ApiKeyVerifier | None = None,
    database_check: Callable[[], Awaitable[Any]] | None = None,
    rate_limiter: RateLimiter | None = None,
    ticket_store: TicketStore | None = None,
    manage_node: bool = True,
    persistent: bool = False,
    on_started: Callable[[FastAPI], Awaitable[None] | None] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the gateway app.

    Args:
        settings: gateway settings.
        node: the engine :class:`engine.Node` (``None`` for an app without a node,
            e.g. to export the OpenAPI document; node routes then answer 503).
        api_keys: the API-key repository (``verify(key)``); ``None`` refuses every key.
        database_check: coroutine function raising when the database is unreachable,
            used by ``/readyz``.
        rate_limiter: bucket store; default Redis when ``settings.redis_url`` is set,
            memory otherwise.
        ticket_store: ticket store; default Redis or memory like the limiter.
        manage_node: start the node on startup (if not running) and stop it on shutdown.
        persistent: whether the node's repository is durable (reported as ``persisted``).
        on_started: called once startup completed (the CLI prints addresses there).
        on_shutdown: awaited last on shutdown (the CLI closes the database there).

    Returns:
        The FastAPI application.
    """
    registry = CollectorRegistry(auto_describe=True)
    metrics = GatewayMetrics(registry)
    if rate_limiter is None:
        rate_limiter = (
            RedisRateLimiter(settings.redis_url) if settings.redis_url else MemoryRateLimiter()
        )
    if ticket_store is None:
        ticket_store = (
            RedisTicketStore(settings.redis_url)
            if settings.redis_url
            else MemoryTicketStore(settings.max_tickets)
        )
    state = GatewayState(
        settings=settings,
        node=node,
        api_keys=api_keys,
        limiter=rate_limiter,
        tickets=ticket_store,
        retention=MessageRetention(settings.message_retention, first_seq=run_cursor_base()),
        registry=registry,
        metrics=metrics,
        loop_lag=LoopLagMonitor(),
        database_check=database_check,
        persistent=persistent,
    )
    registry.register(EngineCollector(lambda: state.node))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started_node = False
        subscription: Any = None
        try:
            state.loop_lag.start()
            if state.node is not None:
                if manage_node and not state.node.running:
                    await state.node.start()
                    started_node = True
                subscription = state.node.messages()
                state.spawn(state.retention.consume(subscription), "glueberry-retention")
                if settings.bootstrap_peers:
                    from api.bootstrap import bootstrap

                    state.spawn(
                        bootstrap(state.node, settings.bootstrap_peers), "glueberry-bootstrap"
                    )
            if on_started is not None:
                result = on_started(app)
                if result is not None:
                    await result
            yield
        finally:
            if subscription is not None:
                subscription.unsubscribe()
            for task in list(state.background):
                task.cancel()
            if state.background:
                await asyncio.gather(*state.background, return_exceptions=True)
            await state.loop_lag.stop()
            if started_node:
                await state.node.stop()
            await state.limiter.aclose()
            aclose = getattr(state.tickets, "aclose", None)
            if aclose is not None:
                await aclose()
            if on_shutdown is not None:
                await on_shutdown()

    app = FastAPI(
        title="Glueberry gateway",
        version=API_VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        openapi_tags=[
            {"name": "node", "description": "The local node."},
            {"name": "peers", "description": "Address book and per-peer connections."},
            {"name": "connections", "description": "Live connections."},
            {"name": "blacklist", "description": "Bans by peer id or CIDR."},
            {"name": "stats", "description": "Traffic statistics."},
            {"name": "messages", "description": "Send and long-poll receive."},
            {"name": "events", "description": "Connection events."},
            {"name": "handshake", "description": "App-controlled handshake."},
            {"name": "auth", "description": "Browser tickets."},
            {"name": "health", "description": "Liveness, readiness, metrics."},
        ],
    )
    app.state.gateway = state
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)

    # Middleware order (outermost last): metrics see every request including 413s;
    # the body limit runs before anything reads the body.
    app.add_middleware(RateLimitHeadersMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=[
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
        )
    app.add_middleware(BodyLimitMiddleware, max_body_size=settings.max_body_size)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
