"""The per-app state every route reaches through :mod:`api.deps`.

One :class:`GatewayState` is built by :func:`api.app.create_app` and stored on
``app.state.gateway``; nothing here is global, so tests can run several apps at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from api.auth import ApiKeyVerifier, TicketStore
from api.health import LoopLagMonitor
from api.metrics import GatewayMetrics
from api.ratelimit import RateLimiter
from api.retention import MessageRetention
from api.settings import GatewaySettings

__all__ = ["GatewayState"]


@dataclass
class GatewayState:
    """Everything a request handler may need, owned by one app."""

    settings: GatewaySettings
    node: Any
    api_keys: ApiKeyVerifier | None
    limiter: RateLimiter
    tickets: TicketStore
    retention: MessageRetention
    registry: CollectorRegistry
    metrics: GatewayMetrics
    loop_lag: LoopLagMonitor
    database_check: Callable[[], Awaitable[Any]] | None = None
    persistent: bool = False
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, owned (and cancelled on shutdown) by the app."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task
