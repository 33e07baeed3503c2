"""SqlRepository specifics: scoping by local node, the flush task, batching, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.crypto import Identity
from engine.errors import InvalidPeerIdError, StorageError, StorageUnavailableError
from models import DatabaseSettings, PeerRow, SqlRepository, create_engine, create_sessionmaker

from .conftest import FakeClock

A1 = "/ip4/10.0.0.1/tcp/4001"


def local() -> str:
    return Identity.generate().peer_id.to_string()


async def stored_last_seen(engine: AsyncEngine, local_id: str, peer: str) -> float | None:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(PeerRow.last_seen).where(
                PeerRow.local_peer_id == local_id, PeerRow.peer_id == peer
            )
        )
        value: float | None = result.scalar_one()
        return value


async def test_rows_are_scoped_by_local_peer_id(sql_engine: AsyncEngine) -> None:
    node_a = SqlRepository(sql_engine, local())
    node_b = SqlRepository(create_sessionmaker(sql_engine), local())
    pid = Identity.generate().peer_id
    await node_a.add_peer(pid, [A1])
    await node_a.add_ban("10.0.0.0/8")
    await node_a.audit("x")
    assert await node_b.get_peer(pid) is None
    assert await node_b.list_peers() == ([], 0)
    assert await node_b.list_bans() == []
    assert await node_b.list_audit() == []
    await node_b.add_peer(pid, ["/ip4/10.0.0.2/tcp/1"])  # same peer, other node: allowed
    got_a = await node_a.get_peer(pid)
    assert got_a is not None
    assert got_a.addrs == (A1,)
    await node_a.close()
    await node_b.close()


async def test_flush_task_writes_on_interval(sql_engine: AsyncEngine) -> None:
    me = local()
    repo = SqlRepository(sql_engine, me, flush_interval=0.01)
    pid = Identity.generate().peer_id
    await repo.add_peer(pid, [A1])
    await repo.start()
    repo.touch_peer(pid, seen_at=123.0, connected=True)
    async with asyncio.timeout(10):
        while repo.pending_count:
            await repo.wait_flushed(repo.flush_rounds + 1)
    assert await stored_last_seen(sql_engine, me, pid.to_string()) == 123.0
    await repo.close()


async def test_full_batch_wakes_the_flush_task(sql_engine: AsyncEngine) -> None:
    me = local()
    repo = SqlRepository(sql_engine, me, flush_interval=3600, max_pending=3)
    peers = [Identity.generate().peer_id for _ in range(3)]
    for p in peers:
        await repo.add_peer(p, [A1])
    await repo.start()
    for p in peers:
        repo.touch_peer(p, seen_at=7.0)
    async with asyncio.timeout(10):
        await repo.wait_flushed(1)
    assert repo.pending_count == 0
    assert await stored_last_seen(sql_engine, me, peers[2].to_string()) == 7.0
    await repo.close()


async def test_close_flushes_pending(sql_engine: AsyncEngine) -> None:
    me = local()
    repo = SqlRepository(sql_engine, me, flush_interval=3600)
    pid = Identity.generate().peer_id
    await repo.add_peer(pid, [A1])
    await repo.start()
    repo.touch_peer(pid, seen_at=42.0)
    await repo.close()
    assert await stored_last_seen(sql_engine, me, pid.to_string()) == 42.0
    with pytest.raises(StorageError):
        await repo.start()


async def test_failed_flush_keeps_batch(sqlite_path: Path) -> None:
    me = local()
    engine = create_engine(f"sqlite+aiosqlite:///{sqlite_path}")
    repo = SqlRepository(engine, me)
    pid = Identity.generate().peer_id
    await repo.add_peer(pid, [A1])
    repo.touch_peer(pid, seen_at=5.0, connected=True)

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")  # every write now fails
        cursor.close()

    await engine.dispose()
    event.listen(engine.sync_engine, "connect", read_only)
    try:
        with pytest.raises(StorageError):
            await repo.flush()
        assert repo.pending_count == 1  # the batch was put back
        repo.touch_peer(pid, seen_at=6.0, connected=True)
    finally:
        event.remove(engine.sync_engine, "connect", read_only)
        await engine.dispose()
    await repo.flush()
    assert await stored_last_seen(engine, me, pid.to_string()) == 6.0
    rec = await repo.get_peer(pid)
    assert rec is not None
    assert (rec.first_seen, rec.last_seen, rec.connect_count) == (5.0, 6.0, 2)
    await repo.close()
    await engine.dispose()


async def test_unreachable_database_is_storage_unavailable(tmp_path: Path) -> None:
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    repo = SqlRepository(engine, local())
    try:
        with pytest.raises(StorageUnavailableError):
            await repo.list_peers()
    finally:
        await repo.close()
        await engine.dispose()


async def test_open_owns_its_engine(tmp_path: Path, clock: FakeClock) -> None:
    from migrations import upgrade_async

    settings = DatabaseSettings(data_dir=tmp_path / "data", flush_interval=1.0)
    await upgrade_async(settings.url)
    repo = SqlRepository.open(settings, local(), clock=clock)
    rec = await repo.add_peer(Identity.generate().peer_id, [A1])
    assert rec.created_at == clock.now
    await repo.close()
    assert (tmp_path / "data" / "glueberry.db").exists()


async def test_in_memory_sqlite_is_one_database() -> None:
    from migrations import upgrade_async

    engine = create_engine("sqlite+aiosqlite://")
    try:
        await upgrade_async(engine)
        repo = SqlRepository(engine, local())
        pid = Identity.generate().peer_id
        await repo.add_peer(pid, [A1])
        assert await repo.get_peer(pid) is not None
        await repo.close()
    finally:
        await engine.dispose()


def test_bad_local_peer_id(tmp_path: Path) -> None:
    with pytest.raises(InvalidPeerIdError):
        SqlRepository(create_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db"), "nope")


async def test_read_during_flush_does_not_double_count(sql_engine: AsyncEngine) -> None:
    from engine.repository import HotUpdate

    repo = SqlRepository(sql_engine, local())
    pid = Identity.generate().peer_id
    await repo.add_peer(pid, [A1])
    repo.touch_peer(pid, seen_at=10.0, connected=True)
    await repo.flush()
    # The state a concurrent read sees right after a flush committed but before the
    # flush coroutine cleared its in-flight batch: the row already holds the batch.
    repo._inflight = {pid: HotUpdate(10.0, 10.0, 1)}
    rec = await repo.get_peer(pid)
    assert rec is not None
    assert rec.connect_count == 1
    # ... and before it committed: the row lacks the batch, so it is merged.
    repo._inflight = {pid: HotUpdate(11.0, 11.0, 1)}
    rec = await repo.get_peer(pid)
    assert rec is not None
    assert (rec.last_seen, rec.connect_count) == (11.0, 2)
    repo._inflight = {}
    await repo.close()
