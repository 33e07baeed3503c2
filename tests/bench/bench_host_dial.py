"""Dial-to-ready latency of our Host on 127.0.0.1 (TCP + multistream + Noise + yamux).

Run: ``.venv/bin/python -P tests/bench/bench_host_dial.py [N]`` (``-P``: the script
directory holds an ``engine.py`` that would shadow the package). Each iteration dials a
listening host over a fresh TCP connection, waits until the connection is secured and
muxed (``dial`` returned), opens one negotiated stream and echoes 1 byte (first-stream
latency), then disconnects. Prints a table and one JSON line. Not a timed test.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from multiaddr import Multiaddr

from engine.config import Config
from engine.crypto.identity import Identity
from engine.net.host import Host
from engine.net.interface import P2PStream

ECHO = "/bench/echo/1.0.0"


async def echo(stream: P2PStream) -> None:
    while data := await stream.read():
        await stream.write(data)
    await stream.aclose()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def main(n: int) -> None:
    config = Config(max_connections_per_ip=100_000, connection_rate_per_ip=100_000)
    server = Host(Identity.generate(), config)
    server.set_stream_handler(ECHO, echo)
    await server.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
    client = Host(Identity.generate(), config)
    dial_ms: list[float] = []
    stream_ms: list[float] = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            await client.dial(server.peer_id, server.listen_addrs(), timeout=10)
            ready = time.perf_counter()
            stream = await client.new_stream(server.peer_id, [ECHO], timeout=10)
            await stream.write(b"x")
            await stream.read(1)
            done = time.perf_counter()
            await stream.aclose()
            dial_ms.append((ready - started) * 1000)
            stream_ms.append((done - ready) * 1000)
            await client.disconnect(server.peer_id)
    finally:
        await client.close()
        await server.close()
    result = {
        "bench": "host_dial",
        "n": n,
        "dial_median_ms": round(statistics.median(dial_ms), 3),
        "dial_p99_ms": round(pct(dial_ms, 0.99), 3),
        "first_stream_median_ms": round(statistics.median(stream_ms), 3),
        "first_stream_p99_ms": round(pct(stream_ms, 0.99), 3),
    }
    print(f"{'metric':<28}{'median ms':>12}{'p99 ms':>12}")
    print(
        f"{'dial (secured + muxed)':<28}{result['dial_median_ms']:>12}{result['dial_p99_ms']:>12}"
    )
    print(
        f"{'first stream + 1 B echo':<28}"
        f"{result['first_stream_median_ms']:>12}{result['first_stream_p99_ms']:>12}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
