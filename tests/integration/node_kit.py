"""Helpers for the node integration tests: clusters of real nodes on a memory or TCP host.

Every test runs against both hosts (``HOST_KINDS``): the in-memory host (fast, exact
addresses) and the real libp2p host on 127.0.0.1 (TCP, Noise, yamux).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config
from engine.connection_state import ConnectionState
from engine.crypto.identity import Identity, PeerId
from engine.events import EventFilter
from engine.net.memory import MemoryNetwork
from engine.node import Node


def _tcp_host_available() -> bool:
    try:
        importlib.import_module("engine.net.host")
    except ImportError:
        return False
    return True


HAS_TCP_HOST = _tcp_host_available()
HOST_KINDS = [
    "memory",
    pytest.param(
        "tcp", marks=pytest.mark.skipif(not HAS_TCP_HOST, reason="engine.net.host not there")
    ),
]

DEFAULTS: dict[str, Any] = {
    "listen_addrs": ["/ip4/127.0.0.1/tcp/0"],
    "handshake_timeout": 10.0,
    "dial_timeout": 5.0,
    "reconnect_base_delay": 0.05,
    "reconnect_max_delay": 0.5,
    "reconnect_jitter": 0.1,
    "reconnect_max_attempts": 50,
    "failed_handshake_cooldown": 30.0,
    "auto_connect": False,
    # Hundreds of connections per second from 127.0.0.1 (connect/disconnect cycles).
    "connection_rate_per_ip": 100_000.0,
    "max_connections_per_ip": 10_000,  # every test node connects from 127.0.0.1
}


class Cluster:
    """Builds started nodes on one kind of host and stops them all at the end."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.net = MemoryNetwork()
        self.nodes: list[Node] = []
        self._ips = 0

    def config(self, **overrides: Any) -> Config:
        values = {**DEFAULTS, "data_dir": self.tmp_path, **overrides}
        return Config(**values)

    def build(self, *, identity: Identity | None = None, ip: str | None = None, **kw: Any) -> Node:
        """A node, not started."""
        callback = kw.pop("on_decryption_error", None)
        repository = kw.pop("repository", None)
        identity = identity or Identity.generate()
        host = None
        if self.kind == "memory":
            self._ips += 1
            host = self.net.create_host(identity.peer_id, ip=ip or f"127.0.0.{self._ips}")
        node = Node(
            self.config(**kw),
            identity=identity,
            host=host,
            repository=repository,
            on_decryption_error=callback,
        )
        self.nodes.append(node)
        return node

    async def node(self, **kw: Any) -> Node:
        """A started node."""
        node = self.build(**kw)
        await node.start()
        return node

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop()


async def introduce(a: Node, b: Node) -> None:
    """Put ``b`` into ``a``'s address book."""
    await a.add_peer(b.peer_id, [str(addr) for addr in b.listen_addrs()])


async def wait_state(
    node: Node, peer: PeerId, *states: ConnectionState, timeout: float = 10.0
) -> ConnectionState:
    """Wait (race-free: subscribe first, then look) until ``peer`` enters one of ``states``."""
    with node.subscribe(EventFilter(peers={peer}, states=set(states))) as sub:
        current = node.connection_state(peer)
        if current in states:
            return current
        async with asyncio.timeout(timeout):
            async for event in sub:
                return event.state
    raise AssertionError("subscription ended before the state was reached")


async def connect_pair(a: Node, b: Node, timeout: float = 10.0) -> None:
    """``a`` dials ``b``; returns once both sides are established."""
    await introduce(a, b)
    waiter = asyncio.ensure_future(wait_state(b, a.peer_id, ConnectionState.ESTABLISHED))
    try:
        await a.connect(b.peer_id, timeout=timeout)
        await asyncio.wait_for(waiter, timeout)
    finally:
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
