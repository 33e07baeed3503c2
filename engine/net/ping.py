"""ping (``/ipfs/ping/1.0.0``): the dialer writes 32 random bytes, the peer echoes them.

The responder echoes every 32-byte block until end of stream (several pings may share a
stream). The initiator measures the round trip of one block and checks the echo.
"""

from __future__ import annotations

import os
import time

from engine.errors import RemoteProtocolError
from engine.net.interface import P2PStream

__all__ = ["PING_PROTOCOL_ID", "PING_SIZE", "handle_ping", "ping_once"]

PING_PROTOCOL_ID = "/ipfs/ping/1.0.0"
PING_SIZE = 32
_MAX_PINGS_PER_STREAM = 1_000_000


async def _read_exactly(stream: P2PStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def handle_ping(stream: P2PStream) -> None:
    """Echo 32-byte blocks until the peer closes its side, then close ours."""
    try:
        for _ in range(_MAX_PINGS_PER_STREAM):
            block = await _read_exactly(stream, PING_SIZE)
            if len(block) < PING_SIZE:
                break
            await stream.write(block)
    finally:
        await stream.aclose()


async def ping_once(stream: P2PStream) -> float:
    """Send one ping on ``stream``; return the round-trip time in seconds.

    Raises:
        RemoteProtocolError: the echo differs or the stream ended early.
        StreamError: the stream broke.
    """
    payload = os.urandom(PING_SIZE)
    start = time.perf_counter()
    await stream.write(payload)
    echo = await _read_exactly(stream, PING_SIZE)
    rtt = time.perf_counter() - start
    if echo != payload:
        raise RemoteProtocolError("ping echo does not match")
    return rtt
