"""Benchmark of one Glueberry node (the hub) with 1,000 established Glueberry peers.

Run from the repository root (``-P``: this directory holds ``engine.py``, which would
shadow the engine package)::

    .venv/bin/python -P tests/bench/node_peers.py [--peers 1000] [--processes 4]
        [--messages 100] [--size 1024] [--idle-seconds 10] [--profile PHASE]

This process runs the hub :class:`engine.node.Node` (real libp2p host on 127.0.0.1,
default settings except the per-IP connection limits, the connection caps and the event
buffer, see :func:`load.swarm.hub_config`). ``--peers`` peer nodes, each with its own
identity and host, live in ``--processes`` subprocesses (:mod:`load.swarm`) and all dial
the hub (TCP + Noise + yamux + the built-in Glueberry handshake). Reported:

- time until all peers are Established on the hub, and the rate;
- hub CPU per established peer in buckets of 100 (first vs last: must not grow with the
  peers already connected);
- hub RSS and asyncio tasks per established peer;
- hub CPU while idle with all peers connected (keep-alive pings at the default 5 s);
- fan-in: every peer sends ``--messages`` messages of ``--size`` bytes to the hub on one
  stream; hub messages/s received (every message counted, order checked per peer);
- fan-out: the hub sends one message to every peer; time until all have received it;
- the hub's ``stop()`` with every peer connected.

Prints a table and one JSON line (``{"bench": "node_peers", ...}``). Not a test: nothing
here asserts a time. ``--profile establish|fanin|fanout|idle`` prints the hub's top
cProfile functions for that phase.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import gc
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from load.swarm import STREAM, HubRecorder, Swarm, hub_config, raise_fd_limit  # noqa: E402

from engine.crypto.identity import Identity  # noqa: E402
from engine.node import Node  # noqa: E402

KIB = 1024
MIB = 1024 * KIB


@contextmanager
def _profiled(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)


def _trimmed_rss(me: psutil.Process) -> int:
    """RSS after glibc's malloc_trim(0): memory freed but kept by the allocator goes back."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(me.memory_info().rss)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n, m = args.peers, args.messages
    raise_fd_limit(4 * n + 512)
    me = psutil.Process()
    tasks_before = len(asyncio.all_tasks())
    hub = Node(
        hub_config(n, Path(tempfile.mkdtemp(prefix="gb-hub-"))), identity=Identity.generate()
    )
    await hub.start()
    out: dict[str, Any] = {"bench": "node_peers", "peers": n, "processes": args.processes}
    try:
        async with Swarm(n, args.processes) as swarm:
            await swarm.start(hub)
            rec = HubRecorder(hub, n)
            gc.collect()
            rss0, tasks0 = me.memory_info().rss, len(asyncio.all_tasks())

            # 1. establishment
            with _profiled(args.profile == "establish"):
                started, cpu_started = time.perf_counter(), time.process_time()
                times0 = me.cpu_times()
                replies = await swarm.all(
                    "connect", concurrency=args.concurrency, timeout=args.timeout
                )
                await asyncio.wait_for(rec.established.wait(), args.timeout)
                times1 = me.cpu_times()
            marks = rec.marks[:n]
            establish_s = marks[-1][0] - started
            bucket = min(100, max(2, n // 10))
            buckets = [
                (marks[min(i + bucket, n) - 1][1] - (marks[i - 1][1] if i else cpu_started))
                / (min(i + bucket, n) - i)
                * 1000
                for i in range(0, n, bucket)
            ]
            gc.collect()
            rss1, tasks1 = me.memory_info().rss, len(asyncio.all_tasks())
            out.update(
                connected_reported=sum(r["connected"] for r in replies),
                connect_errors=[e for r in replies for e in r["errors"]][:5],
                established_on_hub=hub.health()["peers"]["established"],
                establish_all_s=establish_s,
                establish_per_s=n / establish_s,
                cpu_per_established_ms_buckets=[round(b, 3) for b in buckets],
                cpu_per_established_first_ms=buckets[0],
                cpu_per_established_last_ms=buckets[-1],
                establish_hub_user_s=times1.user - times0.user,
                establish_hub_system_s=times1.system - times0.system,
                rss_per_peer_kib=(rss1 - rss0) / n / KIB,
                tasks_per_peer=(tasks1 - tasks0) / n,
                hub_rss_mib=rss1 / MIB,
            )

            # 2. idle with every peer connected
            with _profiled(args.profile == "idle"):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await asyncio.sleep(args.idle_seconds)  # measuring idle CPU: nothing to wait for
                out["idle_cpu_percent"] = (
                    (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
                )

            # 3. fan-in
            rec.fanin_target = n * m
            with _profiled(args.profile == "fanin"):
                started, cpu0 = time.perf_counter(), time.process_time()
                await swarm.all("send", m=m, size=args.size, timeout=args.timeout)
                await asyncio.wait_for(rec.fanin_done.wait(), args.timeout)
                fanin_s = time.perf_counter() - started
                fanin_cpu = time.process_time() - cpu0
            gc.collect()
            rss_fanin = me.memory_info().rss
            out.update(
                hub_rss_after_fanin_mib=rss_fanin / MIB,
                hub_rss_after_fanin_trimmed_mib=_trimmed_rss(me) / MIB,
                fanin_messages=rec.received,
                fanin_peers_complete=sum(1 for c in rec.per_peer.values() if c == m),
                fanin_out_of_order=rec.out_of_order,
                fanin_s=fanin_s,
                fanin_msg_per_s=n * m / fanin_s,
                fanin_mib_per_s=n * m * args.size / fanin_s / MIB,
                fanin_hub_cpu_us_per_msg=fanin_cpu / (n * m) * 1e6,
                fanin_hub_cpu_percent=fanin_cpu / fanin_s * 100,
            )

            # 4. fan-out
            await swarm.all("arm", timeout=60)
            peers = hub.connected_peers()
            payload = os.urandom(args.size)
            with _profiled(args.profile == "fanout"):
                started_mono, started = time.monotonic(), time.perf_counter()
                await asyncio.gather(*(hub.send(p, STREAM, payload) for p in peers))
                queued_s = time.perf_counter() - started
                got = await swarm.all("wait_received", count=1, timeout=args.timeout)
            out.update(
                fanout_peers=len(peers),
                fanout_received=sum(r["received"] for r in got),
                fanout_queued_s=queued_s,
                fanout_all_received_s=max(r["last_at"] for r in got) - started_mono,
            )
            out["subscriber_drops"] = rec.dropped
            await rec.aclose()

            # 5. stop with every peer connected
            started = time.perf_counter()
            await hub.stop()
            out["stop_s"] = time.perf_counter() - started
            await swarm.all("stop", timeout=args.timeout)
    finally:
        await hub.stop()
    out["tasks_left_after_stop"] = len(asyncio.all_tasks()) - tasks_before
    return out


def _print_table(r: dict[str, Any]) -> None:
    n = r["peers"]
    print(f"Hub node with {n} established peers ({r['processes']} peer processes)")
    rows = [
        ("established on hub / errors", f"{r['established_on_hub']} / {len(r['connect_errors'])}"),
        ("time to establish all", f"{r['establish_all_s']:.2f} s"),
        ("establish rate", f"{r['establish_per_s']:.0f} /s"),
        ("hub CPU per peer, first bucket", f"{r['cpu_per_established_first_ms']:.2f} ms"),
        ("hub CPU per peer, last bucket", f"{r['cpu_per_established_last_ms']:.2f} ms"),
        (
            "hub CPU establishing, user/sys",
            f"{r['establish_hub_user_s']:.2f}/{r['establish_hub_system_s']:.2f} s",
        ),
        ("hub RSS per peer", f"{r['rss_per_peer_kib']:.1f} KiB"),
        ("hub tasks per peer", f"{r['tasks_per_peer']:.2f}"),
        ("hub idle CPU, all connected", f"{r['idle_cpu_percent']:.2f} %"),
        ("fan-in messages received", f"{r['fanin_messages']}"),
        ("fan-in hub msg/s", f"{r['fanin_msg_per_s']:,.0f}"),
        ("fan-in hub MiB/s", f"{r['fanin_mib_per_s']:.1f}"),
        ("fan-in hub CPU per msg", f"{r['fanin_hub_cpu_us_per_msg']:.1f} us"),
        ("fan-out: all received", f"{r['fanout_all_received_s'] * 1000:.0f} ms"),
        ("hub RSS all connected", f"{r['hub_rss_mib']:.0f} MiB"),
        ("hub RSS after fan-in", f"{r['hub_rss_after_fanin_mib']:.0f} MiB"),
        ("  same after malloc_trim(0)", f"{r['hub_rss_after_fanin_trimmed_mib']:.0f} MiB"),
        ("hub stop()", f"{r['stop_s'] * 1000:.0f} ms"),
        ("tasks left after stop", f"{r['tasks_left_after_stop']}"),
    ]
    for name, value in rows:
        print(f"  {name:<32} {value:>14}")
    print("  hub CPU per established peer, buckets (ms):")
    print("   ", " ".join(f"{b:.2f}" for b in r["cpu_per_established_ms_buckets"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--messages", type=int, default=100, help="fan-in messages per peer")
    parser.add_argument("--size", type=int, default=1024, help="message payload bytes")
    parser.add_argument("--concurrency", type=int, default=16, help="connects per process")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of every phase")
    parser.add_argument("--profile", choices=["establish", "idle", "fanin", "fanout"])
    args = parser.parse_args()
    out = asyncio.run(run(args))
    _print_table(out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
