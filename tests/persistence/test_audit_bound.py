"""The SQL audit log stays bounded: remote peers can make the node append entries."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.crypto.identity import Identity
from engine.errors import InvalidInputError
from models.repository import AUDIT_TRIM_EVERY, SqlRepository


async def test_audit_log_keeps_about_the_newest_entries(
    sql_engine: AsyncEngine, local_peer_id: str
) -> None:
    repo = SqlRepository(sql_engine, local_peer_id, max_audit_entries=50)
    other = SqlRepository(sql_engine, Identity.generate().peer_id, max_audit_entries=50)
    try:
        await other.audit("ban_added", detail={"n": -1})  # another node's log is untouched
        for n in range(AUDIT_TRIM_EVERY + 10):
            await repo.audit("handshake_failed", detail={"n": n})
        entries = await repo.list_audit(limit=1000)
        assert 50 <= len(entries) <= 50 + AUDIT_TRIM_EVERY
        numbers = [e.detail["n"] for e in entries]
        assert numbers == sorted(numbers)
        assert numbers[-1] == AUDIT_TRIM_EVERY + 9  # the newest are the ones kept
        assert len(entries) == 60  # trimmed to 50 at the 1000th append, 10 since
        assert len(await other.list_audit()) == 1
    finally:
        await repo.close()
        await other.close()


async def test_unbounded_audit_log_is_explicit(sql_engine: AsyncEngine, local_peer_id: str) -> None:
    with pytest.raises(InvalidInputError):
        SqlRepository(sql_engine, local_peer_id, max_audit_entries=0)
    repo = SqlRepository(sql_engine, local_peer_id, max_audit_entries=None)
    try:
        for n in range(AUDIT_TRIM_EVERY + 1):
            await repo.audit("handshake_failed", detail={"n": n})
        first = await repo.list_audit(limit=1000)
        rest = await repo.list_audit(since_id=first[-1].id, limit=1000)
        assert len(first) + len(rest) == AUDIT_TRIM_EVERY + 1  # nothing trimmed
    finally:
        await repo.close()
