"""Benchmark of the address book: last-seen updates (hot, batched) and critical writes.

Run: ``.venv/bin/python tests/bench/addressbook.py [--peers 1000] [--updates 200000]
[--ops 300] [--postgres-url URL]`` (PostgreSQL also runs when
``GLUEBERRY_TEST_POSTGRES_URL`` is set).

For each backend (memory, SQLite in WAL mode on a temporary file, PostgreSQL):

- ``touch``: ``--updates`` last-seen updates spread over ``--peers`` peers, with a
  ``flush()`` every ``--flush-every`` updates (what the periodic flush task does); the cost
  per update is (time in touch_peer + time in flush) / updates, i.e. amortized.
- ``flush``: the time of one flush of ``--peers`` peers' hot data.
- ``add_peer`` / ``update_peer`` / ``add_ban`` / ``audit``: critical writes, each a
  committed transaction, run one after another; mean and p99 latency.

Prints a table and one JSON line (``{"bench": "addressbook", ...}``). The Go library's
improvement plan asks for < 10 ms per update; the target here is < 0.1 ms amortized for
last-seen updates. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from engine.crypto import Identity, PeerId
from engine.repository import MemoryRepository, Repository
from migrations import upgrade_async
from models import AuditRow, BanRow, PeerAddrRow, PeerRow, SqlRepository, create_engine


async def _latencies(op: Callable[[int], Awaitable[Any]], count: int) -> list[float]:
    out = []
    for i in range(count):
        start = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - start)
    return out


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def bench_backend(repo: Repository, args: argparse.Namespace) -> dict[str, float]:
    peers: list[PeerId] = [Identity.generate().peer_id for _ in range(args.peers + args.ops)]
    book, extra = peers[: args.peers], peers[args.peers :]
    results: dict[str, float] = {}

    add = await _latencies(
        lambda i: repo.add_peer(
            extra[i], [f"/ip4/10.0.{i // 250}.{i % 250 + 1}/tcp/4001"], metadata={"n": str(i)}
        ),
        args.ops,
    )
    results["add_peer_ms"] = statistics.fmean(add) * 1e3
    results["add_peer_p99_ms"] = _p99(add) * 1e3
    upd = await _latencies(
        lambda i: repo.update_peer(extra[i], metadata={"n": str(i), "u": "1"}), args.ops
    )
    results["update_peer_ms"] = statistics.fmean(upd) * 1e3
    results["update_peer_p99_ms"] = _p99(upd) * 1e3
    ban = await _latencies(
        lambda i: repo.add_ban(f"10.{i // 250}.{i % 250}.0/24", reason="bench"), args.ops
    )
    results["add_ban_ms"] = statistics.fmean(ban) * 1e3
    aud = await _latencies(
        lambda i: repo.audit("bench", peer_id=str(extra[i]), detail={"i": i}), args.ops
    )
    results["audit_ms"] = statistics.fmean(aud) * 1e3

    for i, pid in enumerate(book):  # fill the address book for the hot-path part
        await repo.upsert_peer(pid, [f"/ip4/10.1.{i // 250 % 250}.{i % 250 + 1}/tcp/1"])
    await repo.flush()

    # Hot path: touch_peer round-robin over the book, a flush every --flush-every updates.
    touch_time = 0.0
    flush_time = 0.0
    flushes = 0
    now = time.time()
    n_book = len(book)
    done = 0
    while done < args.updates:
        batch = min(args.flush_every, args.updates - done)
        start = time.perf_counter()
        for j in range(done, done + batch):
            repo.touch_peer(book[j % n_book], seen_at=now + j * 1e-6, connected=(j % 16 == 0))
        touch_time += time.perf_counter() - start
        start = time.perf_counter()
        await repo.flush()
        flush_time += time.perf_counter() - start
        flushes += 1
        done += batch
    results["touch_only_us"] = touch_time / args.updates * 1e6
    results["flush_ms"] = flush_time / flushes * 1e3
    results["touch_amortized_ms"] = (touch_time + flush_time) / args.updates * 1e3
    check = await repo.get_peer(book[-1])
    assert check is not None
    assert check.last_seen is not None
    return results


async def run_sql(url: str, args: argparse.Namespace) -> dict[str, float]:
    await upgrade_async(url)
    engine = create_engine(url)
    local = Identity.generate().peer_id.to_string()
    repo = SqlRepository(engine, local, flush_interval=3600)
    try:
        return await bench_backend(repo, args)
    finally:
        await repo.close()
        async with engine.begin() as conn:  # leave a shared database as it was
            for table in (PeerAddrRow, PeerRow, BanRow, AuditRow):
                await conn.execute(delete(table).where(table.local_peer_id == local))
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, default=1000, help="peers in the address book")
    parser.add_argument("--updates", type=int, default=200_000, help="last-seen updates")
    parser.add_argument("--flush-every", type=int, default=20_000, help="updates per flush")
    parser.add_argument("--ops", type=int, default=300, help="critical writes of each kind")
    parser.add_argument("--postgres-url", default=os.environ.get("GLUEBERRY_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    results["memory"] = await bench_backend(MemoryRepository(), args)
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = await run_sql(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args)
    if args.postgres_url:
        results["postgres"] = await run_sql(args.postgres_url, args)

    columns = [
        ("touch_amortized_ms", "touch amortized ms"),
        ("touch_only_us", "touch call us"),
        ("flush_ms", f"flush {args.peers} peers ms"),
        ("add_peer_ms", "add_peer ms"),
        ("add_peer_p99_ms", "add_peer p99 ms"),
        ("update_peer_ms", "update_peer ms"),
        ("update_peer_p99_ms", "update p99 ms"),
        ("add_ban_ms", "add_ban ms"),
        ("audit_ms", "audit ms"),
    ]
    print(
        f"address book: {args.peers} peers, {args.updates} last-seen updates "
        f"(flush every {args.flush_every}), {args.ops} critical writes per kind; "
        f"python {sys.version.split()[0]}"
    )
    print(f"{'metric':<22}" + "".join(f"{name:>12}" for name in results))
    for key, label in columns:
        print(f"{label:<22}" + "".join(f"{results[b][key]:>12.4f}" for b in results))
    line = {
        "bench": "addressbook",
        "peers": args.peers,
        "updates": args.updates,
        "flush_every": args.flush_every,
        "ops": args.ops,
        "results": {b: {k: round(v, 6) for k, v in r.items()} for b, r in results.items()},
    }
    print(json.dumps(line))


if __name__ == "__main__":
    asyncio.run(main())
