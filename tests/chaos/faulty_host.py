"""Faults *above* Noise: a host wrapper whose Glueberry stream writes go through the core.

Noise authenticates every transport frame, so a byte flipped on the wire can only ever
kill the connection. To corrupt a Glueberry frame (the case ``on_decryption_error`` is
for), the fault has to be injected after Noise decrypted it, or before the sender's Noise
encrypts it. :class:`FaultyStreamHost` wraps a real host (it delegates everything) and
passes every write on a ``/glueberry/stream/...`` stream through a
:class:`~faulty_proxy.FaultInjector` built with :class:`~faulty_proxy.GlueberryFrameTracker`
(one link per stream, direction ``UP``), so ``arm_corruption`` flips a bit inside one
frame's payload (nonce, ciphertext or tag) while the framing stays valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine.crypto.identity import PeerId
from engine.net.interface import Direction, P2PHost, P2PStream

from .faulty_proxy import FaultInjector, Forward, GlueberryFrameTracker, Kill, Link, Way

__all__ = ["FaultyStream", "FaultyStreamHost"]

_STREAM_PREFIX = "/glueberry/stream/"


class FaultyStream:
    """A :class:`P2PStream` whose writes pass through the fault core."""

    def __init__(self, inner: P2PStream, faults: FaultInjector) -> None:
        self._inner = inner
        self._faults = faults
        self._link: Link = faults.new_link()

    @property
    def protocol_id(self) -> str:
        return self._inner.protocol_id

    @property
    def remote_peer(self) -> PeerId:
        return self._inner.remote_peer

    @property
    def direction(self) -> Direction:
        return self._inner.direction

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._inner.read(max_bytes)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        now = asyncio.get_running_loop().time()
        for action in self._faults.on_data(self._link, Way.UP, bytes(data), now):
            if isinstance(action, Forward):
                await self._inner.write(action.data)
            elif isinstance(action, Kill):
                await self._inner.reset()

    async def close_write(self) -> None:
        await self._inner.close_write()

    async def aclose(self) -> None:
        self._faults.link_closed(self._link)
        await self._inner.aclose()

    async def reset(self) -> None:
        self._faults.link_closed(self._link)
        await self._inner.reset()


class FaultyStreamHost:
    """Wraps a :class:`P2PHost`; Glueberry streams (both directions) become :class:`FaultyStream`.

    Args:
        inner: the real host (the node owns and closes it through this wrapper).
        faults: the core; default one with a :class:`GlueberryFrameTracker` per stream.
    """

    def __init__(self, inner: P2PHost, faults: FaultInjector | None = None) -> None:
        self.inner = inner
        self.faults = faults or FaultInjector(tracker_factory=lambda way: GlueberryFrameTracker())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _wrap(self, stream: P2PStream) -> P2PStream:
        if stream.protocol_id.startswith(_STREAM_PREFIX):
            return FaultyStream(stream, self.faults)
        return stream

    async def new_stream(
        self,
        peer_id: PeerId,
        protocols: Sequence[str],
        *,
        timeout: float,
    ) -> P2PStream:
        return self._wrap(await self.inner.new_stream(peer_id, protocols, timeout=timeout))

    def set_stream_handler(
        self, protocol_id: str, handler: Callable[[P2PStream], Awaitable[None]]
    ) -> None:
        async def wrapped(stream: P2PStream) -> None:
            await handler(self._wrap(stream))

        self.inner.set_stream_handler(protocol_id, wrapped)

    def set_stream_handler_match(
        self,
        family: str,
        match: Callable[[str], bool],
        handler: Callable[[P2PStream], Awaitable[None]],
    ) -> None:
        async def wrapped(stream: P2PStream) -> None:
            await handler(self._wrap(stream))

        self.inner.set_stream_handler_match(family, match, wrapped)
