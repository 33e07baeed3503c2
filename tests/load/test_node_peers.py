"""One hub node with 1,000 established Glueberry peers (opt-in: ``-m load``).

The peers are real nodes (own identity, own libp2p host, built-in handshake) in four
subprocesses (:mod:`load.swarm`); the hub runs here on 127.0.0.1. These tests assert
behaviour at scale, never a time: every peer establishes, every fan-in message arrives
in order, the hub's tasks return to their baseline once the peers leave, and ``stop()``
with every peer connected leaves no task. Timings: ``tests/bench/node_peers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import MS

from engine.connection_state import ConnectionState
from engine.crypto.identity import Identity
from engine.events import EventFilter
from engine.node import Node
from load.swarm import STREAM, HubRecorder, Swarm, hub_config, raise_fd_limit

pytestmark = [pytest.mark.load, pytest.mark.timeout(600)]

PEERS = 1000
PROCESSES = 4
FANIN = 20  # messages of 1 KiB per peer
PHASE = 300_000 * MS  # bound of every phase (5 min at factor 1)


@contextlib.asynccontextmanager
async def started_hub(data_dir: Path) -> AsyncIterator[Node]:
    raise_fd_limit(4 * PEERS + 512)
    node = Node(hub_config(PEERS, data_dir), identity=Identity.generate())
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def _connect_all(hub: Node, swarm: Swarm, rec: HubRecorder) -> None:
    replies = await swarm.all("connect", concurrency=16, timeout=PHASE)
    errors = [e for r in replies for e in r["errors"]]
    assert errors == []
    assert sum(r["connected"] for r in replies) == PEERS
    await asyncio.wait_for(rec.established.wait(), PHASE)


async def _tasks_settle(baseline: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Wait (bounded) for every task started since ``baseline`` to end; those still alive."""
    me = asyncio.current_task()
    extra: set[asyncio.Task[object]] = set()
    for _ in range(20):  # tasks may start others while they end (host read loops, closes)
        extra = {t for t in asyncio.all_tasks() if t not in baseline and t is not me}
        if not extra:
            break
        await asyncio.wait(extra, timeout=PHASE / 20)
    return extra


async def test_thousand_peers_establish_deliver_and_leave(tmp_path: Path) -> None:
    async with started_hub(tmp_path) as hub, Swarm(PEERS, PROCESSES) as swarm:
        await swarm.start(hub)
        rec = HubRecorder(hub, PEERS)
        left = hub.subscribe(EventFilter(states={ConnectionState.DISCONNECTED}))
        baseline = set(asyncio.all_tasks())
        baseline_node_tasks = hub.health()["tasks"]

        await _connect_all(hub, swarm, rec)
        connected = set(hub.connected_peers())
        assert len(connected) == PEERS
        assert all(hub.connection_state(p) is ConnectionState.ESTABLISHED for p in connected)
        assert hub.health()["peers"]["established"] == PEERS

        rec.fanin_target = PEERS * FANIN
        sent = await swarm.all("send", m=FANIN, size=1024, timeout=PHASE)
        assert sum(r["sent"] for r in sent) == PEERS * FANIN
        await asyncio.wait_for(rec.fanin_done.wait(), PHASE)
        assert set(rec.per_peer) == connected
        assert set(rec.per_peer.values()) == {FANIN}
        assert rec.out_of_order == 0
        assert rec.dropped == 0
        stats = hub.all_stats()
        assert all(stats[p].streams[STREAM].messages_in == FANIN for p in connected)

        await swarm.all("disconnect", timeout=PHASE)
        gone: set[object] = set()
        async with asyncio.timeout(PHASE):
            async for event in left:
                gone.add(event.peer_id)
                if gone >= connected:
                    break
        left.unsubscribe()
        assert hub.connected_peers() == []
        assert await _tasks_settle(baseline) == set()
        assert hub.health()["tasks"] == baseline_node_tasks
        await rec.aclose()
        await swarm.all("stop", timeout=PHASE)


async def test_hub_memory_returns_after_a_fanin_burst(tmp_path: Path) -> None:
    """Live memory (tracemalloc) after every peer's 100 KiB burst is back near its level
    before: well under one copy of the burst per peer."""
    burst = 100  # messages of 1 KiB per peer
    async with started_hub(tmp_path) as hub, Swarm(PEERS, PROCESSES) as swarm:
        await swarm.start(hub)
        rec = HubRecorder(hub, PEERS)
        await _connect_all(hub, swarm, rec)
        rec.fanin_target = PEERS  # opens every stream first: its state is not the burst
        await swarm.all("send", m=1, size=1024, timeout=PHASE)
        await asyncio.wait_for(rec.fanin_done.wait(), PHASE)
        rec.fanin_done.clear()
        rec.per_peer.clear()
        rec.received = 0
        rec.fanin_target = PEERS * burst
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await swarm.all("send", m=burst, size=1024, timeout=PHASE)
            await asyncio.wait_for(rec.fanin_done.wait(), PHASE)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert set(rec.per_peer.values()) == {burst}
        assert grown < PEERS * 32 * 1024, f"{grown / PEERS / 1024:.0f} KiB per peer still held"
        await rec.aclose()
        await swarm.all("stop", timeout=PHASE)


async def test_stop_with_thousand_peers_leaves_no_task(tmp_path: Path) -> None:
    async with Swarm(PEERS, PROCESSES) as swarm:
        before_hub = len(asyncio.all_tasks())
        async with started_hub(tmp_path) as hub:
            await _stop_loaded_hub(hub, swarm)
        assert len(asyncio.all_tasks()) == before_hub
        await swarm.all("stop", timeout=PHASE)


async def _stop_loaded_hub(hub: Node, swarm: Swarm) -> None:
    """Connect every peer, open streams both ways, then stop the hub under load."""
    await swarm.start(hub)
    rec = HubRecorder(hub, PEERS)
    await _connect_all(hub, swarm, rec)
    # Streams open in both directions: every peer to the hub, the hub to every peer.
    rec.fanin_target = PEERS
    await swarm.all("arm", timeout=PHASE)
    await swarm.all("send", m=1, size=1024, timeout=PHASE)
    await asyncio.gather(*(hub.send(p, STREAM, b"hello") for p in hub.connected_peers()))
    got = await swarm.all("wait_received", count=1, timeout=PHASE)
    assert sum(r["received"] for r in got) == PEERS
    await asyncio.wait_for(rec.fanin_done.wait(), PHASE)

    await hub.stop()
    assert not hub.running
    assert hub.connected_peers() == []
    await rec.aclose()  # its subscriptions ended with stop(); its tasks are done
    assert all(t.done() for t in rec.tasks)
