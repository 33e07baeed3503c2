"""Benchmark of the libp2p connection layer: scale, and ours vs py-libp2p side by side.

Run: ``.venv/bin/python tests/bench/transport.py [--connections 1000] [--processes 4]
[--dials 100] [--total-1k-mib 8] [--total-64k-mib 64] [--idle-seconds 5]``

1. Scale: this process runs one host (our stack) that accepts ``--connections`` inbound
   connections from ``--processes`` other processes (``helpers.glueberry_peer``, every
   connection from a fresh identity) and holds them. Reported: time to accept them all,
   CPU seconds per accept in the first 100 and the last 100 (must not grow with the
   number already connected), RSS per connection, and this process's CPU while idle with
   all connections held (keep-alive pings at the default 5 s interval).
2. Side by side, our stack, py-libp2p 0.8.1 (``tests/interop/py_peer.py``) and, for
   reference, js-libp2p 3.2.0 on Node (``tests/interop/js_peer.mjs``), all Noise + yamux,
   each as a client process and a server process on this machine: dial + secure
   + mux latency (median, p99, fresh connection per dial) and stream throughput for 1 KiB
   and 64 KiB writes (sink protocol: bytes until the receiver acknowledges the count).

Prints a table and one JSON line (``{"bench": "transport", ...}``). Not a test: nothing
here asserts a time; targets are stated next to the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from multiaddr import Multiaddr

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from helpers.notifee import ConnectionRecorder  # noqa: E402
from helpers.peer_process import (  # noqa: E402
    PeerProcess,
    glueberry_peer_argv,
    js_peer_argv,
    py_peer_argv,
)

from engine.config import Config  # noqa: E402
from engine.crypto.identity import Identity  # noqa: E402

KIB = 1024
MIB = 1024 * KIB
DIAL_TARGET_MS = 10.0
THROUGHPUT_TARGET_RATIO = 5.0


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def bench_scale(connections: int, processes: int, idle_seconds: float) -> dict[str, Any]:
    """One host in this process accepts and holds ``connections`` from other processes."""
    from engine.net.host import Host  # imported here so --connections 0 runs without it

    _raise_fd_limit(4 * connections + 256)
    config = Config(
        max_connections=connections + 1_000,
        max_pending_connections=1_000,
        max_connections_per_ip=connections + 1_000,
        connection_rate_per_ip=100_000.0,
    )
    host = Host(Identity.generate(), config)
    recorder = ConnectionRecorder()
    host.add_notifee(recorder)
    await host.listen([Multiaddr("/ip4/127.0.0.1/tcp/0")])
    addr = f"{host.listen_addrs()[0]}/p2p/{host.peer_id}"
    me = psutil.Process()
    peers = [
        await PeerProcess.start(glueberry_peer_argv("--no-listen"), name=f"hold-{i}")
        for i in range(processes)
    ]
    try:
        gc.collect()
        rss0 = me.memory_info().rss
        per = [connections // processes + (i < connections % processes) for i in range(processes)]
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                p.command("hold", addr=addr, n=n, concurrency=8, timeout=600)
                for p, n in zip(peers, per, strict=True)
            )
        )
        await recorder.wait_until(lambda r: r.connected_count >= connections, 60)
        accept_all = recorder.connect_marks[connections - 1][0] - started
        failed = sum(r["failed"] for r in results)
        gc.collect()
        rss1 = me.memory_info().rss
        marks = recorder.connect_marks
        bucket = min(100, connections // 2)
        first = (marks[bucket - 1][1] - marks[0][1]) / (bucket - 1)
        last = (marks[connections - 1][1] - marks[connections - bucket][1]) / (bucket - 1)

        buckets = [
            (marks[min(i + bucket, connections) - 1][1] - marks[i][1])
            / max(1, min(bucket, connections - i) - 1)
            * 1000
            for i in range(0, connections, bucket)
        ]

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(idle_seconds)  # measuring idle CPU: nothing to wait for
        idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        held = len(host.connected_peers())

        await asyncio.gather(*(p.command("release", timeout=120) for p in peers))
        await recorder.wait_until(lambda r: r.disconnected_count >= connections, 60)
    finally:
        await asyncio.gather(*(p.aclose() for p in peers))
        await host.close()
    return {
        "connections": connections,
        "processes": processes,
        "held": held,
        "failed_dials": failed,
        "accept_all_s": accept_all,
        "cpu_per_accept_first100_ms": first * 1000,
        "cpu_per_accept_last100_ms": last * 1000,
        "cpu_per_accept_buckets_ms": [round(b, 3) for b in buckets],
        "rss_per_connection_kib": (rss1 - rss0) / connections / KIB,
        "idle_cpu_percent": idle_cpu * 100,
    }


async def bench_pair(
    impl: str, dials: int, total_1k: int, total_64k: int, repeats: int
) -> dict[str, Any]:
    """Client and server processes of one implementation: dial latency and throughput."""
    argv = {
        "py-libp2p": py_peer_argv,
        "js-libp2p": js_peer_argv,
        "glueberry": glueberry_peer_argv,
    }[impl]()
    async with (
        await PeerProcess.start(argv, name=f"{impl}-server") as server,
        await PeerProcess.start(argv, name=f"{impl}-client") as client,
    ):
        addr = server.addrs[0]
        await client.command("bench_dial", addr=addr, n=3, timeout=60)  # warm-up
        dialed = await client.command("bench_dial", addr=addr, n=dials, timeout=600)
        latencies = dialed["latencies_ms"]
        await client.command("dial", addr=addr, timeout=30)
        throughput: dict[str, float] = {}
        for size, total in ((KIB, total_1k), (64 * KIB, total_64k)):
            rates = []
            for _ in range(repeats):
                result = await client.command(
                    "bench_sink", peer=server.peer_id, size=size, total=total, timeout=600
                )
                if result["acked"] != result["bytes"]:
                    raise RuntimeError(f"{impl}: sink acked {result['acked']} of {result['bytes']}")
                rates.append(result["bytes"] / result["seconds"] / MIB)
            throughput[f"{size // KIB}k"] = statistics.median(rates)
    return {
        "impl": impl,
        "dials": len(latencies),
        "dial_median_ms": statistics.median(latencies),
        "dial_p99_ms": _percentile(latencies, 99),
        "throughput_1k_mib_s": throughput["1k"],
        "throughput_64k_mib_s": throughput["64k"],
    }


def _print_table(scale: dict[str, Any] | None, pairs: list[dict[str, Any]]) -> None:
    if scale is not None:
        print(
            f"Scale: one host, {scale['connections']} inbound connections "
            f"from {scale['processes']} processes"
        )
        rows = [
            ("held / failed dials", f"{scale['held']} / {scale['failed_dials']}"),
            ("time to accept all", f"{scale['accept_all_s']:.2f} s"),
            ("CPU per accept, first 100", f"{scale['cpu_per_accept_first100_ms']:.2f} ms"),
            ("CPU per accept, last 100", f"{scale['cpu_per_accept_last100_ms']:.2f} ms"),
            ("RSS per connection", f"{scale['rss_per_connection_kib']:.1f} KiB"),
            ("idle CPU, all held", f"{scale['idle_cpu_percent']:.2f} %"),
        ]
        for name, value in rows:
            print(f"  {name:<28} {value:>14}")
        print()
    if pairs:
        print(f"  {'':<28}" + "".join(f"{p['impl']:>14}" for p in pairs))
        for key, label, fmt in (
            ("dial_median_ms", "dial+secure+mux median ms", "{:.2f}"),
            ("dial_p99_ms", "dial+secure+mux p99 ms", "{:.2f}"),
            ("throughput_1k_mib_s", "throughput 1 KiB writes MiB/s", "{:.1f}"),
            ("throughput_64k_mib_s", "throughput 64 KiB writes MiB/s", "{:.1f}"),
        ):
            print(f"  {label:<28}" + "".join(f"{fmt.format(p[key]):>14}" for p in pairs))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scale = None
    if args.connections > 0:
        scale = await bench_scale(args.connections, args.processes, args.idle_seconds)
    pairs = []
    for impl in args.impls:
        pairs.append(
            await bench_pair(
                impl, args.dials, args.total_1k_mib * MIB, args.total_64k_mib * MIB, args.repeats
            )
        )
    _print_table(scale, pairs)
    out: dict[str, Any] = {"bench": "transport", "scale": scale, "pairs": pairs}
    by_impl = {p["impl"]: p for p in pairs}
    if "glueberry" in by_impl:
        ours = by_impl["glueberry"]
        out["dial_median_target_met"] = ours["dial_median_ms"] < DIAL_TARGET_MS
        if "py-libp2p" in by_impl:
            ratio = ours["throughput_1k_mib_s"] / by_impl["py-libp2p"]["throughput_1k_mib_s"]
            out["throughput_1k_ratio_vs_py_libp2p"] = ratio
            out["throughput_target_met"] = ratio >= THROUGHPUT_TARGET_RATIO
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000, help="0 skips the scale part")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--dials", type=int, default=100, help="dials per implementation")
    parser.add_argument("--total-1k-mib", type=int, default=8, help="MiB sent in 1 KiB writes")
    parser.add_argument("--total-64k-mib", type=int, default=64, help="MiB sent in 64 KiB writes")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs (median)")
    parser.add_argument(
        "--impls",
        nargs="*",
        default=["glueberry", "py-libp2p", "js-libp2p"],
        help="implementations to pair (js-libp2p needs `npm ci --prefix tests/interop`)",
    )
    args = parser.parse_args()
    out = asyncio.run(run(args))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
