"""Observability of real nodes: metrics callbacks, OpenTelemetry spans, health, refusals.

Spans are collected with the OpenTelemetry SDK's in-memory exporter; metrics with a
recorder implementing :class:`engine.observability.Metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from node_kit import HAS_TCP_HOST, HOST_KINDS, Cluster, connect_pair, introduce, wait_state
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from engine.connection_state import ConnectionState
from engine.crypto.identity import Identity, PeerId
from engine.errors import (
    GlueberryError,
    HandshakeTimeoutError,
    PeerBlacklistedError,
    PeerInCooldownError,
    StorageError,
    StreamError,
)
from engine.handshake import stream_protocol
from engine.node import Node
from engine.observability import (
    ATTR_DIRECTION,
    ATTR_ERROR_CODE,
    ATTR_PEER_ID,
    ATTR_STATE,
    SPAN_BLACKLIST,
    SPAN_CONNECT,
    SPAN_DIAL,
    SPAN_GATE,
    SPAN_HANDSHAKE,
    DropReason,
    RefusalReason,
)
from engine.repository import MemoryRepository
from engine.varint import encode_uvarint


@dataclass
class Recorder:
    """Every metrics callback, recorded."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    sent: int = 0
    received: int = 0

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    def connection_opened(self, peer_id: PeerId, direction: str) -> None:
        self.calls.append(("connection_opened", (peer_id, direction)))

    def connection_closed(self, peer_id: PeerId, error_code: str | None) -> None:
        self.calls.append(("connection_closed", (peer_id, error_code)))

    def handshake_completed(
        self, peer_id: PeerId, ok: bool, duration: float, error_code: str | None
    ) -> None:
        self.calls.append(("handshake_completed", (peer_id, ok, duration, error_code)))

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        self.sent += 1

    def message_received(self, peer_id: PeerId, stream: str, size: int) -> None:
        self.received += 1

    def message_dropped(self, peer_id: PeerId, stream: str, reason: DropReason) -> None:
        self.calls.append(("message_dropped", (peer_id, stream, reason)))

    def decryption_error(self, peer_id: PeerId, stream: str) -> None:
        self.calls.append(("decryption_error", (peer_id, stream)))

    def reconnect_attempt(self, peer_id: PeerId, attempt: int) -> None:
        self.calls.append(("reconnect_attempt", (peer_id, attempt)))

    def connection_refused(
        self, peer_id: PeerId | None, reason: RefusalReason, direction: str, count: int = 1
    ) -> None:
        for _ in range(count):
            self.calls.append(("connection_refused", (peer_id, reason, direction)))


@dataclass
class Traced:
    """A node with its own tracer provider, exporter and metrics recorder."""

    node: Node
    exporter: InMemorySpanExporter
    provider: TracerProvider
    metrics: Recorder

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]


