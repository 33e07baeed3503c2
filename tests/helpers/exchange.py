"""The two test protocols every interop peer implements, on our :class:`P2PStream`.

``/glueberry-interop/exchange/1.0.0`` — frames are a 4-byte big-endian length and a
payload. The initiator sends a header frame ``{"count": N, "size": S}`` (JSON); then both
sides concurrently send N random frames of S bytes and half-close, while reading the
other side's frames until end of stream. Each side reports how many frames it sent and
received and the SHA-256 of the concatenated payloads, so a test can check that what one
side sent is exactly what the other received, both ways.

``/glueberry-interop/sink/1.0.0`` — the initiator writes raw bytes and half-closes; the
responder answers with the 8-byte big-endian count of bytes it read, then closes. Used
for throughput.

The same protocols are implemented in ``tests/interop/js_peer.mjs`` and
``tests/interop/py_peer.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import time
from typing import Any

from engine.net.interface import P2PStream

__all__ = [
    "EXCHANGE_PROTOCOL",
    "SINK_PROTOCOL",
    "handle_sink",
    "run_exchange",
    "run_sink",
]

EXCHANGE_PROTOCOL = "/glueberry-interop/exchange/1.0.0"
SINK_PROTOCOL = "/glueberry-interop/sink/1.0.0"
MAX_FRAME = 16 * 1024 * 1024
_READ_SIZE = 65536


class _FrameReader:
    def __init__(self, stream: P2PStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def next(self) -> bytes | None:
        while True:
            if len(self._buf) >= 4:
                (length,) = struct.unpack_from(">I", self._buf)
                if length > MAX_FRAME:
                    raise ValueError(f"frame too large: {length}")
                if len(self._buf) >= 4 + length:
                    payload = bytes(self._buf[4 : 4 + length])
                    del self._buf[: 4 + length]
                    return payload
            chunk = await self._stream.read(_READ_SIZE)
            if not chunk:
                if self._buf:
                    raise ValueError(f"{len(self._buf)} trailing bytes at end of stream")
                return None
            self._buf += chunk


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def _send_frames(stream: P2PStream, count: int, size: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    for _ in range(count):
        payload = os.urandom(size)
        digest.update(payload)
        await stream.write(_frame(payload))
    await stream.close_write()
    return count, digest.hexdigest()


async def _recv_frames(reader: _FrameReader) -> tuple[int, str, dict[str, int]]:
    digest = hashlib.sha256()
    count = 0
    sizes: dict[str, int] = {}
    while (payload := await reader.next()) is not None:
        count += 1
        sizes[str(len(payload))] = sizes.get(str(len(payload)), 0) + 1
        digest.update(payload)
    return count, digest.hexdigest(), sizes


async def run_exchange(
    stream: P2PStream, role: str, count: int = 0, size: int = 0
) -> dict[str, Any]:
    """Run the exchange protocol as ``"initiator"`` (with ``count``/``size``) or responder.

    Returns:
        ``role, protocol, count, size, sent_count, sent_sha256, recv_count, recv_sha256,
        recv_sizes, elapsed_ms`` — the fields the other peers report.
    """
    started = time.perf_counter()
    reader = _FrameReader(stream)
    if role == "initiator":
        await stream.write(_frame(json.dumps({"count": count, "size": size}).encode()))
    else:
        header = await reader.next()
        if header is None:
            raise ValueError("stream ended before the exchange header")
        params = json.loads(header)
        count, size = int(params["count"]), int(params["size"])
    async with asyncio.TaskGroup() as tg:
        sending = tg.create_task(_send_frames(stream, count, size))
        receiving = tg.create_task(_recv_frames(reader))
    sent_count, sent_sha = sending.result()
    recv_count, recv_sha, sizes = receiving.result()
    await stream.aclose()
    return {
        "role": role,
        "protocol": stream.protocol_id,
        "count": count,
        "size": size,
        "sent_count": sent_count,
        "sent_sha256": sent_sha,
        "recv_count": recv_count,
        "recv_sha256": recv_sha,
        "recv_sizes": sizes,
        "elapsed_ms": (time.perf_counter() - started) * 1000,
    }


async def handle_sink(stream: P2PStream) -> None:
    """Responder side of the sink protocol."""
    total = 0
    try:
        while chunk := await stream.read(_READ_SIZE):
            total += len(chunk)
        await stream.write(struct.pack(">Q", total))
        await stream.aclose()
    except Exception:
        await stream.reset()
        raise


async def run_sink(stream: P2PStream, size: int, total: int) -> dict[str, Any]:
    """Initiator side: write ``total`` bytes in writes of ``size``; time until acked."""
    chunk = os.urandom(size)
    started = time.perf_counter()
    sent = 0
    while sent < total:
        await stream.write(chunk)
        sent += size
    await stream.close_write()
    reply = b""
    while len(reply) < 8:
        part = await stream.read(8 - len(reply))
        if not part:
            raise ValueError("sink closed before its byte count")
        reply += part
    elapsed = time.perf_counter() - started
    await stream.aclose()
    (acked,) = struct.unpack(">Q", reply)
    return {"bytes": sent, "acked": acked, "seconds": elapsed}
