"""Fixtures of the persistence tests: one repository suite over Memory, SQLite, PostgreSQL.

SQLite: a database migrated once per session is copied per test (fast, isolated).
PostgreSQL: runs when ``GLUEBERRY_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it); the
schema is upgraded once per session and every test uses a fresh local peer id, so tests
never see each other's rows.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.crypto import Identity
from engine.repository import MemoryRepository, Repository
from migrations import upgrade
from models import SqlRepository, create_engine

POSTGRES_URL = os.environ.get("GLUEBERRY_TEST_POSTGRES_URL", "")
NO_POSTGRES = "GLUEBERRY_TEST_POSTGRES_URL is not set (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/test)"

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)],
    ),
]
SQL_BACKENDS = BACKENDS[1:]


class FakeClock:
    """A settable epoch clock (starts at a fixed, realistic time)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def upgrade_in_thread(url: str) -> None:
    """Run the migrations from a fixture that may be set up inside the test's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, url).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, copied by each test that needs a database."""
    path = tmp_path_factory.mktemp("db-template") / "template.db"
    upgrade_in_thread(sqlite_url(path))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    upgrade_in_thread(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local_peer_id() -> str:
    return Identity.generate().peer_id.to_string()


@pytest.fixture
def sqlite_path(sqlite_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "glueberry.db"
    shutil.copyfile(sqlite_template, path)
    return path


@pytest.fixture(params=[p for p in SQL_BACKENDS])
async def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database: SQLite (copied template) or PostgreSQL."""
    if request.param == "sqlite":
        path = request.getfixturevalue("sqlite_path")
        engine = create_engine(sqlite_url(path))
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def repo(
    request: pytest.FixtureRequest, clock: FakeClock, local_peer_id: str
) -> AsyncIterator[Repository]:
    """A fresh repository of each backend (max metadata 256 bytes, fake clock)."""
    if request.param == "memory":
        memory = MemoryRepository(256, clock=clock)
        yield memory
        await memory.close()
        return
    if request.param == "sqlite":
        engine = create_engine(sqlite_url(request.getfixturevalue("sqlite_path")))
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
    sql = SqlRepository(engine, local_peer_id, max_metadata_size=256, clock=clock)
    try:
        yield sql
    finally:
        await sql.close()
        await engine.dispose()
