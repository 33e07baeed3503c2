"""Many Glueberry peer nodes in a few subprocesses, all talking to one hub node.

Used by the opt-in load tests (``tests/load/``) and by ``tests/bench/node_peers.py``.

Worker side: ``python -m load.swarm`` (``tests/`` on ``PYTHONPATH``; :class:`Swarm` starts
it through :class:`helpers.peer_process.PeerProcess`) runs one asyncio loop with many
:class:`engine.node.Node` objects, each with its own identity and its own libp2p host
(TCP, Noise, yamux, built-in handshake). It speaks the JSON-lines protocol of
:mod:`helpers.peer_process`; commands:

- ``start {n, hub, hub_addrs}``: build and start ``n`` nodes (dial-only: they listen on
  nothing) with the hub in their address book.
- ``connect {concurrency, timeout}``: every node ``connect()``s to the hub.
- ``send {m, size}``: every node sends ``m`` messages of ``size`` bytes to the hub on
  stream :data:`STREAM`; message ``i`` starts with ``i`` (4 bytes, big endian).
- ``arm``: subscribe every node to its messages on :data:`STREAM` (before a fan-out).
- ``wait_received {count, timeout}``: wait until every armed node has received ``count``
  messages; replies with the totals and ``last_at`` (``time.monotonic()`` of the last
  arrival; CLOCK_MONOTONIC is system-wide on Linux, so the hub can compare it).
- ``disconnect``: every node disconnects from the hub.
- ``stop``: stop every node.

The hub's settings for this many peers from one IP: :func:`hub_config`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from helpers.peer_process import PeerProcess

from engine.config import Config
from engine.connection_state import ConnectionState
from engine.crypto.identity import Identity, PeerId
from engine.events import EventFilter, Subscription
from engine.node import IncomingMessage, Node

__all__ = [
    "STREAM",
    "HubRecorder",
    "Swarm",
    "hub_config",
    "peer_config",
    "raise_fd_limit",
    "seq_of",
]

STREAM = "load"
_SEQ = struct.Struct(">I")


def raise_fd_limit(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def seq_of(data: bytes) -> int:
    """The sequence number a worker put at the start of a fan-in message."""
    return int(_SEQ.unpack_from(data)[0])


def hub_config(peers: int, data_dir: Path, **overrides: Any) -> Config:
    """The hub: ``peers`` inbound connections, all from 127.0.0.1, dialing at once.

    Only the limits that count connections per IP / per second, the connection caps and
    the event buffer (one subscriber sees every establishment) are raised; keep-alive,
    flow control and everything else keep their defaults.
    """
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "listen_addrs": ["/ip4/127.0.0.1/tcp/0"],
        "default_streams": [STREAM],
        "auto_connect": False,
        "reconnect_max_attempts": 0,
        "max_connections": peers + 1_000,
        "max_connections_per_ip": peers + 1_000,
        "connection_rate_per_ip": 100_000.0,
        "event_buffer_size": max(1024, 8 * peers),
        **overrides,
    }
    return Config(**values)


def peer_config(data_dir: Path) -> Config:
    """A swarm peer: dial-only, no reconnection, slow background probes (CPU is shared)."""
    return Config(
        data_dir=data_dir,
        listen_addrs=[],
        default_streams=[STREAM],
        auto_connect=False,
        reconnect_max_attempts=0,
        health_interval=3600.0,
        repository_probe_interval=3600.0,
        flush_interval=3600.0,
    )


# -- worker side (runs in the subprocess) ------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Worker:
    """Command handlers around the nodes of one subprocess."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.hub: PeerId | None = None
        self.subs: list[Subscription[IncomingMessage]] = []
        self.received: list[int] = []
        self.last_at = 0.0
        self._readers: list[asyncio.Task[None]] = []
        self._progress = asyncio.Event()

    async def cmd_start(self, cmd: dict[str, Any]) -> dict[str, Any]:
        n = int(cmd["n"])
        raise_fd_limit(4 * n + 256)
        self.hub = PeerId.from_string(str(cmd["hub"]))
        data_dir = Path(tempfile.mkdtemp(prefix="gb-swarm-"))
        config = peer_config(data_dir)
        for _ in range(n):
            node = Node(config, identity=Identity.generate())
            self.nodes.append(node)
            await node.start()
            await node.add_peer(self.hub, list(cmd["hub_addrs"]))
        return {"started": len(self.nodes)}

    async def cmd_connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.hub is not None
        hub = self.hub
        gate = asyncio.Semaphore(int(cmd.get("concurrency", 16)))
        timeout = float(cmd.get("timeout", 60))
        errors: list[str] = []

        async def one(node: Node) -> None:
            async with gate:
                try:
                    await node.connect(hub, timeout=timeout)
                except Exception as exc:  # reported, not raised: count the failures
                    errors.append(repr(exc))

        await asyncio.gather(*(one(node) for node in self.nodes))
        return {"connected": len(self.nodes) - len(errors), "errors": errors[:10]}

    async def cmd_send(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.hub is not None
        hub = self.hub
        m, size = int(cmd["m"]), int(cmd["size"])
        pad = os.urandom(max(0, size - _SEQ.size))

        async def one(node: Node) -> None:
            for i in range(m):
                await node.send(hub, STREAM, _SEQ.pack(i) + pad)

        await asyncio.gather(*(one(node) for node in self.nodes))
        return {"sent": m * len(self.nodes)}

    async def cmd_arm(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.received = [0] * len(self.nodes)
        for index, node in enumerate(self.nodes):
            sub = node.messages(stream=STREAM)
            self.subs.append(sub)
            self._readers.append(asyncio.create_task(self._read(index, sub)))
        return {"armed": len(self.subs)}

    async def _read(self, index: int, sub: Subscription[IncomingMessage]) -> None:
        async for _msg in sub:
            self.received[index] += 1
            self.last_at = time.monotonic()
            self._progress.set()

    async def cmd_wait_received(self, cmd: dict[str, Any]) -> dict[str, Any]:
        count = int(cmd["count"])
        async with asyncio.timeout(float(cmd.get("timeout", 60))):
            while min(self.received, default=count) < count:
                self._progress.clear()
                await self._progress.wait()
        return {
            "received": sum(self.received),
            "nodes_complete": sum(r >= count for r in self.received),
            "last_at": self.last_at,
        }

    async def cmd_disconnect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.hub is not None
        hub = self.hub
        await asyncio.gather(*(node.disconnect(hub) for node in self.nodes))
        return {"disconnected": len(self.nodes)}

    async def cmd_stop(self, cmd: dict[str, Any]) -> dict[str, Any]:
        for sub in self.subs:
            sub.unsubscribe()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self.subs.clear()
        self._readers.clear()
        await asyncio.gather(*(node.stop() for node in self.nodes), return_exceptions=True)
        stopped = len(self.nodes)
        self.nodes.clear()
        return {"stopped": stopped}


async def worker_main() -> None:
    """Run the worker until stdin closes or ``exit`` arrives (commands run one at a time)."""
    argparse.ArgumentParser(description=__doc__).parse_args()
    worker = _Worker()
    _emit({"event": "ready", "peer_id": "", "pid": os.getpid(), "addrs": []})
    handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
        name.removeprefix("cmd_"): getattr(worker, name)
        for name in dir(worker)
        if name.startswith("cmd_")
    }
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            if not line.strip():
                continue
            cmd = json.loads(line)
            if cmd.get("cmd") == "exit":
                _emit({"id": cmd.get("id"), "ok": True})
                break
            handler = handlers.get(str(cmd.get("cmd")))
            if handler is None:
                _emit({"id": cmd.get("id"), "ok": False, "error": f"unknown command {cmd!r}"})
                continue
            try:
                result = await handler(cmd)
            except Exception as exc:
                _emit({"id": cmd.get("id"), "ok": False, "error": repr(exc)})
                continue
            _emit({"id": cmd.get("id"), "ok": True, **result})
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(30):
                await worker.cmd_stop({})


# -- hub side (the test or bench process) ------------------------------------------------------


class HubRecorder:
    """Consumes the hub's establishment events and fan-in messages as they come.

    ``marks`` holds ``(perf_counter, process_time)`` at each establishment; ``per_peer``
    counts fan-in messages per peer and ``out_of_order`` those whose sequence number
    was not the next one expected from that peer.
    """

    def __init__(self, hub: Node, peers: int) -> None:
        self.hub = hub
        self.peers = peers
        self.marks: list[tuple[float, float]] = []  # (perf_counter, process_time)
        self.established = asyncio.Event()
        self.per_peer: Counter[PeerId] = Counter()
        self.out_of_order = 0
        self.fanin_target = 0
        self.fanin_done = asyncio.Event()
        self.received = 0
        self._events = hub.subscribe(EventFilter(states={ConnectionState.ESTABLISHED}))
        self._messages = hub.messages(stream=STREAM, buffer_size=1_000_000, buffer_bytes=4 << 30)
        self.tasks = [
            asyncio.create_task(self._count_established()),
            asyncio.create_task(self._count_messages()),
        ]

    async def _count_established(self) -> None:
        async for _event in self._events:
            self.marks.append((time.perf_counter(), time.process_time()))
            if len(self.marks) >= self.peers:
                self.established.set()

    async def _count_messages(self) -> None:
        async for msg in self._messages:
            if seq_of(msg.data) != self.per_peer[msg.peer_id]:
                self.out_of_order += 1
            self.per_peer[msg.peer_id] += 1
            self.received += 1
            if self.fanin_target and self.received >= self.fanin_target:
                self.fanin_done.set()

    @property
    def dropped(self) -> int:
        """Items the hub dropped because this recorder was slow (both subscriptions)."""
        return self._events.dropped + self._messages.dropped

    async def aclose(self) -> None:
        """Unsubscribe and end the consumer tasks."""
        self._events.unsubscribe()
        self._messages.unsubscribe()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class Swarm:
    """``processes`` worker subprocesses holding ``peers`` nodes between them.

    Use ``async with Swarm(peers, processes) as swarm:``; every subprocess is killed on
    exit whatever happened.
    """

    def __init__(self, peers: int, processes: int) -> None:
        self.peers = peers
        self.per = [peers // processes + (i < peers % processes) for i in range(processes)]
        self.procs: list[PeerProcess] = []

    async def __aenter__(self) -> Self:
        try:
            for i, n in enumerate(self.per):
                if n:
                    argv = [sys.executable, "-m", "load.swarm"]
                    self.procs.append(await PeerProcess.start(argv, name=f"swarm-{i}"))
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill every worker."""
        await asyncio.gather(*(p.aclose() for p in self.procs), return_exceptions=True)

    async def all(self, cmd: str, *, timeout: float, **fields: Any) -> list[dict[str, Any]]:
        """Send ``cmd`` to every worker at once; their replies, in worker order."""
        return list(
            await asyncio.gather(*(p.command(cmd, timeout=timeout, **fields) for p in self.procs))
        )

    async def start(self, hub: Node, timeout: float = 120) -> None:
        """Build and start the peer nodes (``hub`` in their address books)."""
        addrs = [str(a) for a in hub.listen_addrs()]
        await asyncio.gather(
            *(
                p.command("start", timeout=timeout, n=n, hub=str(hub.peer_id), hub_addrs=addrs)
                for p, n in zip(self.procs, (n for n in self.per if n), strict=True)
            )
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(worker_main())
