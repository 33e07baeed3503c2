"""Churn: 2,000 inbound connections opened and closed leave the host at its baseline.

Four processes running our stack (``helpers.glueberry_peer``) each open and close 500
connections to the host under test, every one from a fresh identity (a distinct peer),
eight at a time; a fifth opens 200 plain TCP connections that send junk or nothing and
never finish the security handshake. Afterwards the host's task count, open file
descriptors and RSS are back at the baseline taken after a warm-up, within the margins
below, and the host still accepts and serves a new connection.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import psutil
import pytest
from helpers.exchange import EXCHANGE_PROTOCOL, run_exchange
from helpers.notifee import ConnectionRecorder
from helpers.peer_process import PeerProcess, glueberry_peer_argv
from multiaddr import Multiaddr

from engine.config import Config
from engine.crypto.identity import Identity, PeerId
from engine.net.host import Host

pytestmark = pytest.mark.slow

PROCESSES = 4
PER_PROCESS = 500  # 4 x 500 = 2,000 connections
CONCURRENCY = 8
RAW_CONNECTIONS = 200
WARMUP = 50
# Stated margins over the warm baseline.
TASK_MARGIN = 0  # tasks: exactly back to baseline
FD_MARGIN = 2
RSS_MARGIN = 24 * 1024 * 1024  # 24 MiB: allocator slack, not per-connection state (~12 KiB)


def _snapshot() -> tuple[int, int, int]:
    gc.collect()
    proc = psutil.Process()
    return len(asyncio.all_tasks()), proc.num_fds(), proc.memory_info().rss


@pytest.fixture
async def host() -> AsyncIterator[tuple[Host, ConnectionRecorder]]:
    config = Config(
        max_connections=10_000,
        max_pending_connections=1_000,
        max_connections_per_ip=10_000,
        connection_rate_per_ip=100_000.0,
    )
    host = Host(Identity.generate(), config)
    recorder = ConnectionRecorder()
    host.add_notifee(recorder)

    async def echo_exchange(stream):  # type: ignore[no-untyped-def]
        await run_exchange(stream, "responder")

    host.set_stream_handler(EXCHANGE_PROTOCOL, echo_exchange)
    await host.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
    try:
        yield host, recorder
    finally:
        async with asyncio.timeout(10):
            await host.close()


async def _all_closed(host: Host, recorder: ConnectionRecorder, expected: int) -> None:
    await recorder.wait_until(
        lambda r: r.connected_count >= expected and r.disconnected_count == r.connected_count,
        30,
    )
    assert host.connected_peers() == []


async def test_2000_connections_churn_back_to_baseline(
    host: tuple[Host, ConnectionRecorder],
) -> None:
    server, recorder = host
    our_addr = f"{server.listen_addrs()[0]}/p2p/{server.peer_id}"

    # Warm-up: let lazily created state (caches, the first connection's tasks) exist.
    async with await PeerProcess.start(glueberry_peer_argv("--no-listen")) as peer:
        result = await peer.command("churn", addr=our_addr, n=WARMUP, concurrency=4, timeout=30)
        assert result["ok_count"] == WARMUP, result
    await _all_closed(server, recorder, WARMUP)
    tasks0, fds0, rss0 = _snapshot()

    peers = [
        await PeerProcess.start(glueberry_peer_argv("--no-listen"), name=f"churn-{i}")
        for i in range(PROCESSES + 1)
    ]
    try:
        churns = [
            p.command("churn", addr=our_addr, n=PER_PROCESS, concurrency=CONCURRENCY, timeout=100)
            for p in peers[:PROCESSES]
        ]
        raw = peers[PROCESSES].command(
            "raw_churn", addr=our_addr, n=RAW_CONNECTIONS, concurrency=4, timeout=100
        )
        results = await asyncio.gather(*churns, raw)
    finally:
        await asyncio.gather(*(p.aclose() for p in peers))
    for result in results[:PROCESSES]:
        assert result["ok_count"] == PER_PROCESS, result
        assert result["failed"] == 0, result
    assert results[PROCESSES]["ok_count"] == RAW_CONNECTIONS, results[PROCESSES]

    total = WARMUP + PROCESSES * PER_PROCESS
    await _all_closed(server, recorder, total)
    assert recorder.connected_count == total  # raw connections never count as connected
    # Pending (never secured) connections are dropped too: wait until the fds are back.
    async with asyncio.timeout(10):
        while psutil.Process().num_fds() > fds0 + FD_MARGIN:
            await asyncio.sleep(0.05)
    tasks1, fds1, rss1 = _snapshot()
    assert tasks1 <= tasks0 + TASK_MARGIN, (tasks0, tasks1)
    assert fds1 <= fds0 + FD_MARGIN, (fds0, fds1)
    assert rss1 <= rss0 + RSS_MARGIN, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"

    # The host still accepts and serves new connections.
    async with await PeerProcess.start(glueberry_peer_argv("--no-listen")) as peer:
        await peer.command("dial", addr=our_addr, timeout=10)
        result = await peer.command(
            "exchange", peer=str(server.peer_id), count=10, size=1024, timeout=10
        )
        assert result["recv_count"] == 10
        await peer.command("ping", peer=str(server.peer_id), timeout=10)
        assert PeerId.from_string(peer.peer_id) in server.connected_peers()
