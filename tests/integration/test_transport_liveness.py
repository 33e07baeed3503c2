"""Liveness: a frozen peer is declared gone within the keep-alive bound, a killed one at once.

The remote peer is our own stack in another process (``helpers.glueberry_peer``), so the
kernel keeps acknowledging TCP for a SIGSTOPped peer: only the yamux keep-alive can tell.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator

import pytest
from helpers.glueberry_peer import split_p2p_addr
from helpers.listening_host import listening_host, p2p_addr
from helpers.notifee import ConnectionRecorder
from helpers.peer_process import PeerProcess, glueberry_peer_argv

from engine.config import Config
from engine.crypto.identity import PeerId
from engine.net.host import Host

KEEPALIVE_INTERVAL = 0.2
KEEPALIVE_TIMEOUT = 1.0
# Scheduling slack on a shared 2-core machine; the bound asserted is timeout + margin.
MARGIN = 1.0
KILLED_BOUND = 1.0  # the acceptance bound for a killed peer


@pytest.fixture
async def keepalive_host() -> AsyncIterator[tuple[Host, ConnectionRecorder]]:
    config = Config(keepalive_interval=KEEPALIVE_INTERVAL, keepalive_timeout=KEEPALIVE_TIMEOUT)
    async with listening_host(config) as pair:
        yield pair


@pytest.fixture
async def default_host() -> AsyncIterator[tuple[Host, ConnectionRecorder]]:
    # keep-alive 5 s / 15 s: not what detects a kill
    async with listening_host(Config()) as pair:
        yield pair


async def test_frozen_peer_is_declared_gone_within_the_keepalive_bound(
    keepalive_host: tuple[Host, ConnectionRecorder],
) -> None:
    host, recorder = keepalive_host
    our_addr = p2p_addr(host)
    async with await PeerProcess.start(glueberry_peer_argv("--no-listen")) as peer:
        their_id = PeerId.from_string(peer.peer_id)
        await peer.command("dial", addr=our_addr, timeout=10)
        await recorder.wait_until(lambda r: their_id in r.connected_peers, 5)

        # A healthy idle peer survives several keep-alive timeouts.
        with pytest.raises(TimeoutError):
            await recorder.wait_until(lambda r: r.disconnect_of(their_id) is not None, 2.5)
        assert host.is_connected(their_id)

        peer.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            await recorder.wait_until(
                lambda r: r.disconnect_of(their_id) is not None, KEEPALIVE_TIMEOUT + MARGIN + 2
            )
        finally:
            peer.send_signal(signal.SIGCONT)
        gone = recorder.disconnect_of(their_id)
        assert gone is not None
        elapsed = gone.at - stopped_at
        assert elapsed <= KEEPALIVE_TIMEOUT + MARGIN, f"declared gone after {elapsed:.2f} s"
        # Not earlier than the keep-alive could know: it was the keep-alive that fired.
        assert elapsed >= KEEPALIVE_TIMEOUT - 2 * KEEPALIVE_INTERVAL - 0.1, elapsed
        assert gone.reason is not None
        assert not host.is_connected(their_id)
        assert their_id not in host.connected_peers()


@pytest.mark.parametrize("direction", ["they_dial_us", "we_dial_them"])
async def test_killed_peer_is_declared_gone_within_one_second(
    default_host: tuple[Host, ConnectionRecorder], direction: str
) -> None:
    host, recorder = default_host
    our_addr = p2p_addr(host)
    async with await PeerProcess.start(glueberry_peer_argv()) as peer:
        their_id = PeerId.from_string(peer.peer_id)
        if direction == "they_dial_us":
            await peer.command("dial", addr=our_addr, timeout=10)
        else:
            peer_id, addr = split_p2p_addr(peer.addrs[0])
            await host.dial(peer_id, [addr], timeout=10)
        await recorder.wait_until(lambda r: their_id in r.connected_peers, 5)
        await host.ping(their_id, timeout=5)

        killed_at = time.monotonic()
        await peer.kill()
        await recorder.wait_until(lambda r: r.disconnect_of(their_id) is not None, 5)
        gone = recorder.disconnect_of(their_id)
        assert gone is not None
        assert gone.at - killed_at <= KILLED_BOUND, f"declared gone after {gone.at - killed_at:.2f}"
        assert not host.is_connected(their_id)
