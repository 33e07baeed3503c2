"""Gateway WebSocket benchmark: end-to-end messages/s and latency, client A -> client B.

Starts two real ``glueberry serve`` processes (temporary data directories, rate limits
off), connects them through the REST API, then opens the stream channel
``WS /v1/peers/{id}/streams/messages`` on each: a client on node A sends 1 KiB binary
messages (every one acknowledged by A's gateway), a client on node B receives them.

- **Throughput**: ``--count`` messages sent as fast as the channel accepts them (the
  sender keeps at most ``--window`` unacknowledged sends in flight); msg/s from the
  first send to the last receive on B.
- **Latency**: ``--rate`` messages per second for ``--seconds`` seconds, each carrying
  its send time (both clients run in this process, on one clock); p50 / p99 / max of
  receive time minus send time, i.e. client A -> gateway A -> node A -> node B ->
  gateway B -> client B.

CPU time per message of each gateway process (user + system, from ``psutil``) is printed
too: unlike msg/s it barely depends on what else runs on the machine. The clients share
the machine with both servers. Clients disable permessage-deflate.
Prints a table and one JSON line (``{"bench": "gateway_ws", ...}``).

    .venv/bin/python tests/bench/gateway_ws.py [--count 50000] [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from gateway.processes import GatewayProcess, create_key  # noqa: E402

SIZE = 1024
ENV = {
    "GLUEBERRY_RATE_LIMIT_ENABLED": "false",
    "GLUEBERRY_WS_RATE_LIMIT": "10000000",
    "GLUEBERRY_WS_RATE_BURST": "10000000",
}


async def _open(url: str, key: str) -> Any:
    ws = await websockets.connect(
        url,
        additional_headers={"Authorization": f"Bearer {key}"},
        compression=None,
        max_queue=None,
        open_timeout=30,
    )
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ws


class Sender:
    """The sending client and its count of frames sent (acks carry that number)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.acked = 0


async def _acks(tx: Sender, count: int, window: asyncio.Semaphore | None) -> None:
    for _ in range(count):
        frame = json.loads(await tx.ws.recv())
        tx.acked += 1
        if frame.get("type") != "ack" or frame["seq"] != tx.acked:
            raise RuntimeError(f"unexpected reply {frame}")
        if window is not None:
            window.release()


async def throughput(tx: Sender, rx: Any, count: int, window_size: int) -> dict[str, float]:
    window = asyncio.Semaphore(window_size)
    payload = os.urandom(SIZE - 4)

    async def send() -> None:
        for i in range(count):
            await window.acquire()
            await tx.ws.send(struct.pack(">I", i) + payload)

    async def receive() -> float:
        for i in range(count):
            data = await rx.recv()
            if struct.unpack(">I", data[:4])[0] != i:
                raise RuntimeError("out of order")
        return time.perf_counter()

    started = time.perf_counter()
    _, _, finished = await asyncio.gather(send(), _acks(tx, count, window), receive())
    elapsed = finished - started
    return {"messages": count, "seconds": round(elapsed, 3), "msg_per_s": round(count / elapsed)}


async def latency(tx: Sender, rx: Any, rate: int, seconds: float) -> dict[str, float]:
    count = int(rate * seconds)
    filler = os.urandom(SIZE - 12)
    samples: list[float] = []

    async def send() -> None:
        start = time.perf_counter()
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await tx.ws.send(struct.pack(">Id", i, time.perf_counter()) + filler)

    async def receive() -> None:
        for _ in range(count):
            data = await rx.recv()
            _, sent_at = struct.unpack(">Id", data[:12])
            samples.append(time.perf_counter() - sent_at)

    await asyncio.gather(send(), _acks(tx, count, None), receive())
    samples.sort()

    def pct(p: float) -> float:
        return round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1000, 3)

    return {
        "rate": rate,
        "messages": count,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": round(samples[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }


async def run(
    args: argparse.Namespace, a: GatewayProcess, b: GatewayProcess, keys: list[str]
) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=a.url, headers={"Authorization": f"Bearer {keys[0]}"}, timeout=30
    ) as http:
        response = await http.post("/v1/peers", json={"peer_id": b.peer_id, "addrs": [b.p2p_addr]})
        response.raise_for_status()
        response = await http.post(f"/v1/peers/{b.peer_id}/connect", json={"timeout": 20})
        response.raise_for_status()
    ws_a = a.url.replace("http://", "ws://")
    ws_b = b.url.replace("http://", "ws://")
    tx = Sender(await _open(f"{ws_a}/v1/peers/{b.peer_id}/streams/messages", keys[0]))
    rx = await _open(f"{ws_b}/v1/peers/{a.peer_id}/streams/messages", keys[1])
    servers = [psutil.Process(p.proc.pid) for p in (a, b) if p.proc is not None]

    def cpu() -> list[float]:
        return [sum(s.cpu_times()[:2]) for s in servers]

    try:
        await throughput(tx, rx, min(2000, args.count), args.window)  # warm-up
        before = cpu()
        results: dict[str, Any] = {"throughput": await throughput(tx, rx, args.count, args.window)}
        used = [after - start for after, start in zip(cpu(), before, strict=True)]
        # CPU per message of each gateway process: what a free core would sustain.
        results["throughput"]["cpu_us_per_msg_a"] = round(used[0] / args.count * 1e6, 1)
        results["throughput"]["cpu_us_per_msg_b"] = round(used[1] / args.count * 1e6, 1)
        results["latency"] = await latency(tx, rx, args.rate, args.seconds)
        return results
    finally:
        await tx.ws.close()
        await rx.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="messages for throughput")
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged sends in flight")
    parser.add_argument("--rate", type=int, default=1000, help="msg/s of the latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the latency run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gb-bench-ws-") as tmp:
        procs: list[GatewayProcess] = []
        keys: list[str] = []
        try:
            for name in ("a", "b"):
                data_dir = Path(tmp) / name
                data_dir.mkdir()
                keys.append(create_key(data_dir, "admin"))
                procs.append(GatewayProcess(data_dir, **ENV).start())
            results = asyncio.run(run(args, procs[0], procs[1], keys))
        finally:
            for proc in procs:
                proc.stop()
    t, lat = results["throughput"], results["latency"]
    print("gateway WebSocket, client on A -> client on B, 1 KiB messages")
    print(f"{'metric':<34}{'value':>12}")
    print(f"{'throughput (msg/s)':<34}{t['msg_per_s']:>12}")
    print(f"{'  messages / seconds':<34}{t['messages']:>6} / {t['seconds']:<5}")
    print(f"{'CPU per message, gateway A (us)':<34}{t['cpu_us_per_msg_a']:>12}")
    print(f"{'CPU per message, gateway B (us)':<34}{t['cpu_us_per_msg_b']:>12}")
    at = f"latency @ {lat['rate']} msg/s"
    print(f"{at + ' p50 (ms)':<34}{lat['p50_ms']:>12}")
    print(f"{at + ' p99 (ms)':<34}{lat['p99_ms']:>12}")
    print(f"{at + ' max (ms)':<34}{lat['max_ms']:>12}")
    line = {
        "bench": "gateway_ws",
        "size": SIZE,
        "window": args.window,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **{f"throughput_{k}": v for k, v in t.items()},
        **{f"latency_{k}": v for k, v in lat.items()},
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
