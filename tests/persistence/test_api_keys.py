"""ApiKeyRepository on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.crypto import Identity
from engine.errors import ApiKeyNotFoundError, InvalidInputError
from models import ApiKeyRepository, ApiKeyRow, hash_token

from .conftest import FakeClock


def local() -> str:
    return Identity.generate().peer_id.to_string()


async def test_create_verify_list_revoke(sql_engine: AsyncEngine, clock: FakeClock) -> None:
    me = local()
    keys = ApiKeyRepository(sql_engine, me, clock=clock)
    new = await keys.create("ci", ["read", "write", "read"])
    assert new.token.startswith("gb_")
    assert new.record.scopes == ("read", "write")
    assert new.record.created_at == clock.now
    async with sql_engine.connect() as conn:
        stored = (
            await conn.execute(select(ApiKeyRow.key_hash).where(ApiKeyRow.local_peer_id == me))
        ).scalar_one()
    assert stored == hash_token(new.token)
    assert new.token not in stored  # only the hash is stored

    clock.advance(5)
    verified = await keys.verify(new.token)
    assert verified is not None
    assert (verified.key_id, verified.last_used_at) == (new.record.key_id, clock.now)
    listed = await keys.list()
    assert [k.last_used_at for k in listed] == [clock.now]  # pending merged in
    await keys.flush()
    other = ApiKeyRepository(sql_engine, me, clock=clock)
    fetched = await other.get(new.record.key_id)
    assert fetched is not None
    assert fetched.last_used_at == clock.now

    revoked = await keys.revoke(new.record.key_id)
    assert revoked.revoked
    assert await keys.verify(new.token) is None
    assert await keys.list(include_revoked=False) == []
    again = await keys.revoke(new.record.key_id)  # idempotent
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(ApiKeyNotFoundError):
        await keys.revoke("0123456789abcdef")
    await keys.close()
    await other.close()


@pytest.mark.parametrize(
    "token",
    ["", "gb_", "gb_0123456789abcdef_" + "A" * 43, "Bearer x", "gb_zz_yy", "é" * 80],
)
async def test_bad_tokens_do_not_verify(sql_engine: AsyncEngine, token: str) -> None:
    keys = ApiKeyRepository(sql_engine, local())
    await keys.create("k", ["read"])
    assert await keys.verify(token) is None


async def test_token_of_another_key_or_node_fails(sql_engine: AsyncEngine) -> None:
    mine = ApiKeyRepository(sql_engine, local())
    theirs = ApiKeyRepository(sql_engine, local())
    mine_key = await mine.create("a", ["read"])
    their_key = await theirs.create("b", ["admin"])
    assert await mine.verify(their_key.token) is None
    tampered = mine_key.token[:-1] + ("A" if mine_key.token[-1] != "A" else "B")
    assert await mine.verify(tampered) is None
    assert await mine.verify(mine_key.token) is not None


@pytest.mark.parametrize(
    ("name", "scopes"), [("", ["read"]), ("x" * 129, ["read"]), ("k", []), ("k", ["Bad Scope"])]
)
async def test_bad_create_input(sql_engine: AsyncEngine, name: str, scopes: list[str]) -> None:
    keys = ApiKeyRepository(sql_engine, local())
    with pytest.raises(InvalidInputError):
        await keys.create(name, scopes)
    assert await keys.list() == []


async def test_last_used_flushed_by_task(sql_engine: AsyncEngine) -> None:
    keys = ApiKeyRepository(sql_engine, local(), flush_interval=0.01)
    new = await keys.create("k", ["read"])
    await keys.start()
    assert await keys.verify(new.token) is not None
    async with asyncio.timeout(10):
        while keys.pending_count:
            await keys.wait_flushed(keys.flush_rounds + 1)
    reader = ApiKeyRepository(sql_engine, keys.local_peer_id)
    got = await reader.get(new.record.key_id)
    assert got is not None
    assert got.last_used_at is not None
    await keys.close()
