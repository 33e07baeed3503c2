"""Scale: one host holds 1,000 inbound connections from other processes, all usable.

Four processes running our stack each open 250 connections (fresh identities) to the
host under test and keep them. The host then sees 1,000 peers, can ping a sample of them,
and returns to zero connections when they leave. The numbers (time to accept, CPU per
accept, RSS per connection, idle CPU) are measured by ``tests/bench/transport.py``.
"""

from __future__ import annotations

import asyncio
import random
import resource
from collections.abc import AsyncIterator

import pytest
from helpers.listening_host import listening_host, many_connections_config, p2p_addr
from helpers.notifee import ConnectionRecorder
from helpers.peer_process import PeerProcess, glueberry_peer_argv

from engine.net.host import Host

pytestmark = pytest.mark.slow

PROCESSES = 4
PER_PROCESS = 250
TOTAL = PROCESSES * PER_PROCESS


@pytest.fixture
async def host() -> AsyncIterator[tuple[Host, ConnectionRecorder]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * TOTAL:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * TOTAL), hard))
    async with listening_host(many_connections_config(), close_timeout=20) as pair:
        yield pair


async def test_host_holds_1000_inbound_connections(
    host: tuple[Host, ConnectionRecorder],
) -> None:
    server, recorder = host
    our_addr = p2p_addr(server)
    peers = [
        await PeerProcess.start(glueberry_peer_argv("--no-listen"), name=f"hold-{i}")
        for i in range(PROCESSES)
    ]
    try:
        results = await asyncio.gather(
            *(
                p.command("hold", addr=our_addr, n=PER_PROCESS, concurrency=8, timeout=100)
                for p in peers
            )
        )
        for result in results:
            assert result["held"] == PER_PROCESS, result
        await recorder.wait_until(lambda r: r.connected_count >= TOTAL, 20)
        connected = server.connected_peers()
        assert len(connected) == TOTAL
        assert recorder.disconnected_count == 0

        # Every connection is live, not just counted: ping a sample of them.
        sample = random.Random(3).sample(connected, 20)
        rtts = await asyncio.gather(*(server.ping(p, timeout=10) for p in sample))
        assert all(rtt >= 0 for rtt in rtts)

        released = await asyncio.gather(*(p.command("release", timeout=60) for p in peers))
        assert sum(r["released"] for r in released) == TOTAL
        await recorder.wait_until(lambda r: r.disconnected_count >= TOTAL, 30)
        assert server.connected_peers() == []
    finally:
        await asyncio.gather(*(p.aclose() for p in peers))