@pytest.fixture(params=HOST_KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(request.param, tmp_path)
    yield c
    await c.close()


_ips = iter(range(100, 250))


async def traced(
    cluster: Cluster, *, start: bool = True, repository: Any = None, **kw: Any
) -> Traced:
    identity = Identity.generate()
    host = None
    if cluster.kind == "memory":
        host = cluster.net.create_host(identity.peer_id, ip=f"127.0.1.{next(_ips)}")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = Recorder()
    node = Node(
        cluster.config(**kw),
        identity=identity,
        host=host,
        repository=repository,
        metrics=metrics,
        tracer_provider=provider,
    )
    cluster.nodes.append(node)
    if start:
        await node.start()
    return Traced(node, exporter, provider, metrics)


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return (
        span.parent is not None
        and parent.context is not None
        and span.parent.span_id == parent.context.span_id
        and span.context is not None
        and span.context.trace_id == parent.context.trace_id
    )


async def test_connect_spans_nest_under_the_callers_span(cluster: Cluster) -> None:
    a = await traced(cluster)
    b = await traced(cluster)
    await introduce(a.node, b.node)
    waiter = asyncio.ensure_future(wait_state(b.node, a.node.peer_id, ConnectionState.ESTABLISHED))
    with a.provider.get_tracer("test").start_as_current_span("request") as request:
        await a.node.connect(b.node.peer_id, timeout=10)
    await asyncio.wait_for(waiter, 10)
    (req,) = a.spans("request")
    (connect,) = a.spans(SPAN_CONNECT)
    (dial,) = a.spans(SPAN_DIAL)
    (handshake,) = a.spans(SPAN_HANDSHAKE)
    assert request.get_span_context().span_id == req.context.span_id
    assert child_of(connect, req)
    assert child_of(dial, connect)
    assert child_of(handshake, connect)
    assert connect.attributes is not None
    assert connect.attributes[ATTR_PEER_ID] == str(b.node.peer_id)
    assert connect.attributes[ATTR_DIRECTION] == "outbound"
    assert connect.attributes[ATTR_STATE] == "established"
    assert connect.status.status_code is StatusCode.OK
    assert handshake.attributes is not None
    assert handshake.attributes["glueberry.handshake.mode"] == "auto"
    assert dial.end_time is not None
    assert handshake.start_time is not None
    assert dial.end_time <= handshake.start_time
    # Our own dial passed our gate: a gate span inside the attempt.
    (gate,) = a.spans(SPAN_GATE)
    assert child_of(gate, connect)
    assert gate.attributes is not None
    assert gate.attributes["glueberry.gate.decision"] == "allow"
    # The accepting side: a root connect span (inbound), no dial, its own gate decision.
    (inbound,) = b.spans(SPAN_CONNECT)
    assert inbound.parent is None
    assert inbound.attributes is not None
    assert inbound.attributes[ATTR_DIRECTION] == "inbound"
    assert inbound.attributes[ATTR_PEER_ID] == str(a.node.peer_id)
    assert b.spans(SPAN_DIAL) == []
    (b_gate,) = b.spans(SPAN_GATE)
    assert b_gate.parent is None
    assert b_gate.attributes is not None
    assert b_gate.attributes[ATTR_DIRECTION] == "inbound"
    # Metrics: one connection opened each side, one successful handshake with a duration.
    assert a.metrics.of("connection_opened") == [(b.node.peer_id, "outbound")]
    assert b.metrics.of("connection_opened") == [(a.node.peer_id, "inbound")]
    ((peer, ok, duration, code),) = a.metrics.of("handshake_completed")
    assert (peer, ok, code) == (b.node.peer_id, True, None)
    assert 0 < duration < 10
    counters = a.node.counters()
    assert counters["handshakes"] == {"ok": 1}
    assert counters["connections_opened"] == {"outbound": 1}
    assert a.node.health()["connections"]["attempts_in_flight"] == 0


async def test_handshake_timeout_ends_spans_with_the_error(cluster: Cluster) -> None:
    a = await traced(cluster, handshake_mode="app", handshake_timeout=0.2)
    b = await traced(cluster, handshake_mode="app", handshake_timeout=0.2)
    await introduce(a.node, b.node)
    with pytest.raises(HandshakeTimeoutError):
        await a.node.connect(b.node.peer_id, timeout=5)
    (connect,) = a.spans(SPAN_CONNECT)
    (handshake,) = a.spans(SPAN_HANDSHAKE)
    assert child_of(handshake, connect)
    for span in (connect, handshake):
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes[ATTR_ERROR_CODE] == "handshake_timeout"
        assert span.attributes[ATTR_STATE] == "cooldown"
    ((_, ok, duration, code),) = a.metrics.of("handshake_completed")
    assert (ok, code) == (False, "handshake_timeout")
    assert duration >= 0.2
    assert a.metrics.of("connection_closed") == [(b.node.peer_id, "handshake_timeout")]
    # A connect during the cooldown is refused and counted.
    with pytest.raises(PeerInCooldownError):
        await a.node.connect(b.node.peer_id, timeout=5)
    assert (b.node.peer_id, RefusalReason.COOLDOWN, "outbound") in a.metrics.of(
        "connection_refused"
    )
    assert a.node.counters()["handshakes"] == {"handshake_timeout": 1}


async def test_blacklist_refusals_are_traced_counted_and_logged(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="engine.node")
    a = await traced(cluster, reconnect_max_attempts=0)
    b = await traced(cluster)
    await connect_pair(a.node, b.node)
    await b.node.blacklist_peer(a.node.peer_id, reason="test")
    (ban,) = b.spans(SPAN_BLACKLIST)
    assert ban.attributes is not None
    assert ban.attributes["glueberry.ban.target"] == str(a.node.peer_id)
    assert ban.attributes["glueberry.ban.dropped_peers"] == 1
    await wait_state(a.node, b.node.peer_id, ConnectionState.DISCONNECTED)
    # A dials again: B's gate refuses A's peer id after the security handshake.
    with pytest.raises(GlueberryError):  # refused while upgrading, or closed at once
        await a.node.connect(b.node.peer_id, timeout=5)
    refused = [
        s
        for s in b.spans(SPAN_GATE)
        if s.attributes and s.attributes.get("glueberry.gate.decision") == "refuse"
    ]
    assert refused, [s.attributes for s in b.spans(SPAN_GATE)]
    assert refused[-1].attributes is not None
    assert refused[-1].attributes["glueberry.gate.reason"] == "blacklisted_peer"
    assert refused[-1].attributes[ATTR_PEER_ID] == str(a.node.peer_id)
    assert (a.node.peer_id, RefusalReason.BLACKLISTED_PEER, "inbound") in b.metrics.of(
        "connection_refused"
    )
    assert b.node.counters()["refused"]["blacklisted_peer"] >= 1
    assert b.node.health()["connections"]["refused"]["blacklisted_peer"] >= 1
    assert any("refused inbound connection" in r.getMessage() for r in caplog.records)
    # And B refuses to dial A itself: counted as an outbound refusal.
    await introduce(b.node, a.node)
    with pytest.raises(PeerBlacklistedError):
        await b.node.connect(a.node.peer_id, timeout=5)
    assert (a.node.peer_id, RefusalReason.BLACKLISTED_PEER, "outbound") in b.metrics.of(
        "connection_refused"
    )


async def test_every_drop_reaches_metrics_with_a_reason_and_a_debug_log(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="engine.node")
    a = await traced(cluster)
    b = await traced(cluster, message_buffer_size=2)
    await connect_pair(a.node, b.node)
    sub = b.node.messages()  # never read: a full buffer drops the oldest
    reader = b.node.messages(buffer_size=100)
    for i in range(5):
        await a.node.send(b.node.peer_id, "messages", b"%d" % i)
    async with asyncio.timeout(10):
        for _ in range(5):
            await anext(reader)
    assert b.metrics.received == 5
    drops = b.metrics.of("message_dropped")
    assert [reason for _, _, reason in drops] == [DropReason.BUFFER_FULL] * 3
    assert all(peer == a.node.peer_id and stream == "messages" for peer, stream, _ in drops)
    assert sub.dropped == 3
    assert b.node.counters()["dropped"] == {"buffer_full": 3}
    assert a.metrics.sent == 5
    assert sum("subscriber buffer full" in r.getMessage() for r in caplog.records) == 3
    sub.unsubscribe()
    reader.unsubscribe()


async def test_health_reports_readiness_checks(cluster: Cluster) -> None:
    class FlakyRepository(MemoryRepository):
        broken = False

        async def list_peers(self, offset: int = 0, limit: int = 100) -> Any:
            if self.broken:
                raise StorageError("database unreachable")
            return await super().list_peers(offset=offset, limit=limit)

    repo = FlakyRepository()
    t = await traced(cluster, repository=repo, health_interval=0.02, max_event_loop_lag=0.1)
    node = t.node
    health = node.health()
    assert health["ready"] is True
    assert set(health["checks"]) == {"listening", "event_loop", "peers", "repository"}
    assert all(check["ok"] for check in health["checks"].values())
    assert health["checks"]["listening"]["addrs"] == health["listening"] != []
    assert health["checks"]["peers"]["connected"] == 0
    assert health["checks"]["repository"]["checked_at"] is not None
    repo.broken = True
    assert await node.check_repository() is False
    health = node.health()
    assert health["ready"] is False
    assert health["checks"]["repository"] == {
        "ok": False,
        "checked_at": health["checks"]["repository"]["checked_at"],
        "error": "storage_error",
    }
    repo.broken = False
    assert await node.check_repository() is True
    # Block the loop for longer than max_event_loop_lag while a sample is being taken.
    async with asyncio.timeout(10):
        while node.health()["checks"]["event_loop"]["samples"] < 2:
            await asyncio.sleep(0.01)
    time.sleep(0.3)
    async with asyncio.timeout(10):
        while node.health()["checks"]["event_loop"]["ok"]:
            await asyncio.sleep(0.02)
    health = node.health()
    assert health["ready"] is False
    assert health["checks"]["event_loop"]["lag_ms"] >= 200
    await node.stop()
    health = node.health()
    assert health["ready"] is False
    assert health["checks"]["listening"]["ok"] is False


@pytest.mark.skipif(not HAS_TCP_HOST, reason="engine.net.host not there")
async def test_host_rate_limit_refusals_are_counted(tmp_path: Path) -> None:
    cluster = Cluster("tcp", tmp_path)
    try:
        a = await traced(cluster)
        b = await traced(cluster, connection_rate_per_ip=0.5)  # burst of 1 per IP
        await connect_pair(a.node, b.node)
        await a.node.disconnect(b.node.peer_id)
        await wait_state(b.node, a.node.peer_id, ConnectionState.DISCONNECTED)
        with pytest.raises(GlueberryError):  # the connection is closed at once
            await a.node.connect(b.node.peer_id, timeout=5)
        assert b.node.health()["connections"]["refused"]["rate_limited"] >= 1
        assert b.node.counters()["refused"]["rate_limited"] >= 1
        assert (None, RefusalReason.RATE_LIMITED, "inbound") in b.metrics.of("connection_refused")
    finally:
        await cluster.close()


async def test_reconnection_attempts_are_root_spans_and_counted(cluster: Cluster) -> None:
    a = await traced(cluster)
    b = await traced(cluster)
    with a.provider.get_tracer("test").start_as_current_span("request"):
        await connect_pair(a.node, b.node)
    # B drops the connection; A (B is in its address book) reconnects on its own.
    waiter = asyncio.ensure_future(
        wait_state(a.node, b.node.peer_id, ConnectionState.RECONNECTING, ConnectionState.CONNECTING)
    )
    await asyncio.sleep(0)  # let the waiter subscribe before the drop
    await b.node.disconnect(a.node.peer_id)
    await asyncio.wait_for(waiter, 10)
    await wait_state(a.node, b.node.peer_id, ConnectionState.ESTABLISHED)
    ((peer, attempt),) = a.metrics.of("reconnect_attempt")
    assert peer == b.node.peer_id
    assert attempt >= 1
    first, second = a.spans(SPAN_CONNECT)
    (req,) = a.spans("request")
    assert child_of(first, req)
    assert second.parent is None  # background work never joins an old request's trace
    assert second.attributes is not None
    assert second.attributes["glueberry.reconnect_attempt"] == attempt
    assert second.attributes[ATTR_STATE] == "established"
    assert a.metrics.of("connection_closed") == [(b.node.peer_id, "connection_closed")]
    assert a.node.counters()["reconnect_attempts"] == 1


async def test_a_frame_truncated_by_the_end_of_stream_is_a_counted_drop(cluster: Cluster) -> None:
    a = await traced(cluster)
    b = await traced(cluster)
    await connect_pair(a.node, b.node)
    stream = await a.node.host.new_stream(b.node.peer_id, [stream_protocol("messages")], timeout=5)
    await stream.write(encode_uvarint(10) + b"abc")  # 3 of the 10 announced bytes
    await stream.close_write()
    async with asyncio.timeout(10):
        while not b.metrics.of("message_dropped"):
            await asyncio.sleep(0.01)
    assert b.metrics.of("message_dropped") == [(a.node.peer_id, "messages", DropReason.MALFORMED)]
    assert b.node.counters()["dropped"] == {"malformed": 1}
    stats = b.node.peer_stats(a.node.peer_id)
    assert stats is not None
    assert stats.dropped == {"malformed": 1}


async def test_handshake_messages_dropped_by_a_full_subscription_are_counted(
    cluster: Cluster,
) -> None:
    a = await traced(cluster, handshake_mode="app")
    b = await traced(cluster, handshake_mode="app", event_buffer_size=1)
    await introduce(a.node, b.node)
    sub = b.node.handshake_messages()  # never read
    connecting = asyncio.ensure_future(a.node.connect(b.node.peer_id, timeout=10))
    try:
        await wait_state(a.node, b.node.peer_id, ConnectionState.CONNECTED)
        for i in range(3):
            await a.node.send_handshake_message(b.node.peer_id, b"hello %d" % i)
        async with asyncio.timeout(10):
            while len(b.metrics.of("message_dropped")) < 2:
                await asyncio.sleep(0.01)
    finally:
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
    assert (
        b.metrics.of("message_dropped")
        == [(a.node.peer_id, "/glueberry/handshake/1.0.0", DropReason.BUFFER_FULL)] * 2
    )
    kept = sub.get_nowait()
    assert kept is not None
    assert kept.data == b"hello 2"
    assert sub.dropped == 2


async def test_inbound_streams_per_name_are_bounded_and_refusals_counted(
    cluster: Cluster,
) -> None:
    a = await traced(cluster)
    b = await traced(cluster)
    await connect_pair(a.node, b.node)
    streams = []
    for _ in range(5):
        with contextlib.suppress(StreamError):  # reset by B while negotiating: refused
            streams.append(
                await a.node.host.new_stream(
                    b.node.peer_id, [stream_protocol("messages")], timeout=5
                )
            )
    async with asyncio.timeout(10):
        while len(b.metrics.of("message_dropped")) < 3:
            await asyncio.sleep(0.01)
    assert (
        b.metrics.of("message_dropped")
        == [(a.node.peer_id, "messages", DropReason.TOO_MANY_STREAMS)] * 3
    )
    # The two accepted streams are read: a frame on each is taken apart (and, not being
    # encrypted under the stream key, dropped as such).
    for stream in streams[:2]:
        await stream.write(encode_uvarint(3) + encode_uvarint(2) + b"ok")
    async with asyncio.timeout(10):
        while len(b.metrics.of("decryption_error")) < 2:
            await asyncio.sleep(0.01)
