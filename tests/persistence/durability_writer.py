"""Child process of the durability test: address-book writes until it is SIGKILLed.

Usage: python durability_writer.py <database url> <local peer id> <flush interval>

Prints ``C <peer id>`` after each committed ``add_peer`` (so the parent knows what is
committed), ``F`` after each completed flush round of hot data. Every peer added so far
is touched (``last_seen = now``) continuously.
"""

from __future__ import annotations

import asyncio
import sys
import time

from engine.crypto import Identity, PeerId
from models import SqlRepository, create_engine


async def report_flushes(repo: SqlRepository) -> None:
    rounds = 0
    while True:
        rounds += 1
        await repo.wait_flushed(rounds)
        print("F", flush=True)


async def main(url: str, local: str, interval: float) -> None:
    engine = create_engine(url)
    repo = SqlRepository(engine, local, flush_interval=interval, max_metadata_size=4096)
    await repo.start()
    reporter = asyncio.create_task(report_flushes(repo))
    peers: list[PeerId] = []
    i = 0
    while reporter is not None:  # runs until killed
        pid = Identity.generate().peer_id
        await repo.add_peer(
            pid, [f"/ip4/10.0.{i // 250 % 250}.{i % 250 + 1}/tcp/4001"], metadata={"i": str(i)}
        )
        print(f"C {pid} {i}", flush=True)
        peers.append(pid)
        now = time.time()
        for p in peers:
            repo.touch_peer(p, seen_at=now, connected=True)
        await repo.audit("written", peer_id=str(pid))
        i += 1
        await asyncio.sleep(0.002)  # pace the workload so the flush task gets turns


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
