"""HostStream hands bytes read past the negotiation to the first reads."""

from __future__ import annotations

from engine.crypto.identity import Identity
from engine.net.host import HostStream
from engine.net.interface import Direction, P2PStream


class FakeInner:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read(self, max_bytes: int = 65536) -> bytes:
        self.calls.append(f"read:{max_bytes}")
        return b"inner"

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(f"write:{bytes(data)!r}")

    async def close_write(self) -> None:
        self.calls.append("close_write")

    async def aclose(self) -> None:
        self.calls.append("aclose")

    async def reset(self) -> None:
        self.calls.append("reset")


async def test_leftover_first_then_inner() -> None:
    inner = FakeInner()
    peer = Identity.generate().peer_id
    stream = HostStream(inner, "/p/1", peer, Direction.INBOUND, b"abcdef")  # type: ignore[arg-type]
    assert isinstance(stream, P2PStream)
    assert (stream.protocol_id, stream.remote_peer, stream.direction) == (
        "/p/1",
        peer,
        Direction.INBOUND,
    )
    assert await stream.read(4) == b"abcd"
    assert await stream.read() == b"ef"
    assert inner.calls == []
    assert await stream.read(7) == b"inner"
    await stream.write(b"x")
    await stream.close_write()
    await stream.reset()
    await stream.aclose()
    assert inner.calls == ["read:7", "write:b'x'", "close_write", "reset", "aclose"]
