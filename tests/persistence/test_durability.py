"""A process writing the address book is SIGKILLed: committed writes survive, DB intact."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from engine.crypto import Identity
from models import SqlRepository, create_engine

from .conftest import sqlite_url

WRITER = Path(__file__).with_name("durability_writer.py")
FLUSH_INTERVAL = 0.2
TIMEOUT_FACTOR = float(os.environ.get("GLUEBERRY_TEST_TIMEOUT_FACTOR", "1"))


async def test_sigkill_keeps_committed_writes(sqlite_path: Path) -> None:
    url = sqlite_url(sqlite_path)
    local = Identity.generate().peer_id.to_string()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        url,
        local,
        str(FLUSH_INTERVAL),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    committed: dict[str, int] = {}
    flushes = 0

    def take(line: bytes) -> None:
        nonlocal flushes
        parts = line.decode().split()
        if parts and parts[0] == "C":
            committed[parts[1]] = int(parts[2])
        elif parts == ["F"]:
            flushes += 1

    try:
        async with asyncio.timeout(60 * TIMEOUT_FACTOR):
            # Kill in the middle of the work: after several flush rounds and many commits.
            while flushes < 3 or len(committed) < 100:
                line = await proc.stdout.readline()
                assert line, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
                take(line)
    finally:
        killed_at = time.time()
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
    # Lines still in the pipe were printed after their commit: they count too.
    rest, _ = await proc.communicate()
    for line in rest.splitlines():
        take(line)
    assert proc.returncode == -signal.SIGKILL

    # The file is consistent (SQLite's own check, foreign keys, no orphan addresses).
    with sqlite3.connect(sqlite_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []

    engine = create_engine(url)
    repo = SqlRepository(engine, local)
    try:
        page, total = await repo.list_peers(limit=1000)
        stored = {r.peer_id.to_string(): r for r in page}
        # Every committed critical write is there, complete.
        missing = set(committed) - set(stored)
        assert not missing
        assert total >= len(committed)  # one more may have committed before its line
        for pid, i in committed.items():
            rec = stored[pid]
            assert rec.metadata == {"i": str(i)}
            assert len(rec.addrs) == 1
        audit = await repo.list_audit(limit=1000)
        audited = {e.peer_id for e in audit} & set(committed)
        assert len(audited) >= len(committed) - 1  # the last one may have died before it
        # Hot data is at most one flush interval old (plus the time a flush takes).
        newest = max(r.last_seen or 0.0 for r in stored.values())
        assert newest <= killed_at
        assert killed_at - newest <= FLUSH_INTERVAL + 0.8 * TIMEOUT_FACTOR
        assert sum(r.connect_count for r in stored.values()) > 0
    finally:
        await repo.close()
        await engine.dispose()
