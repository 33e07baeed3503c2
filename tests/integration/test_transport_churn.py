"""Churn: 2,000 inbound connections opened and closed leave the host at its baseline.

After a warm-up of 1,000 connections, four processes running our stack
(``helpers.glueberry_peer``) each open and close 500 connections to the host under test,
every one from a fresh identity (a distinct peer), eight at a time; a fifth opens 200
plain TCP connections that send junk or nothing and never finish the security handshake.
Afterwards the host's task count and open file descriptors are back at those of the idle
host before any connection, its RSS at the level after the warm-up (within the margins
below), and the host still accepts and serves a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable

import psutil
import pytest
from helpers.exchange import EXCHANGE_PROTOCOL, run_exchange
from helpers.listening_host import listening_host, many_connections_config, p2p_addr
from helpers.notifee import ConnectionRecorder
from helpers.peer_process import PeerProcess, glueberry_peer_argv

from engine.crypto.identity import PeerId
from engine.net.host import Host
from engine.net.interface import P2PStream

pytestmark = pytest.mark.slow

PROCESSES = 4
PER_PROCESS = 500  # 4 x 500 = 2,000 connections
CONCURRENCY = 8
RAW_CONNECTIONS = 200
WARMUP = 1000
# Stated margins over the warm baseline.
TASK_MARGIN = 0  # tasks: exactly back to baseline
FD_MARGIN = 2
# 8 MiB over 2,000 connections = 4 KiB each: far below what one leaked connection holds
# (its Noise/yamux state, buffers and tasks), above the allocator's noise after warm-up.
RSS_MARGIN = 8 * 1024 * 1024


def _snapshot() -> tuple[int, int, int]:
    gc.collect()
    proc = psutil.Process()
    return len(asyncio.all_tasks()), proc.num_fds(), proc.memory_info().rss


@pytest.fixture
async def host() -> AsyncIterator[tuple[Host, ConnectionRecorder]]:
    async def echo_exchange(stream: P2PStream) -> None:
        await run_exchange(stream, "responder")

    async with listening_host(many_connections_config()) as (host, recorder):
        host.set_stream_handler(EXCHANGE_PROTOCOL, echo_exchange)  # before any peer exists
        yield host, recorder


async def _all_closed(host: Host, recorder: ConnectionRecorder, expected: int) -> None:
    await recorder.wait_until(
        lambda r: r.connected_count >= expected and r.disconnected_count == r.connected_count,
        30,
    )
    assert host.connected_peers() == []


async def _settle(ok: Callable[[], bool], timeout: float = 10.0) -> None:
    """Give closing connections time to finish (bounded); the caller asserts afterwards."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not ok():
                await asyncio.sleep(0.05)


async def test_2000_connections_churn_back_to_baseline(
    host: tuple[Host, ConnectionRecorder],
) -> None:
    server, recorder = host
    our_addr = p2p_addr(server)
    peers = [
        await PeerProcess.start(glueberry_peer_argv("--no-listen"), name=f"churn-{i}")
        for i in range(PROCESSES + 1)
    ]
    try:
        # Tasks and fds of an idle listening host (plus this test's subprocess pipes).
        tasks0, fds0, _ = _snapshot()
        # Warm-up at the same concurrency: lazily created state and the allocator's
        # high-water mark exist before the baseline is taken.
        warm = await asyncio.gather(
            *(
                p.command(
                    "churn",
                    addr=our_addr,
                    n=WARMUP // PROCESSES,
                    concurrency=CONCURRENCY,
                    timeout=60,
                )
                for p in peers[:PROCESSES]
            )
        )
        assert all(r["failed"] == 0 for r in warm), warm
        await _all_closed(server, recorder, WARMUP)
        await _settle(lambda: len(asyncio.all_tasks()) <= tasks0 + TASK_MARGIN)
        _, _, rss0 = _snapshot()

        churns = [
            p.command("churn", addr=our_addr, n=PER_PROCESS, concurrency=CONCURRENCY, timeout=100)
            for p in peers[:PROCESSES]
        ]
        raw = peers[PROCESSES].command(
            "raw_churn", addr=our_addr, n=RAW_CONNECTIONS, concurrency=4, timeout=100
        )
        results = await asyncio.gather(*churns, raw)
        for result in results[:PROCESSES]:
            assert result["ok_count"] == PER_PROCESS, result
            assert result["failed"] == 0, result
        assert results[PROCESSES]["ok_count"] == RAW_CONNECTIONS, results[PROCESSES]

        total = WARMUP + PROCESSES * PER_PROCESS
        await _all_closed(server, recorder, total)
        assert recorder.connected_count == total  # raw connections never count as connected
        # Connections closing (and pending ones never secured) finish in the background.
        await _settle(
            lambda: (
                len(asyncio.all_tasks()) <= tasks0 + TASK_MARGIN
                and psutil.Process().num_fds() <= fds0 + FD_MARGIN
            )
        )
        tasks1, fds1, rss1 = _snapshot()
        print(  # shown with -s / in CI logs on failure: the measured deltas
            f"churn of {total - WARMUP} connections (+{RAW_CONNECTIONS} raw): tasks "
            f"{tasks0}->{tasks1}, fds {fds0}->{fds1}, "
            f"RSS {rss0 / 2**20:.1f}->{rss1 / 2**20:.1f} MiB"
        )
        assert server.task_count == 0
        assert server.pending_connections == 0
        assert tasks1 <= tasks0 + TASK_MARGIN, (tasks0, tasks1)
        assert fds1 <= fds0 + FD_MARGIN, (fds0, fds1)
        assert rss1 <= rss0 + RSS_MARGIN, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"

        # The host still accepts and serves new connections.
        peer = peers[0]
        await peer.command("dial", addr=our_addr, timeout=10)
        result = await peer.command(
            "exchange", peer=str(server.peer_id), count=10, size=1024, timeout=10
        )
        assert result["recv_count"] == 10
        await peer.command("ping", peer=str(server.peer_id), timeout=10)
        assert PeerId.from_string(peer.peer_id) in server.connected_peers()
    finally:
        await asyncio.gather(*(p.aclose() for p in peers))
