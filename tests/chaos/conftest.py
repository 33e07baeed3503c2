"""Fixtures of the chaos tests: real nodes on the TCP host, fault proxies, hygiene checks.

Nodes come from ``tests/integration/node_kit.py`` (its ``Cluster`` and settings); every
test additionally checks, after everything is stopped, that the task count and the open
file descriptors are back at their values from before the test and that nothing reached
the event loop's exception handler (an exception no task retrieved, a failing callback).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

sys.path.append(str(Path(__file__).resolve().parent.parent / "integration"))

from node_kit import HAS_TCP_HOST, Cluster, introduce

from engine.crypto.identity import PeerId
from engine.node import Node

from .faulty_host import FaultyStreamHost
from .faulty_proxy import FaultInjector, FaultyProxy
from .kit import EventLog, Inbox, Pair

if not HAS_TCP_HOST:  # pragma: no cover - only while the real host is not there
    pytest.skip("engine.net.host is not available", allow_module_level=True)

#: Short keep-alive so a partition is noticed in about a second.
KEEPALIVE: dict[str, Any] = {"keepalive_interval": 0.2, "keepalive_timeout": 1.0}


async def settle_tasks(baseline: int, rounds: int = 300) -> int:
    """Let closing transports finish (bounded); the final task count."""
    for _ in range(rounds):
        count = len(asyncio.all_tasks())
        if count <= baseline:
            return count
        await asyncio.sleep(0.01)
    return len(asyncio.all_tasks())


class Harness:
    """Builds nodes, proxies, inboxes and event logs; closes all of them."""

    def __init__(self, tmp_path: Path) -> None:
        self.cluster = Cluster("tcp", tmp_path)
        self.proxies: list[FaultyProxy] = []
        self._closers: list[Inbox | EventLog] = []

    async def node(self, **kw: Any) -> Node:
        node: Node = await self.cluster.node(**kw)
        return node

    async def stream_faulty_node(self, **kw: Any) -> tuple[Node, FaultyStreamHost]:
        """A started node whose Glueberry stream writes go through a fault core."""
        from engine.crypto.identity import Identity
        from engine.net.host import Host

        identity = Identity.generate()
        config = self.cluster.config(**kw)
        host = FaultyStreamHost(Host(identity, config))
        node = Node(config, identity=identity, host=host)
        self.cluster.nodes.append(node)
        await node.start()
        return node, host

    async def proxy_to(self, node: Node, *, seed: int = 0) -> FaultyProxy:
        addr = node.host.listen_addrs()[0]
        target = (addr.value_for_protocol("ip4"), int(addr.value_for_protocol("tcp")))
        proxy = FaultyProxy(target, FaultInjector(seed))
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    async def pair(
        self,
        *,
        seed: int = 0,
        connect_timeout: float = 10.0,
        latency: tuple[float, float] | None = None,
        **kw: Any,
    ) -> Pair:
        """``a`` -> proxy -> ``b``, connected and established on both sides."""
        b = await self.node(**kw)
        a = await self.node(**kw)
        proxy = await self.proxy_to(b, seed=seed)
        if latency is not None:
            proxy.faults.set_latency(*latency)
        await a.add_peer(b.peer_id, [str(proxy.multiaddr(b.peer_id))])
        pair = Pair(a, b, proxy)
        waiting = asyncio.ensure_future(pair.established(connect_timeout))
        try:
            await a.connect(b.peer_id, timeout=connect_timeout)
            await waiting
        finally:
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        return pair

    def inbox(self, node: Node, stream: str | None = None) -> Inbox:
        inbox = Inbox(node, stream)
        self._closers.append(inbox)
        return inbox

    def events(self, node: Node, peer: PeerId) -> EventLog:
        log = EventLog(node, peer)
        self._closers.append(log)
        return log

    async def close(self) -> None:
        for item in self._closers:
            await item.aclose()
        await self.cluster.close()
        for proxy in self.proxies:
            await proxy.close()


class LoopErrors:
    """What reached the loop's exception handler during a test."""

    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []
        self._tolerated: list[tuple[type[BaseException], str]] = []

    def tolerate(self, kind: type[BaseException], message_part: str) -> None:
        """Accept unretrieved exceptions of ``kind`` whose text contains ``message_part``.

        Only for a *known, reported* engine bug that a test does not itself target.
        """
        self._tolerated.append((kind, message_part))

    def unexpected(self) -> list[str]:
        out = []
        for context in self.contexts:
            exc = context.get("exception")
            if exc is not None and any(
                isinstance(exc, kind) and part in str(exc) for kind, part in self._tolerated
            ):
                continue
            out.append(f"{context.get('message')}: {exc!r}")
        return out


@pytest.fixture
async def hygiene() -> AsyncIterator[LoopErrors]:
    """Baseline tasks and fds; collects what reaches the loop's exception handler."""
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.contexts.append(context))
    tasks = len(asyncio.all_tasks())
    fds = psutil.Process().num_fds()
    try:
        yield errors
        left = await settle_tasks(tasks)
        assert left <= tasks, [t.get_name() for t in asyncio.all_tasks()]
        assert psutil.Process().num_fds() <= fds, "a socket or file was left open"
        assert not errors.unexpected()
    finally:
        loop.set_exception_handler(previous)


@pytest.fixture
async def chaos(hygiene: LoopErrors, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        async with asyncio.timeout(20):
            await harness.close()


__all__ = ["KEEPALIVE", "Harness", "LoopErrors", "introduce", "settle_tasks"]
