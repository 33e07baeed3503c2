"""Shared pieces of the chaos tests: proxied node pairs, checkable payloads, an inbox."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.connection_state import ConnectionState
from engine.events import ConnectionEvent, EventFilter, Subscription
from engine.node import IncomingMessage, Node

from .faulty_proxy import FaultyProxy

__all__ = [
    "EventLog",
    "Inbox",
    "Pair",
    "check_payload",
    "payload",
]

_HEADER = 8


def payload(seq: int, size: int = 64) -> bytes:
    """Message ``seq``: its number, then bytes derived from it (so damage is visible)."""
    body_len = max(0, size - _HEADER)
    filler = b""
    counter = 0
    while len(filler) < body_len:
        filler += hashlib.blake2b(b"%d:%d" % (seq, counter), digest_size=64).digest()
        counter += 1
    return seq.to_bytes(_HEADER, "big") + filler[:body_len]


def check_payload(data: bytes) -> int:
    """The sequence number of an intact :func:`payload`; raises AssertionError if damaged."""
    assert len(data) >= _HEADER, f"short message ({len(data)} bytes)"
    seq = int.from_bytes(data[:_HEADER], "big")
    assert data == payload(seq, len(data)), f"message {seq} arrived damaged"
    return seq


class Inbox:
    """Collects a node's received messages in a background task; tests await counts."""

    def __init__(self, node: Node, stream: str | None = None) -> None:
        self.items: list[IncomingMessage] = []
        self._sub = node.messages(stream=stream)
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for msg in self._sub:
            self.items.append(msg)
            self._changed.set()

    @property
    def seqs(self) -> list[int]:
        """Sequence numbers of what arrived, each message checked intact."""
        return [check_payload(m.data) for m in self.items]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def aclose(self) -> None:
        self._sub.unsubscribe()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@dataclass(eq=False)
class EventLog:
    """Every connection event one node emits about one peer, recorded as it happens."""

    node: Node
    peer: object
    events: list[ConnectionEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sub: Subscription[ConnectionEvent] = self.node.subscribe(
            EventFilter(peers={self.peer})  # type: ignore[arg-type]
        )
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for event in self._sub:
            self.events.append(event)
            self._changed.set()

    def states(self) -> list[ConnectionState]:
        return [e.state for e in self.events]

    async def wait_for(
        self,
        predicate: Callable[[ConnectionEvent], bool],
        timeout: float,
        *,
        after: int = 0,
    ) -> ConnectionEvent:
        """The first event at index >= ``after`` matching ``predicate`` (waits for it)."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    async def wait_state(
        self, state: ConnectionState, timeout: float, *, after: int = 0
    ) -> ConnectionEvent:
        return await self.wait_for(lambda e: e.state is state, timeout, after=after)

    async def aclose(self) -> None:
        self._sub.unsubscribe()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@dataclass(eq=False)
class Pair:
    """``a`` dials ``b`` through ``proxy``; ``a`` has ``b`` in its address book."""

    a: Node
    b: Node
    proxy: FaultyProxy

    async def established(self, timeout: float) -> None:
        """Both sides established (waits, race-free)."""
        from node_kit import wait_state

        await asyncio.gather(
            wait_state(self.a, self.b.peer_id, ConnectionState.ESTABLISHED, timeout=timeout),
            wait_state(self.b, self.a.peer_id, ConnectionState.ESTABLISHED, timeout=timeout),
        )
