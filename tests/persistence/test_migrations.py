"""Alembic: upgrades work from any directory and agree with the ORM models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from migrations import current_revision, head_revision, upgrade_async
from models import Base, create_engine

from .conftest import SQL_BACKENDS, sqlite_url


def _diff(conn: Connection) -> list[Any]:
    ours = set(Base.metadata.tables)

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        # The PostgreSQL test database may hold other projects' tables: compare ours only.
        if type_ == "table":
            return name in ours
        table = getattr(obj, "table", None)
        return table is None or table.name in ours

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return list(compare_metadata(context, Base.metadata))


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_models_and_migrations_agree(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = sqlite_url(tmp_path / "fresh.db")
        await upgrade_async(url)
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
        assert diff == []
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_from_any_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no alembic.ini here: the runner needs none
    url = sqlite_url(tmp_path / "nested" / "dir" / "db.sqlite")
    assert await current_revision(url) is None
    await upgrade_async(url)
    await upgrade_async(url)
    assert await current_revision(url) == head_revision()
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
            fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one()
    finally:
        await engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert (mode, fks) == ("wal", 1)
    assert os.path.exists(tmp_path / "nested" / "dir" / "db.sqlite-wal") or mode == "wal"
