"""Task hygiene: connect/handshake/disconnect cycles and stop() leave nothing behind."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from node_kit import HOST_KINDS, Cluster, introduce, wait_state

from engine.connection_state import ConnectionState
from engine.node import Node

CYCLES = 500


@pytest.fixture(params=HOST_KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(request.param, tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def settle(baseline: int) -> int:
    """Let closing transports finish (bounded); return the final task count."""
    for _ in range(200):
        count = len(asyncio.all_tasks())
        if count <= baseline:
            return count
        await asyncio.sleep(0.01)
    return len(asyncio.all_tasks())


async def cycle(a: Node, b: Node) -> None:
    up = asyncio.ensure_future(wait_state(b, a.peer_id, ConnectionState.ESTABLISHED))
    await a.connect(b.peer_id, timeout=10)
    await asyncio.wait_for(up, 10)
    down_a = asyncio.ensure_future(wait_state(a, b.peer_id, ConnectionState.DISCONNECTED))
    down_b = asyncio.ensure_future(wait_state(b, a.peer_id, ConnectionState.DISCONNECTED))
    await a.disconnect(b.peer_id)
    await asyncio.wait_for(asyncio.gather(down_a, down_b), 10)


async def test_500_connect_handshake_disconnect_cycles_leave_no_task(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    await introduce(a, b)
    await cycle(a, b)
    baseline = await settle(0)
    for _ in range(CYCLES):
        await cycle(a, b)
    assert await settle(baseline) <= baseline
    stats = b.peer_stats(a.peer_id)
    assert stats is not None
    assert stats.connect_count == CYCLES + 1


async def test_stop_with_100_connected_peers(cluster: Cluster) -> None:
    baseline = len(asyncio.all_tasks())
    fds = psutil.Process().num_fds()
    hub = await cluster.node(default_streams=["s"])
    peers = [await cluster.node(default_streams=["s"]) for _ in range(100)]
    sub = hub.messages(stream="s")
    for p in peers:
        await introduce(p, hub)
    await asyncio.gather(*(p.connect(hub.peer_id, timeout=30) for p in peers))
    await asyncio.gather(*(p.send(hub.peer_id, "s", b"hello") for p in peers))
    async with asyncio.timeout(10):
        for _ in peers:
            await anext(sub)
    await asyncio.gather(*(hub.send(p.peer_id, "s", b"back") for p in peers))
    started = time.perf_counter()
    await hub.stop()
    elapsed = time.perf_counter() - started
    print(f"stop() with 100 peers: {elapsed * 1000:.1f} ms")
    assert not hub.running
    async with asyncio.timeout(10):
        async for _ in sub:  # the hub closed: the subscription ends
            pass
    for p in peers:
        await wait_state(p, hub.peer_id, ConnectionState.DISCONNECTED, ConnectionState.RECONNECTING)
    for p in peers:
        await p.stop()
    assert await settle(baseline) <= baseline
    assert psutil.Process().num_fds() <= fds  # no socket left open


async def test_stop_flushes_the_repository(cluster: Cluster, tmp_path: Path) -> None:
    from migrations import upgrade
    from models import SqlRepository, create_engine

    url = f"sqlite+aiosqlite:///{tmp_path / 'node.db'}"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()
    engine = create_engine(url)
    try:
        b = await cluster.node()
        node = cluster.build()
        repo = SqlRepository(engine, node.peer_id, flush_interval=3600)
        node = cluster.build(identity=node._identity, repository=repo)
        await node.start()
        await introduce(node, b)
        up = asyncio.ensure_future(wait_state(b, node.peer_id, ConnectionState.ESTABLISHED))
        await node.connect(b.peer_id, timeout=10)
        await up
        await node.stop()  # the hot data (connect count, last seen) must be written
        fresh = SqlRepository(engine, node.peer_id)
        record = await fresh.get_peer(b.peer_id)
        assert record is not None
        assert record.connect_count == 1
        assert record.last_seen is not None
        await repo.close()
        await fresh.close()
    finally:
        await engine.dispose()
