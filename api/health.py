"""Liveness and readiness.

``/healthz`` answers as long as the event loop runs (no I/O). ``/readyz`` checks each
component and says which one is not ready: the database (a round trip through the
repository's check), the libp2p host (running and listening), event-loop lag (measured
continuously by :class:`LoopLagMonitor`) and the peer count (informational).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ComponentStatus", "LoopLagMonitor", "Readiness", "check_readiness"]


class LoopLagMonitor:
    """Measures how late the event loop wakes a periodic timer.

    Args:
        interval: seconds between samples.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.lag = 0.0
        self.max_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="glueberry-loop-lag"
            )

    async def stop(self) -> None:
        """Stop sampling and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.lag = max(0.0, loop.time() - before - self.interval)
            self.max_lag = max(self.max_lag, self.lag)


@dataclass(slots=True)
class ComponentStatus:
    """One readiness component."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Readiness:
    """The readiness report."""

    ready: bool
    components: dict[str, ComponentStatus]


async def check_readiness(
    *,
    node: Any,
    database_check: Callable[[], Awaitable[Any]] | None,
    loop_lag: float,
    max_loop_lag: float,
    check_timeout: float = 2.0,
) -> Readiness:
    """Check every component.

    Args:
        node: the engine node (or ``None``).
        database_check: coroutine function raising when the database is unreachable.
        loop_lag: latest measured loop lag in seconds.
        max_loop_lag: lag above which the gateway is not ready.
        check_timeout: seconds the database check may take.

    Returns:
        The report; ``ready`` is the conjunction of every component's ``ok``.
    """
    components: dict[str, ComponentStatus] = {}

    if database_check is None:
        components["database"] = ComponentStatus(True, {"configured": False})
    else:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(database_check(), check_timeout)
        except Exception as exc:
            components["database"] = ComponentStatus(False, {"error": type(exc).__name__})
        else:
            components["database"] = ComponentStatus(
                True, {"latency_ms": round((time.perf_counter() - started) * 1000, 3)}
            )

    if node is None:
        components["p2p"] = ComponentStatus(False, {"running": False})
        components["peers"] = ComponentStatus(True, {"connected": 0})
    else:
        running = bool(getattr(node, "running", False))
        addrs: list[str] = []
        if running:
            with contextlib.suppress(Exception):
                addrs = [str(a) for a in node.listen_addrs()]
        listening = running and bool(addrs)
        with contextlib.suppress(Exception):
            health = node.health()
            if isinstance(health, dict) and "listening" in health:
                listening = running and bool(health["listening"])
        components["p2p"] = ComponentStatus(
            listening, {"running": running, "listening": listening, "addrs": addrs}
        )
        connected = 0
        with contextlib.suppress(Exception):
            connected = len(node.connected_peers())
        detail: dict[str, Any] = {"connected": connected}
        with contextlib.suppress(Exception):
            by_state = node.health().get("peers")
            if isinstance(by_state, dict):
                detail["by_state"] = {str(k): int(v) for k, v in by_state.items()}
        components["peers"] = ComponentStatus(True, detail)

    components["event_loop"] = ComponentStatus(
        loop_lag <= max_loop_lag,
        {"lag_ms": round(loop_lag * 1000, 3), "max_lag_ms": round(max_loop_lag * 1000, 3)},
    )
    return Readiness(all(c.ok for c in components.values()), components)
