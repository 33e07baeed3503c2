"""Benchmark of the per-message engine cores: event fan-out, stats, flow control, machine.

Run: ``.venv/bin/python -P tests/bench/cores.py [--count 200000]`` (``-P``: the script's
folder holds ``engine.py``, which would otherwise shadow the ``engine`` package).

Measures the cost per operation of what the node does for every message or event:

- ``hub.publish`` to 0, 1 and 4 subscribers (received-message fan-out), and with a full
  queue (the drop path of a stalled subscriber);
- ``ConnectionEventHub.emit`` (id, retention ring, fan-out);
- ``StatsTracker.record_in`` / ``record_out`` with 1,000 tracked peers;
- ``FlowController.acquire`` + ``release`` without waiting (the send fast path), and a
  producer/consumer round trip where senders block and are woken;
- ``PeerConnectionMachine``: a full connect / establish / disconnect / reconnect cycle.

Prints a table and one JSON line (``{"bench": "cores", ...}``). Single-threaded; numbers
are per core. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable

from engine.backoff import Backoff
from engine.connection_state import ConnectionState, PeerConnectionMachine
from engine.crypto.identity import Identity, PeerId
from engine.events import ConnectionEventHub, EventHub
from engine.flow import FlowController
from engine.stats import StatsTracker


def per_op(fn: Callable[[int], None], count: int) -> float:
    """Best of three runs, nanoseconds per operation."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        fn(count)
        best = min(best, (time.perf_counter_ns() - start) / count)
    return best


def bench_publish(subscribers: int, count: int, *, stalled: bool = False) -> float:
    hub: EventHub[bytes] = EventHub(buffer_size=count + 1 if not stalled else 16)
    subs = [hub.subscribe() for _ in range(subscribers)]
    item = b"x" * 1024

    def run(n: int) -> None:
        publish = hub.publish
        for _ in range(n):
            publish(item)
        if not stalled:
            for s in subs:
                while s.get_nowait() is not None:
                    pass

    return per_op(run, count)


def bench_emit(count: int, peer: PeerId) -> float:
    hub = ConnectionEventHub(buffer_size=count + 1, retention=10_000)
    sub = hub.subscribe()

    def run(n: int) -> None:
        emit = hub.emit
        for i in range(n):
            emit(peer, ConnectionState.CONNECTED, ConnectionState.CONNECTING, float(i))
        while sub.get_nowait() is not None:
            pass

    return per_op(run, count)


def bench_stats(count: int, peers: list[PeerId]) -> float:
    tracker = StatsTracker(max_tracked_peers=len(peers))

    def run(n: int) -> None:
        rin, rout = tracker.record_in, tracker.record_out
        k = len(peers)
        for i in range(n // 2):
            p = peers[i % k]
            rin(p, "messages", 1024, 1.0)
            rout(p, "messages", 1024, 1.0)

    return per_op(run, count)


def bench_flow_fast(count: int) -> float:
    fc = FlowController(1024, 256)

    async def main(n: int) -> None:
        for _ in range(n):
            await fc.acquire()
            fc.release()

    return per_op(lambda n: asyncio.run(main(n)), count)


def bench_flow_blocking(count: int) -> float:
    async def main(n: int) -> None:
        fc = FlowController(64, 16)
        queue: asyncio.Queue[None] = asyncio.Queue()

        async def sender(k: int) -> None:
            for _ in range(k):
                await fc.acquire()
                queue.put_nowait(None)

        async def writer() -> None:
            for _ in range(n):
                await queue.get()
                fc.release()

        w = asyncio.create_task(writer())
        await asyncio.gather(*(sender(n // 100) for _ in range(100)))
        await w

    return per_op(lambda n: asyncio.run(main(n)), count - count % 100)


def bench_machine(count: int, peer: PeerId) -> float:
    def run(n: int) -> None:
        m = PeerConnectionMachine(
            peer, backoff=Backoff(jitter=0.0), handshake_timeout=30.0, cooldown=60.0
        )
        now = 0.0
        for _ in range(n // 5):
            m.dial_started(now)
            m.dial_succeeded(now, epoch=m.epoch)
            m.handshake_done(now)
            m.disconnected(now)
            m.disconnect_requested(now)

    return per_op(run, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    n = args.count
    peers = [Identity.generate().peer_id for _ in range(1000)]
    rows = {
        "publish_0_subs_ns": bench_publish(0, n),
        "publish_1_sub_ns": bench_publish(1, n),
        "publish_4_subs_ns": bench_publish(4, n),
        "publish_stalled_sub_drop_ns": bench_publish(1, n, stalled=True),
        "event_emit_ns": bench_emit(n, peers[0]),
        "stats_record_ns": bench_stats(n, peers),
        "flow_acquire_release_ns": bench_flow_fast(n),
        "flow_blocking_roundtrip_ns": bench_flow_blocking(n),
        "machine_input_ns": bench_machine(n, peers[0]),
    }
    width = max(len(k) for k in rows)
    print(f"{'operation':<{width}}  ns/op   ops/s")
    for name, ns in rows.items():
        print(f"{name:<{width}}  {ns:7.0f}  {1e9 / ns:>12,.0f}")
    print(json.dumps({"bench": "cores", "count": n, **{k: round(v, 1) for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
