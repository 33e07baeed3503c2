"""Memory bounds of the message paths, measured on real nodes (memory and TCP hosts).

Send side: the per-stream byte budget (``send_buffer_bytes``) bounds queued-but-unsent
memory; the message watermarks alone (1024 messages) would let 200 senders of 256 KiB
queue 50 MiB at once. Receive side: a subscriber's queue is bounded in bytes
(``message_buffer_bytes``) as well as in messages, and its drops are counted.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from node_kit import HOST_KINDS, Cluster, connect_pair

from engine.crypto.identity import Identity
from engine.node import Node
from engine.observability import CountingMetrics, DropReason

KiB = 1024
MiB = 1024 * KiB
SENDERS = 200
SIZE = 256 * KiB


@pytest.fixture(params=HOST_KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(request.param, tmp_path)
    yield c
    await c.close()


async def _node_with_metrics(cluster: Cluster, metrics: CountingMetrics, **kw: object) -> Node:
    identity = Identity.generate()
    host = None
    if cluster.kind == "memory":
        host = cluster.net.create_host(identity.peer_id, ip="127.0.0.200")
    node = Node(cluster.config(**kw), identity=identity, host=host, metrics=metrics)
    cluster.nodes.append(node)
    await node.start()
    return node


async def _burst_peak(cluster: Cluster, send_buffer_bytes: int) -> int:
    """Peak traced memory while 200 senders push 256 KiB each through one stream."""
    a = await cluster.node(send_buffer_bytes=send_buffer_bytes, max_message_size=MiB)
    b = await cluster.node(max_message_size=MiB)
    await connect_pair(a, b)
    payload = bytes(SIZE)  # one object shared by every sender: only the engine copies
    received = 0
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal received
        async for msg in sub:
            if msg.data == b"warm-up":
                continue
            received += 1
            if received == SENDERS:
                done.set()

    with b.messages(stream="messages") as sub:
        consumer = asyncio.ensure_future(consume())
        await a.send(b.peer_id, "messages", b"warm-up")  # opens the stream
        gc.collect()
        tracemalloc.start()
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(
                    *(a.send(b.peer_id, "messages", payload) for _ in range(SENDERS))
                )
                await done.wait()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
    assert received == SENDERS  # every blocked sender completed, nothing was lost
    return peak


async def test_byte_budget_bounds_queued_memory_and_every_sender_completes(
    cluster: Cluster,
) -> None:
    bounded = await _burst_peak(cluster, send_buffer_bytes=1 * MiB)
    unbounded = await _burst_peak(cluster, send_buffer_bytes=1024 * MiB)
    # Unbounded, the 200 encrypted frames (50 MiB) are all queued at once.
    assert unbounded > 40 * MiB, unbounded
    # Bounded: 1 MiB queued, one joined 1 MiB batch being written, transport buffers and
    # the receiver's side (same process) -- a small multiple of the budget.
    assert bounded < 16 * MiB, bounded


async def test_subscriber_queue_is_bounded_in_bytes_and_drops_are_counted(
    cluster: Cluster,
) -> None:
    metrics = CountingMetrics()
    a = await cluster.node(max_message_size=MiB)
    b_node = await _node_with_metrics(
        cluster, metrics, max_message_size=MiB, message_buffer_bytes=1 * MiB
    )
    await connect_pair(a, b_node)
    sub = b_node.messages(stream="messages")  # a subscriber that never reads
    last = b_node.messages(stream="messages", buffer_bytes=16 * MiB)  # reads at the end
    for i in range(40):  # 40 x 100 KiB = 4 MB, four times the first subscriber's budget
        await a.send(b_node.peer_id, "messages", bytes([i]) * (100 * KiB))
    async with asyncio.timeout(30):
        for i in range(40):
            msg = await anext(last)
            assert msg.data[0] == i
    assert sub.pending <= 10  # 10 x 100 KiB fit in 1 MiB: the oldest were dropped
    assert sub.pending_bytes <= 1 * MiB
    assert sub.dropped == 40 - sub.pending
    assert sub.drop_reasons == {"buffer_full": sub.dropped}
    assert last.dropped == 0
    # The newest messages were kept.
    kept = [sub.get_nowait() for _ in range(sub.pending)]
    assert [m.data[0] for m in kept if m is not None] == list(range(40 - len(kept), 40))
    stats = b_node.peer_stats(a.peer_id)
    assert stats is not None
    assert stats.dropped == {"subscriber_buffer_full": 40 - len(kept)}
    assert metrics.dropped == {DropReason.BUFFER_FULL.value: 40 - len(kept)}
    sub.unsubscribe()
    last.unsubscribe()
