"""Gateway REST benchmark: requests/s and latency of node info and peer listing.

Starts one real ``glueberry serve`` process (SQLite in a temporary data directory, rate
limits off), fills its address book with 1,000 peers through ``POST /v1/peers``, then
drives ``GET /v1/node``, ``GET /v1/peers?limit=100`` (first page), ``GET /v1/peers?
offset=900&limit=100`` (last page) and ``GET /v1/peers/{id}`` with ``--concurrency``
keep-alive connections for ``--requests`` requests each. The load generator runs on the
same machine (it shares the CPU with the server).

Prints a table and one JSON line (``{"bench": "gateway_rest", ...}``).

    .venv/bin/python tests/bench/gateway_rest.py [--peers 1000] [--requests 2000]
        [--concurrency 16] [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

# Run as a script, this file's directory comes first on sys.path, where sibling benchmark
# scripts (e.g. tests/bench/engine.py) would shadow real packages: replace it with tests/.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from gateway.processes import GatewayProcess, create_key  # noqa: E402

from engine.crypto.identity import Identity  # noqa: E402


async def _drive(
    client: httpx.AsyncClient, paths: list[str], total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        for i in counter:
            path = paths[i % len(paths)]
            started = time.perf_counter()
            response = await client.get(path)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": float(total),
        "errors": float(errors),
        "rps": total / elapsed,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


async def _fill(client: httpx.AsyncClient, peers: list[str]) -> float:
    started = time.perf_counter()
    sem = asyncio.Semaphore(16)

    async def add(i: int, peer: str) -> None:
        async with sem:
            response = await client.post(
                "/v1/peers",
                json={
                    "peer_id": peer,
                    "addrs": [f"/ip4/10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/tcp/4001"],
                    "metadata": {"n": str(i)},
                },
            )
            response.raise_for_status()

    await asyncio.gather(*(add(i, p) for i, p in enumerate(peers)))
    return len(peers) / (time.perf_counter() - started)


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="glueberry-bench-") as tmp:
        data_dir = Path(tmp)
        db = {"GLUEBERRY_DATABASE_URL": args.database_url} if args.database_url else {}
        key = create_key(data_dir, "admin", **db)
        proc = GatewayProcess(
            data_dir,
            GLUEBERRY_RATE_LIMIT_ENABLED="false",
            GLUEBERRY_AUTO_CONNECT="false",
            **db,
        ).start()
        try:
            limits = httpx.Limits(max_connections=args.concurrency)
            async with httpx.AsyncClient(
                base_url=proc.url,
                headers={"Authorization": f"Bearer {key}"},
                limits=limits,
                timeout=60,
            ) as client:
                peers = [str(Identity.generate().peer_id) for _ in range(args.peers)]
                insert_rps = await _fill(client, peers)
                total = (await client.get("/v1/peers?limit=1")).json()["total"]
                assert total == args.peers, total
                await _drive(client, ["/v1/node"], 200, args.concurrency)  # warm-up
                results = {
                    "GET /v1/node": await _drive(
                        client, ["/v1/node"], args.requests, args.concurrency
                    ),
                    "GET /v1/peers?limit=100": await _drive(
                        client, ["/v1/peers?limit=100"], args.requests, args.concurrency
                    ),
                    "GET /v1/peers?offset=900&limit=100": await _drive(
                        client,
                        [f"/v1/peers?offset={args.peers - 100}&limit=100"],
                        args.requests,
                        args.concurrency,
                    ),
                    "GET /v1/peers/{id}": await _drive(
                        client,
                        [f"/v1/peers/{p}" for p in peers[:200]],
                        args.requests,
                        args.concurrency,
                    ),
                }
        finally:
            proc.stop()
    return {
        "bench": "gateway_rest",
        "peers": args.peers,
        "concurrency": args.concurrency,
        "database": "postgresql" if args.database_url else "sqlite",
        "insert_peers_per_s": round(insert_rps, 1),
        "python": platform.python_version(),
        "results": {
            name: {k: round(v, 3) for k, v in stats.items()} for name, stats in results.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--database-url",
        default="",
        help="e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test (default: SQLite)",
    )
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(
        f"gateway REST, {args.peers} peers in the address book, "
        f"{args.concurrency} concurrent connections, {report['database']}, auth on, "
        "rate limits off"
    )
    print(f"address book fill: {report['insert_peers_per_s']} POST /v1/peers per s")
    print(f"{'route':<36} {'req/s':>8} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    results = report["results"]
    assert isinstance(results, dict)
    for name, stats in results.items():
        print(
            f"{name:<36} {stats['rps']:>8.0f} {stats['mean_ms']:>8.2f} {stats['p50_ms']:>8.2f} "
            f"{stats['p95_ms']:>8.2f} {stats['p99_ms']:>8.2f}"
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
