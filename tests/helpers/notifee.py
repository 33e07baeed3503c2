"""A :class:`HostNotifee` that records connection events and lets a test await them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.crypto.identity import PeerId
from engine.net.interface import ConnectionInfo

__all__ = ["ConnectionRecorder", "Disconnect"]


@dataclass(frozen=True, slots=True)
class Disconnect:
    """One ``disconnected`` notification."""

    peer_id: PeerId
    reason: BaseException | None
    at: float  # time.monotonic() when the host delivered it


class ConnectionRecorder:
    """Counts connect/disconnect notifications; ``wait_until`` awaits a condition on them.

    ``connect_marks`` holds ``(time.perf_counter(), time.process_time())`` at every
    connect, for the benchmark's accept-cost buckets.
    """

    def __init__(self) -> None:
        self.connected_count = 0
        self.disconnected_count = 0
        self.connected_peers: dict[PeerId, ConnectionInfo] = {}
        self.disconnects: list[Disconnect] = []
        self.connect_marks: list[tuple[float, float]] = []
        self._waiters: list[tuple[Callable[[ConnectionRecorder], bool], asyncio.Future[None]]] = []

    # -- HostNotifee ----------------------------------------------------------------------

    def connected(self, info: ConnectionInfo) -> None:
        self.connect_marks.append((time.perf_counter(), time.process_time()))
        self.connected_count += 1
        self.connected_peers[info.peer_id] = info
        self._check()

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        self.disconnects.append(Disconnect(peer_id, reason, time.monotonic()))
        self.disconnected_count += 1
        self.connected_peers.pop(peer_id, None)
        self._check()

    # -- waiting ----------------------------------------------------------------------------

    def _check(self) -> None:
        still = []
        for predicate, fut in self._waiters:
            if fut.done():
                continue
            if predicate(self):
                fut.set_result(None)
            else:
                still.append((predicate, fut))
        self._waiters = still

    async def wait_until(
        self, predicate: Callable[[ConnectionRecorder], bool], timeout: float
    ) -> None:
        """Wait until ``predicate(self)`` holds (checked at every notification).

        Raises:
            TimeoutError: it did not hold within ``timeout`` seconds.
        """
        if predicate(self):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        try:
            async with asyncio.timeout(timeout):
                await fut
        finally:
            fut.cancel()

    def disconnect_of(self, peer_id: PeerId) -> Disconnect | None:
        """The first disconnect notification for ``peer_id``, if any."""
        return next((d for d in self.disconnects if d.peer_id == peer_id), None)
