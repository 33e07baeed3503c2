"""Engine benchmark: throughput over one encrypted stream and connect+handshake latency.

Two nodes in two processes on 127.0.0.1 (real libp2p host: TCP, Noise, yamux): this
process sends, a child process (``--receiver``) counts. Prints a table and one JSON line.

    .venv/bin/python tests/bench/engine.py [--messages 200000] [--cycles 200] [--profile]

Throughput: the sender queues N messages of the given size on stream ``bench`` then an
``END`` marker; the receiver answers ``DONE <count> <bytes>`` when the marker arrives (the
stream preserves order), so the time covers delivery of every message to the receiver's
subscriber. Latency: ``connect()`` (dial + Noise + yamux + built-in handshake) until the
peer is established, then ``disconnect()``; repeated ``--cycles`` times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named engine.py: run as a script, its own directory comes first on
# sys.path and would shadow the engine package.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _HERE]

from engine.config import Config  # noqa: E402
from engine.connection_state import ConnectionState  # noqa: E402
from engine.crypto.identity import Identity, PeerId  # noqa: E402
from engine.events import EventFilter  # noqa: E402
from engine.node import Node  # noqa: E402

STREAM = "bench"


def make_config(data_dir: Path, **kw: object) -> Config:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "listen_addrs": ["/ip4/127.0.0.1/tcp/0"],
        "default_streams": [STREAM],
        "auto_connect": False,
        "message_buffer_size": 1_000_000,
        "max_message_size": 1024 * 1024,
        "reconnect_max_attempts": 0,
        "connection_rate_per_ip": 100_000.0,  # the latency loop reconnects at full speed
    }
    values.update(kw)
    return Config(**values)  # type: ignore[arg-type]


# -- receiver (child process) -------------------------------------------------------------


async def receiver() -> None:
    node = Node(make_config(Path(tempfile.mkdtemp())), identity=Identity.generate())
    await node.start()
    print(
        json.dumps({"peer_id": str(node.peer_id), "addrs": [str(a) for a in node.listen_addrs()]}),
        flush=True,
    )
    count = 0
    size = 0
    async for msg in node.messages(stream=STREAM):
        if msg.data == b"END":
            await node.send(msg.peer_id, STREAM, b"DONE %d %d" % (count, size))
            count = size = 0
        else:
            count += 1
            size += len(msg.data)


# -- sender (this process) -----------------------------------------------------------------


async def start_receiver() -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve()),
        "--receiver",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return proc, json.loads(line)


async def throughput(node: Node, peer: PeerId, size: int, count: int) -> dict[str, float]:
    payload = os.urandom(size)
    with node.messages(stream=STREAM, peer=peer) as replies:
        started = time.perf_counter()
        for _ in range(count):
            await node.send(peer, STREAM, payload)
        await node.send(peer, STREAM, b"END")
        reply = await asyncio.wait_for(anext(replies), 600)
        elapsed = time.perf_counter() - started
    _, got, nbytes = reply.data.split()
    assert int(got) == count, f"receiver got {int(got)} of {count} messages"
    return {
        "size": size,
        "messages": count,
        "seconds": elapsed,
        "msg_per_s": count / elapsed,
        "mb_per_s": int(nbytes) / elapsed / 1e6,
    }


async def latency(node: Node, peer: PeerId, cycles: int) -> dict[str, float]:
    samples: list[float] = []
    for _ in range(cycles):
        started = time.perf_counter()
        await node.connect(peer, timeout=30)
        samples.append(time.perf_counter() - started)
        with node.subscribe(EventFilter(peers={peer}, states={ConnectionState.DISCONNECTED})) as s:
            await node.disconnect(peer)
            if node.connection_state(peer) is not ConnectionState.DISCONNECTED:
                await asyncio.wait_for(anext(s), 10)
    samples.sort()
    return {
        "cycles": cycles,
        "median_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        "min_ms": samples[0] * 1000,
    }


async def stop_time(peers: int, kind: str) -> float:
    """stop() of a node with ``peers`` established peers, all in this process."""
    from engine.net.memory import MemoryNetwork

    net = MemoryNetwork()
    data = Path(tempfile.mkdtemp())
    nodes = []
    for i in range(peers + 1):
        ident = Identity.generate()
        host = None
        if kind == "memory":
            host = net.create_host(ident.peer_id, ip=f"10.0.{i // 250}.{i % 250 + 1}")
        n = Node(make_config(data, max_connections_per_ip=10_000), identity=ident, host=host)
        await n.start()
        nodes.append(n)
    hub, rest = nodes[0], nodes[1:]
    for n in rest:
        await n.add_peer(hub.peer_id, [str(a) for a in hub.listen_addrs()])
    await asyncio.gather(*(n.connect(hub.peer_id, timeout=30) for n in rest))
    await asyncio.gather(*(n.send(hub.peer_id, STREAM, b"x") for n in rest))
    started = time.perf_counter()
    await hub.stop()
    elapsed = time.perf_counter() - started
    for n in rest:
        await n.stop()
    return elapsed


async def sender(args: argparse.Namespace) -> None:
    proc, info = await start_receiver()
    node = Node(make_config(Path(tempfile.mkdtemp())), identity=Identity.generate())
    await node.start()
    results: dict[str, object] = {}
    try:
        peer = PeerId.from_string(str(info["peer_id"]))
        await node.add_peer(peer, list(info["addrs"]))
        await node.connect(peer, timeout=30)
        await throughput(node, peer, 1024, 2000)  # warm-up
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        runs = [
            await throughput(node, peer, 1024, args.messages),
            await throughput(node, peer, 64 * 1024, max(1000, args.messages // 40)),
        ]
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        await node.disconnect(peer)
        if args.gc_freeze:  # as `glueberry serve` does once started
            gc.freeze()
        lat = await latency(node, peer, args.cycles)
        results = {"throughput": runs, "connect_handshake": lat}
    finally:
        await node.stop()
        assert proc.stdin is not None
        proc.kill()
        await proc.wait()
    results["stop_100_peers_ms"] = {
        kind: await stop_time(100, kind) * 1000 for kind in ("tcp", "memory")
    }

    print(f"{'payload':>8} {'messages':>9} {'seconds':>8} {'msg/s':>10} {'MB/s':>8}")
    for r in runs:
        print(
            f"{int(r['size']):>8} {int(r['messages']):>9} {r['seconds']:>8.2f} "
            f"{r['msg_per_s']:>10,.0f} {r['mb_per_s']:>8.1f}"
        )
    print(
        f"connect+handshake over {lat['cycles']:.0f} cycles: median {lat['median_ms']:.2f} ms, "
        f"p99 {lat['p99_ms']:.2f} ms, min {lat['min_ms']:.2f} ms"
    )
    for kind, ms in results["stop_100_peers_ms"].items():  # type: ignore[attr-defined]
        print(f"stop() with 100 established peers ({kind} host): {ms:.1f} ms")
    print(json.dumps({"bench": "engine", **results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=200_000, help="1 KiB messages")
    parser.add_argument("--cycles", type=int, default=200, help="connect/disconnect cycles")
    parser.add_argument("--profile", action="store_true", help="cProfile the sender")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before the latency cycles, as `glueberry serve` does after start-up",
    )
    args = parser.parse_args()
    asyncio.run(receiver() if args.receiver else sender(args))


if __name__ == "__main__":
    main()
