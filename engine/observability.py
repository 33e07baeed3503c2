"""Observability of the engine: a metrics callback protocol, reason enums, connection spans.

No metrics library is imported here or anywhere in the engine. Three ways to look inside
a running node (all documented in docs/observability.md):

- :class:`Metrics`: a small callback protocol. ``Node(metrics=...)`` takes any object
  implementing it (a Prometheus adapter, a StatsD client, a test recorder); the default
  is :class:`NoopMetrics`. Every method is synchronous, called on the event loop, and
  must be cheap and must not raise (an exception is logged and swallowed by the node
  for the rare events; the per-message calls are not guarded, for speed).
  :class:`CountingMetrics` counts the rare events in plain dicts; the node always keeps
  one (``node.counters()``), so a scrape-time collector needs no callback at all.
- Tracing with OpenTelemetry (the API package only; the application installs the SDK
  and passes ``Node(tracer_provider=...)``): :class:`ConnectionTracer` turns the
  connection state machine's transitions into spans -- ``glueberry.connect`` (dial ->
  established, or the failure) with ``glueberry.dial`` and ``glueberry.handshake``
  children -- plus ``glueberry.gate`` spans for connection-gate decisions and
  ``glueberry.blacklist`` spans for bans. Nothing is traced per message (hot path).
- Logging: every dropped message is logged at DEBUG by the node (logger
  ``engine.node``), with the peer, the stream and the :class:`DropReason`.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from engine.connection_state import ConnectionState

if TYPE_CHECKING:
    from engine.crypto.identity import PeerId

__all__ = [
    "ATTR_DIRECTION",
    "ATTR_ERROR_CODE",
    "ATTR_PEER_ID",
    "ATTR_STATE",
    "SPAN_BLACKLIST",
    "SPAN_CONNECT",
    "SPAN_DIAL",
    "SPAN_GATE",
    "SPAN_HANDSHAKE",
    "TRACER_NAME",
    "ConnectionTracer",
    "CountingMetrics",
    "DropReason",
    "Metrics",
    "NoopMetrics",
    "RefusalReason",
]


class DropReason(enum.StrEnum):
    """Why a message was dropped (the keys of ``PeerStats.dropped``, the metric label).

    Values are stable (they are also statistics keys).
    """

    #: A subscriber's queue was full (count or bytes): its oldest message was dropped.
    #: In ``PeerStats.dropped`` this is counted as ``subscriber_buffer_full``.
    BUFFER_FULL = "buffer_full"
    #: A frame announced more than ``max_message_size``: dropped before allocation, the
    #: stream reset (no resynchronisation is possible).
    OVERSIZED = "oversized"
    #: A malformed frame (non-minimal varint, bytes left over): the stream is reset.
    MALFORMED = "malformed"
    #: An encrypted frame failed authentication: dropped, the stream stays open.
    DECRYPTION = "decryption_failed"
    #: An inbound stream for a name not prepared for the peer: reset.
    UNKNOWN_STREAM = "unknown_stream"
    #: An inbound stream beyond the two per (peer, name) read at once: reset.
    TOO_MANY_STREAMS = "too_many_streams"
    #: The transport write of a queued message failed.
    WRITE_FAILED = "write_failed"
    #: Queued for sending on a stream that ended before the message was written, or
    #: received just as the peer's streams (and key) were being torn down.
    STREAM_CLOSED = "stream_closed"
    #: Queued for sending when the peer's streams were torn down (disconnect, ban,
    #: failed handshake, node stop).
    DISCONNECTED = "disconnected"


class RefusalReason(enum.StrEnum):
    """Why a connection (or a connection attempt) was refused."""

    #: The peer id is banned (gate after the security handshake, or a dial refused).
    BLACKLISTED_PEER = "blacklisted_peer"
    #: The remote address is inside a banned network (gate before anything is read).
    BLACKLISTED_ADDR = "blacklisted_addr"
    #: The peer failed a handshake recently (``failed_handshake_cooldown``).
    COOLDOWN = "cooldown"
    #: ``max_connections`` reached (one connection per peer: this is MaxPeers).
    MAX_CONNECTIONS = "max_connections"
    #: ``max_pending_connections`` upgrades already running.
    MAX_PENDING = "max_pending"
    #: ``max_connections_per_ip`` reached for the remote IP.
    MAX_PER_IP = "max_per_ip"
    #: ``connection_rate_per_ip`` exceeded by the remote IP.
    RATE_LIMITED = "rate_limited"
    #: An inbound connection failed its security/muxer upgrade (timeout, bad Noise, ...).
    UPGRADE_FAILED = "upgrade_failed"


class Metrics(Protocol):
    """Callbacks the node makes for metrics; implement the ones you need (all sync).

    Peer ids are passed so an adapter can aggregate as it likes; do not use them as a
    label in a system that cannot bear one series per peer.
    """

    def connection_opened(self, peer_id: PeerId, direction: str) -> None:
        """The peer entered ``connected`` (transport up, handshake starting).

        ``direction`` is ``"inbound"`` or ``"outbound"``."""

    def connection_closed(self, peer_id: PeerId, error_code: str | None) -> None:
        """The peer left ``connected``/``established`` (``error_code``: why, if an error)."""

    def handshake_completed(
        self, peer_id: PeerId, ok: bool, duration: float, error_code: str | None
    ) -> None:
        """The handshake ended (``connected`` -> ``established`` or a failure state).

        ``duration`` is in seconds since the peer entered ``connected``."""

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        """A message of ``size`` payload bytes was queued for sending (hot path)."""

    def message_received(self, peer_id: PeerId, stream: str, size: int) -> None:
        """A message of ``size`` payload bytes was received and delivered (hot path)."""

    def message_dropped(self, peer_id: PeerId, stream: str, reason: DropReason) -> None:
        """A message was dropped (see :class:`DropReason`)."""

    def decryption_error(self, peer_id: PeerId, stream: str) -> None:
        """A frame failed to decrypt (also reported as a drop with ``decryption_failed``)."""

    def reconnect_attempt(self, peer_id: PeerId, attempt: int) -> None:
        """A reconnection dial started (``attempt`` counts from 1)."""

    def connection_refused(
        self, peer_id: PeerId | None, reason: RefusalReason, direction: str, count: int = 1
    ) -> None:
        """``count`` connections or attempts were refused (``peer_id`` None when unknown).

        ``count`` is above 1 only for refusals the host counted between two looks."""


class NoopMetrics:
    """The default :class:`Metrics`: does nothing."""

    def connection_opened(self, peer_id: PeerId, direction: str) -> None:
        """Ignored."""

    def connection_closed(self, peer_id: PeerId, error_code: str | None) -> None:
        """Ignored."""

    def handshake_completed(
        self, peer_id: PeerId, ok: bool, duration: float, error_code: str | None
    ) -> None:
        """Ignored."""

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        """Ignored."""

    def message_received(self, peer_id: PeerId, stream: str, size: int) -> None:
        """Ignored."""

    def message_dropped(self, peer_id: PeerId, stream: str, reason: DropReason) -> None:
        """Ignored."""

    def decryption_error(self, peer_id: PeerId, stream: str) -> None:
        """Ignored."""

    def reconnect_attempt(self, peer_id: PeerId, attempt: int) -> None:
        """Ignored."""

    def connection_refused(
        self, peer_id: PeerId | None, reason: RefusalReason, direction: str, count: int = 1
    ) -> None:
        """Ignored."""


@dataclass
class CountingMetrics:
    """A :class:`Metrics` that counts the rare events (not the per-message ones).

    Attributes:
        connections_opened: by direction.
        connections_closed: by error code (``"none"`` for a clean close).
        handshakes: by outcome (``"ok"`` or the error code).
        handshake_seconds_total: sum of handshake durations (with ``handshakes``, a mean).
        dropped: by :class:`DropReason` value.
        refused: by :class:`RefusalReason` value.
        decryption_errors: frames that failed to decrypt.
        reconnect_attempts: reconnection dials started.
    """

    connections_opened: dict[str, int] = field(default_factory=dict)
    connections_closed: dict[str, int] = field(default_factory=dict)
    handshakes: dict[str, int] = field(default_factory=dict)
    handshake_seconds_total: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    decryption_errors: int = 0
    reconnect_attempts: int = 0

    def connection_opened(self, peer_id: PeerId, direction: str) -> None:
        """Count by direction."""
        _inc(self.connections_opened, direction)

    def connection_closed(self, peer_id: PeerId, error_code: str | None) -> None:
        """Count by error code."""
        _inc(self.connections_closed, error_code or "none")

    def handshake_completed(
        self, peer_id: PeerId, ok: bool, duration: float, error_code: str | None
    ) -> None:
        """Count by outcome, add the duration."""
        _inc(self.handshakes, "ok" if ok else (error_code or "failed"))
        self.handshake_seconds_total += duration

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        """Not counted here (the per-peer stats count messages)."""

    def message_received(self, peer_id: PeerId, stream: str, size: int) -> None:
        """Not counted here (the per-peer stats count messages)."""

    def message_dropped(self, peer_id: PeerId, stream: str, reason: DropReason) -> None:
        """Count by reason."""
        _inc(self.dropped, str(reason))

    def decryption_error(self, peer_id: PeerId, stream: str) -> None:
        """Count."""
        self.decryption_errors += 1

    def reconnect_attempt(self, peer_id: PeerId, attempt: int) -> None:
        """Count."""
        self.reconnect_attempts += 1

    def connection_refused(
        self, peer_id: PeerId | None, reason: RefusalReason, direction: str, count: int = 1
    ) -> None:
        """Count by reason."""
        _inc(self.refused, str(reason), count)

    def snapshot(self) -> dict[str, object]:
        """A JSON-safe copy of every counter."""
        return {
            "connections_opened": dict(self.connections_opened),
            "connections_closed": dict(self.connections_closed),
            "handshakes": dict(self.handshakes),
            "handshake_seconds_total": self.handshake_seconds_total,
            "dropped": dict(self.dropped),
            "refused": dict(self.refused),
            "decryption_errors": self.decryption_errors,
            "reconnect_attempts": self.reconnect_attempts,
        }


def _inc(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


# -- tracing ----------------------------------------------------------------------------------

#: The instrumentation scope name of every span.
TRACER_NAME: Final = "glueberry.engine"
SPAN_CONNECT: Final = "glueberry.connect"
SPAN_DIAL: Final = "glueberry.dial"
SPAN_HANDSHAKE: Final = "glueberry.handshake"
SPAN_GATE: Final = "glueberry.gate"
SPAN_BLACKLIST: Final = "glueberry.blacklist"

ATTR_PEER_ID: Final = "glueberry.peer_id"
ATTR_DIRECTION: Final = "glueberry.direction"
ATTR_STATE: Final = "glueberry.state"
ATTR_ERROR_CODE: Final = "glueberry.error_code"
ATTR_ATTEMPT: Final = "glueberry.reconnect_attempt"
ATTR_MODE: Final = "glueberry.handshake.mode"
ATTR_DECISION: Final = "glueberry.gate.decision"
ATTR_REASON: Final = "glueberry.gate.reason"
ATTR_REMOTE_ADDR: Final = "glueberry.remote_addr"

_DOWN: Final = frozenset(
    {ConnectionState.DISCONNECTED, ConnectionState.RECONNECTING, ConnectionState.COOLDOWN}
)
_UP: Final = frozenset({ConnectionState.CONNECTED, ConnectionState.ESTABLISHED})


@dataclass(eq=False)
class _Attempt:
    """The open spans of one connection attempt of one peer."""

    connect: Span
    dial: Span | None = None
    handshake: Span | None = None
    connected_at: float | None = None  # monotonic, when the peer entered CONNECTED


class ConnectionTracer:
    """Spans and metrics of connection attempts, fed with state-machine transitions.

    One attempt is ``glueberry.connect``, from ``connecting`` (dial) or ``connected``
    (inbound) until ``established`` or a failure state; it has a ``glueberry.dial`` child
    while dialing and a ``glueberry.handshake`` child while handshaking. Spans end with
    status ERROR and a ``glueberry.error_code`` attribute when the attempt fails. Only
    attempts in flight are held (at most one per peer), so memory is bounded by the
    connection limits.

    Args:
        metrics: receives connection/handshake/reconnect callbacks.
        tracer_provider: OpenTelemetry provider; ``None`` uses the global one (a no-op
            until the application configures an SDK).
        handshake_mode: recorded on handshake spans.
    """

    def __init__(
        self,
        metrics: Metrics,
        tracer_provider: TracerProvider | None = None,
        *,
        handshake_mode: str = "auto",
    ) -> None:
        self._metrics = metrics
        self.tracer: Tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._mode = handshake_mode
        self._attempts: dict[PeerId, _Attempt] = {}
        self._monotonic = time.monotonic

    @property
    def in_flight(self) -> int:
        """Connection attempts with open spans."""
        return len(self._attempts)

    def transition(
        self,
        peer_id: PeerId,
        previous: ConnectionState,
        state: ConnectionState,
        *,
        error_code: str | None,
        direction: str,
        attempt: int,
        parent: otel_context.Context | None,
    ) -> None:
        """Record one state change of a peer.

        Args:
            peer_id: the peer.
            previous: the state it left.
            state: the state it entered.
            error_code: the error that caused the change, if any.
            direction: ``"inbound"`` / ``"outbound"`` (of the connection, when known).
            attempt: reconnection attempt number (0 for a first connect).
            parent: context to start a new ``glueberry.connect`` span in; ``None`` for a
                root span (background work must not attach to some old request's trace).
        """
        now = self._monotonic()
        metrics = self._metrics
        current = self._attempts.get(peer_id)
        if state is ConnectionState.CONNECTING:
            if current is not None:  # an attempt that never reached an end state
                self._end(peer_id, current, ConnectionState.CONNECTING, "superseded")
            if previous is ConnectionState.RECONNECTING:
                metrics.reconnect_attempt(peer_id, attempt)
            current = self._start(peer_id, "outbound", attempt, parent)
            current.dial = self.tracer.start_span(
                SPAN_DIAL,
                context=trace.set_span_in_context(current.connect),
                attributes={ATTR_PEER_ID: str(peer_id)},
            )
        elif state is ConnectionState.CONNECTED:
            metrics.connection_opened(peer_id, direction)
            if current is None:
                current = self._start(peer_id, direction, attempt, None)
            else:
                current.connect.set_attribute(ATTR_DIRECTION, direction)
            if current.dial is not None:
                current.dial.set_status(Status(StatusCode.OK))
                current.dial.end()
                current.dial = None
            current.connected_at = now
            current.handshake = self.tracer.start_span(
                SPAN_HANDSHAKE,
                context=trace.set_span_in_context(current.connect),
                attributes={ATTR_PEER_ID: str(peer_id), ATTR_MODE: self._mode},
            )
        elif state is ConnectionState.ESTABLISHED:
            if current is not None:
                if current.connected_at is not None:
                    metrics.handshake_completed(peer_id, True, now - current.connected_at, None)
                self._end(peer_id, current, state, None)
        elif state in _DOWN:
            if previous in _UP:
                metrics.connection_closed(peer_id, error_code)
            if current is not None:
                if previous is ConnectionState.CONNECTED and current.connected_at is not None:
                    metrics.handshake_completed(
                        peer_id, False, now - current.connected_at, error_code or state.value
                    )
                self._end(peer_id, current, state, error_code or f"ended_{state.value}")

    def gate_decision(
        self,
        *,
        peer_id: PeerId | None,
        remote_addr: str | None,
        direction: str,
        allowed: bool,
        reason: RefusalReason | None,
    ) -> None:
        """Record one connection-gate decision as a ``glueberry.gate`` span.

        The span is a child of the peer's connection attempt when one is in flight (our
        own dial), else a root span.
        """
        attempt = self._attempts.get(peer_id) if peer_id is not None else None
        ctx = (
            trace.set_span_in_context(attempt.connect)
            if attempt is not None
            else otel_context.Context()
        )
        attributes: dict[str, str] = {
            ATTR_DIRECTION: direction,
            ATTR_DECISION: "allow" if allowed else "refuse",
        }
        if peer_id is not None:
            attributes[ATTR_PEER_ID] = str(peer_id)
        if remote_addr is not None:
            attributes[ATTR_REMOTE_ADDR] = remote_addr
        if reason is not None:
            attributes[ATTR_REASON] = str(reason)
        span = self.tracer.start_span(SPAN_GATE, context=ctx, attributes=attributes)
        span.end()

    def close(self) -> None:
        """End every open span (the node stops)."""
        for peer_id, current in list(self._attempts.items()):
            self._end(peer_id, current, ConnectionState.DISCONNECTED, "node_stopped")

    def _start(
        self,
        peer_id: PeerId,
        direction: str,
        attempt: int,
        parent: otel_context.Context | None,
    ) -> _Attempt:
        span = self.tracer.start_span(
            SPAN_CONNECT,
            context=parent if parent is not None else otel_context.Context(),
            kind=SpanKind.CLIENT if direction == "outbound" else SpanKind.SERVER,
            attributes={
                ATTR_PEER_ID: str(peer_id),
                ATTR_DIRECTION: direction,
                ATTR_ATTEMPT: attempt,
            },
        )
        current = _Attempt(span)
        self._attempts[peer_id] = current
        return current

    def _end(
        self,
        peer_id: PeerId,
        current: _Attempt,
        state: ConnectionState,
        error_code: str | None,
    ) -> None:
        del self._attempts[peer_id]
        for child in (current.dial, current.handshake):
            if child is not None:
                _finish(child, state, error_code)
        _finish(current.connect, state, error_code)


def _finish(span: Span, state: ConnectionState, error_code: str | None) -> None:
    span.set_attribute(ATTR_STATE, state.value)
    if error_code is not None:
        span.set_attribute(ATTR_ERROR_CODE, error_code)
        span.set_status(Status(StatusCode.ERROR, error_code))
    else:
        span.set_status(Status(StatusCode.OK))
    span.end()
