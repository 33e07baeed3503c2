"""Prometheus metrics of one gateway app: its own registry, never the global one.

HTTP metrics are recorded by :class:`MetricsMiddleware` (labelled by route template, not
raw path, so peer ids do not explode label cardinality). Engine figures are read at
scrape time by :class:`EngineCollector` from the node's public API, so the engine needs no
Prometheus dependency.

Label values are bounded: HTTP methods outside the standard set are ``OTHER``; engine
reasons are enums (:class:`~engine.observability.DropReason`,
:class:`~engine.observability.RefusalReason`), error codes are the engine's stable
codes, and anything else the engine might report is folded into ``other``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.errors import GlueberryError
from engine.observability import DropReason, RefusalReason

__all__ = ["EngineCollector", "GatewayMetrics", "MetricsMiddleware"]


class GatewayMetrics:
    """The gateway's metric objects, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "glueberry_http_requests",
            "HTTP requests served, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "glueberry_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=registry,
        )
        self.rate_limited = Counter(
            "glueberry_http_rate_limited",
            "Requests refused with 429, by bucket kind (key or ip).",
            ["kind"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "glueberry_http_auth_failures",
            "Requests refused with 401 or 403.",
            ["status"],
            registry=registry,
        )
        self.loop_lag = Gauge(
            "glueberry_event_loop_lag_seconds",
            "Latest measured event-loop lag.",
            registry=registry,
        )
        self.retained_messages = Gauge(
            "glueberry_gateway_retained_messages",
            "Received messages held for long-poll readers.",
            registry=registry,
        )


# Methods recorded as themselves; any other token (clients choose it freely) is "OTHER",
# so a client cannot add a time series per request.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def _method_label(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in _KNOWN_METHODS else "OTHER"


def _route_template(scope: Scope) -> str:
    # The router stores the matched route in the scope; its template (not the raw path)
    # keeps label cardinality bounded.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class MetricsMiddleware:
    """Count and time every HTTP request (pure ASGI, no body buffering)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_template(scope)
            method = _method_label(scope)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            if status in (401, 403):
                self.metrics.auth_failures.labels(str(status)).inc()


class EngineCollector(Collector):
    """Engine figures read from the node at scrape time.

    Args:
        node_getter: returns the node (or ``None`` before it exists).
    """

    def __init__(self, node_getter: Callable[[], Any]) -> None:
        self._node_getter = node_getter

    def collect(self) -> Iterator[Metric]:
        """Yield the engine metric families."""
        node = self._node_getter()
        if node is None:
            return
        yield GaugeMetricFamily(
            "glueberry_node_running",
            "1 when the node is running.",
            value=1.0 if bool(getattr(node, "running", False)) else 0.0,
        )
        try:
            connected = float(len(node.connected_peers()))
        except Exception:
            connected = 0.0
        yield GaugeMetricFamily("glueberry_connected_peers", "Connected peers.", value=connected)
        try:
            stats = node.all_stats()
        except Exception:
            stats = {}
        messages = CounterMetricFamily(
            "glueberry_messages",
            "Messages by direction (all peers, all streams).",
            labels=["direction"],
        )
        payload = CounterMetricFamily(
            "glueberry_message_bytes", "Payload bytes by direction.", labels=["direction"]
        )
        decrypt = CounterMetricFamily(
            "glueberry_decryption_errors", "Frames that failed to decrypt (all peers)."
        )
        totals = {"in": 0, "out": 0}
        byte_totals = {"in": 0, "out": 0}
        decrypt_total = 0  # fallback when the node has no counters()
        for peer_stats in stats.values():
            for direction in ("in", "out"):
                totals[direction] += _total(_field(peer_stats, f"messages_{direction}"))
                byte_totals[direction] += _total(_field(peer_stats, f"bytes_{direction}"))
            decrypt_total += int(_field(peer_stats, "decryption_errors"))
        for direction in ("in", "out"):
            messages.add_metric([direction], float(totals[direction]))
            payload.add_metric([direction], float(byte_totals[direction]))
        try:
            counters = node.counters()
        except Exception:
            counters = {}
        if not isinstance(counters, dict):
            counters = {}
        if isinstance(counters.get("decryption_errors"), int | float):
            decrypt_total = int(counters["decryption_errors"])  # monotonic, unlike the sum
        decrypt.add_metric([], float(decrypt_total))
        yield messages
        yield payload
        yield decrypt
        yield from _counter_families(counters)
        try:
            health = node.health()
        except Exception:
            health = {}
        if not isinstance(health, dict):
            health = {}
        yield from _health_families(health)
        tasks = health.get("tasks") if isinstance(health, dict) else None
        if isinstance(tasks, int | float):
            yield GaugeMetricFamily(
                "glueberry_engine_tasks", "Tasks owned by the engine.", value=float(tasks)
            )


@functools.cache
def _codes() -> frozenset[str]:
    # Every stable error code of the engine's one exception hierarchy.
    found: set[str] = set()
    todo: list[type[GlueberryError]] = [GlueberryError]
    while todo:
        cls = todo.pop()
        found.add(str(cls.code))
        todo.extend(cls.__subclasses__())
    return frozenset(found)


_DROP_REASONS = tuple(r.value for r in DropReason)
_REFUSAL_REASONS = tuple(r.value for r in RefusalReason)
_DIRECTIONS = ("inbound", "outbound")
_OTHER = "other"


def _bounded(
    counts: Any, allowed: frozenset[str] | tuple[str, ...], *, zero: bool
) -> dict[str, float]:
    """``counts`` (label -> count) with unknown labels folded into ``other``.

    With ``zero`` every allowed label is present (0 when never counted), so the series
    exist from the first scrape.
    """
    out: dict[str, float] = dict.fromkeys(allowed, 0.0) if zero else {}
    if isinstance(counts, dict):
        for label, value in counts.items():
            key = str(label) if str(label) in allowed else _OTHER
            out[key] = out.get(key, 0.0) + float(value or 0)
    return out


def _labelled_counter(
    name: str, doc: str, label: str, values: dict[str, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted(values.items()):
        family.add_metric([value], count)
    return family


def _counter_families(counters: dict[str, Any]) -> Iterator[Metric]:
    """Families from ``node.counters()`` (monotonic since the node was created)."""
    if not counters:
        return
    codes = _codes()
    yield _labelled_counter(
        "glueberry_messages_dropped",
        "Messages dropped by the engine, by reason (DropReason).",
        "reason",
        _bounded(counters.get("dropped"), _DROP_REASONS, zero=True),
    )
    yield _labelled_counter(
        "glueberry_connections_refused",
        "Connections or dials refused by the gate, the host limiter or the node, by "
        "reason (RefusalReason).",
        "reason",
        _bounded(counters.get("refused"), _REFUSAL_REASONS, zero=True),
    )
    yield _labelled_counter(
        "glueberry_handshakes",
        "Handshakes ended, by outcome (ok or the engine error code).",
        "outcome",
        _bounded(counters.get("handshakes"), codes | {"ok"}, zero=False),
    )
    handshakes = counters.get("handshakes")
    count = sum(int(v or 0) for v in handshakes.values()) if isinstance(handshakes, dict) else 0
    duration = SummaryMetricFamily(
        "glueberry_handshake_duration_seconds",
        "Time from transport connected to handshake end (count and sum, every outcome).",
    )
    duration.add_metric(
        [], count_value=count, sum_value=float(counters.get("handshake_seconds_total") or 0)
    )
    yield duration
    yield _labelled_counter(
        "glueberry_connections_opened",
        "Connections that reached connected (transport up), by direction.",
        "direction",
        _bounded(counters.get("connections_opened"), _DIRECTIONS, zero=True),
    )
    yield _labelled_counter(
        "glueberry_connections_closed",
        "Connections closed, by error code (none: closed on request).",
        "error_code",
        _bounded(counters.get("connections_closed"), codes | {"none"}, zero=False),
    )
    yield CounterMetricFamily(
        "glueberry_reconnect_attempts",
        "Reconnection dials started.",
        value=float(counters.get("reconnect_attempts") or 0),
    )


def _health_families(health: dict[str, Any]) -> Iterator[Metric]:
    """Gauges from ``node.health()``."""
    if not health:
        return
    yield GaugeMetricFamily(
        "glueberry_node_ready",
        "1 when the node is ready (running and every check ok).",
        value=1.0 if health.get("ready") else 0.0,
    )
    checks = health.get("checks")
    loop = checks.get("event_loop") if isinstance(checks, dict) else None
    lag_ms = loop.get("lag_ms") if isinstance(loop, dict) else None
    if isinstance(lag_ms, int | float):
        yield GaugeMetricFamily(
            "glueberry_engine_event_loop_lag_seconds",
            "Latest event-loop lag measured by the engine (one sample per health_interval).",
            value=float(lag_ms) / 1000,
        )
    connections = health.get("connections")
    pending = connections.get("pending") if isinstance(connections, dict) else None
    if isinstance(pending, int | float):
        yield GaugeMetricFamily(
            "glueberry_pending_connections",
            "Inbound connections being upgraded by the host.",
            value=float(pending),
        )


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, 0) or 0
    return getattr(obj, name, 0) or 0


def _total(value: Any) -> int:
    # Per-stream counters are mappings stream name -> count; plain numbers also work.
    if isinstance(value, dict):
        return sum(int(v) for v in value.values())
    return int(value or 0)
