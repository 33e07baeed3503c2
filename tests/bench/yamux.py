"""Throughput of YamuxConnection over an in-memory secure channel (no Noise, no TCP).

Run from the repository root: ``.venv/bin/python -m tests.bench.yamux [--quick]`` (as a
module: run as a script, ``tests/bench/engine.py`` would shadow the ``engine`` package).
Prints a table and one JSON line.
Measures the muxer alone: what the whole stack can reach at most above Noise and TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import deque

from engine.net.muxer import MuxedStream, SecureChannel, YamuxConnection


class MemoryChannel:
    """One end of an in-memory channel pair with a bounded inbox (like a socket buffer)."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.peer: MemoryChannel
        self._inbox: deque[bytes] = deque()
        self._inbox_len = 0
        self._limit = limit
        self._closed = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    @staticmethod
    def pair() -> tuple[MemoryChannel, MemoryChannel]:
        a, b = MemoryChannel(), MemoryChannel()
        a.peer, b.peer = b, a
        return a, b

    async def read(self) -> bytes:
        while not self._inbox:
            if self._closed:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._inbox)
        self._inbox.clear()
        self._inbox_len = 0
        self._writable.set()
        return data

    async def write(self, data: bytes) -> None:
        peer = self.peer
        while peer._inbox_len >= peer._limit and not peer._closed:
            peer._writable.clear()
            await peer._writable.wait()
        peer._inbox.append(data)
        peer._inbox_len += len(data)
        peer._readable.set()

    async def aclose(self) -> None:
        for ch in (self, self.peer):
            ch._closed = True
            ch._readable.set()
            ch._writable.set()


async def _drain(stream: MuxedStream, total: int) -> None:
    got = 0
    while got < total:
        chunk = await stream.read(1 << 20)
        if not chunk:
            raise RuntimeError("early end of stream")
        got += len(chunk)


async def one_stream(
    size: int, count: int, channels: tuple[SecureChannel, SecureChannel] | None = None
) -> dict[str, float]:
    a, b = channels or MemoryChannel.pair()
    async with (
        YamuxConnection(a, is_client=True) as client,
        YamuxConnection(b, is_client=False) as server,
    ):
        payload = os.urandom(size)
        out = await client.open_stream()
        await out.write(b"!")
        inbound = await server.accept_stream()
        await inbound.read(1)
        t0 = time.perf_counter()

        async def send() -> None:
            for _ in range(count):
                await out.write(payload)

        await asyncio.gather(send(), _drain(inbound, size * count))
        elapsed = time.perf_counter() - t0
    total = size * count
    return {
        "msg_per_s": count / elapsed,
        "mb_per_s": total / elapsed / 1e6,
        "seconds": elapsed,
    }


async def many_streams(n_streams: int, size: int, count: int) -> dict[str, float]:
    a, b = MemoryChannel.pair()
    async with (
        YamuxConnection(a, is_client=True) as client,
        YamuxConnection(b, is_client=False) as server,
    ):
        payload = os.urandom(size)
        pairs = []
        for _ in range(n_streams):
            out = await client.open_stream()
            await out.write(b"!")
            inbound = await server.accept_stream()
            await inbound.read(1)
            pairs.append((out, inbound))
        t0 = time.perf_counter()

        async def send(stream: MuxedStream) -> None:
            for _ in range(count):
                await stream.write(payload)

        await asyncio.gather(
            *(send(o) for o, _ in pairs), *(_drain(i, size * count) for _, i in pairs)
        )
        elapsed = time.perf_counter() - t0
    total_msgs = n_streams * count
    return {
        "msg_per_s": total_msgs / elapsed,
        "mb_per_s": total_msgs * size / elapsed / 1e6,
        "seconds": elapsed,
    }


async def noise_pair() -> tuple[SecureChannel, SecureChannel, asyncio.Server]:
    """Two Noise channels over TCP on 127.0.0.1 (the production secure channel)."""
    from engine.crypto.identity import Identity
    from engine.net.noise import NoiseStaticKey, noise_handshake

    server_key = NoiseStaticKey(Identity.generate())
    client_key = NoiseStaticKey(Identity.generate())
    accepted: asyncio.Future[SecureChannel] = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result(await noise_handshake(r, w, server_key, initiator=False))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    client = await noise_handshake(r, w, client_key, initiator=True)
    return client, await accepted, server


async def one_stream_noise(size: int, count: int) -> dict[str, float]:
    a, b, listener = await noise_pair()
    try:
        return await one_stream(size, count, channels=(a, b))
    finally:
        listener.close()
        await listener.wait_closed()


async def main(quick: bool, noise: bool) -> None:
    scale = 5 if quick else 1
    results = {
        "1KiB_x_100000": await one_stream(1024, 100_000 // scale),
        "64KiB_x_4000": await one_stream(64 * 1024, 4000 // scale),
        "1MiB_x_200": await one_stream(1 << 20, 200 // scale),
        "64_streams_1KiB_x_2000": await many_streams(64, 1024, 2000 // scale),
    }
    if noise:
        results["noise_tcp_1KiB_x_50000"] = await one_stream_noise(1024, 50_000 // scale)
        results["noise_tcp_64KiB_x_2000"] = await one_stream_noise(64 * 1024, 2000 // scale)
    print(f"{'case':<26}{'msg/s':>12}{'MB/s':>10}{'seconds':>10}")
    for name, r in results.items():
        print(f"{name:<26}{r['msg_per_s']:>12,.0f}{r['mb_per_s']:>10.1f}{r['seconds']:>10.2f}")
    print(
        json.dumps(
            {
                "bench": "yamux_in_memory",
                "python": sys.version.split()[0],
                "results": {k: {m: round(v, 3) for m, v in r.items()} for k, r in results.items()},
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one fifth of the work")
    parser.add_argument(
        "--noise", action="store_true", help="also run over Noise + TCP on 127.0.0.1"
    )
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.noise))
