"""A node in a subprocess is SIGKILLed: seen disconnected, reconnected with backoff after
it restarts with the same key file and port (real TCP host only)."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers.peer_process import PeerProcess
from node_kit import HAS_TCP_HOST, Cluster, wait_state

from engine.connection_state import ConnectionState
from engine.crypto.identity import PeerId
from engine.events import EventFilter

pytestmark = pytest.mark.skipif(not HAS_TCP_HOST, reason="engine.net.host not there")

SCRIPT = Path(__file__).with_name("node_peer.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_peer(key: Path, port: int) -> PeerProcess:
    return await PeerProcess.start(
        [sys.executable, str(SCRIPT), str(key), str(port), "echo"], name="node_peer"
    )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster("tcp", tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def test_sigkilled_peer_is_reconnected_with_backoff(cluster: Cluster, tmp_path: Path) -> None:
    key = tmp_path / "peer" / "identity.key"
    port = free_port()
    node = await cluster.node(default_streams=["echo"])
    first = await start_peer(key, port)
    try:
        peer = PeerId.from_string(first.peer_id)
        await node.add_peer(peer, first.addrs)
        await node.connect(peer, timeout=10)
        sub = node.messages(stream="echo")
        await node.send(peer, "echo", b"before")
        async with asyncio.timeout(10):
            assert (await anext(sub)).data == b"before"
        with node.subscribe(EventFilter(peers={peer})) as events:
            first.send_signal(__import__("signal").SIGKILL)
            async with asyncio.timeout(20):
                async for event in events:
                    if event.state is ConnectionState.RECONNECTING:
                        break
            assert node.peer_status(peer).state in (
                ConnectionState.RECONNECTING,
                ConnectionState.CONNECTING,
            )
            second = await start_peer(key, port)
            try:
                assert second.peer_id == first.peer_id
                seen = [ConnectionState.RECONNECTING]
                async with asyncio.timeout(30):
                    async for event in events:
                        seen.append(event.state)
                        if event.state is ConnectionState.ESTABLISHED:
                            break
                assert seen[-2:] == [ConnectionState.CONNECTED, ConnectionState.ESTABLISHED]
                await node.send(peer, "echo", b"after")
                async with asyncio.timeout(10):
                    assert (await anext(sub)).data == b"after"
            finally:
                await second.aclose()
        await wait_state(node, peer, ConnectionState.RECONNECTING, ConnectionState.DISCONNECTED)
    finally:
        await first.aclose()
