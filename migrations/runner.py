"""Run Alembic programmatically against an async database URL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from models.database import create_engine

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade", "upgrade_async"]

SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(url: str | URL | None = None) -> AlembicConfig:
    """An Alembic configuration for this package's scripts (no ini file needed).

    Args:
        url: the database URL ``env.py`` connects to when no connection is passed in.
    """
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        cfg.set_main_option("sqlalchemy.url", text.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision id of the migration scripts."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships an initial revision
        raise RuntimeError("no migration scripts found")
    return head


async def upgrade_async(target: str | URL | AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` from inside a running event loop.

    Args:
        target: a database URL (an engine is created and disposed) or an engine.
        revision: the Alembic revision (default: the newest).
    """
    engine = target if isinstance(target, AsyncEngine) else create_engine(target)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run_upgrade, revision)
    finally:
        if engine is not target:
            await engine.dispose()


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (runs its own event loop).

    Args:
        url: the database URL (``sqlite+aiosqlite:///...`` or ``postgresql+asyncpg://...``).
        revision: the Alembic revision (default: the newest).

    Raises:
        RuntimeError: called inside a running event loop (use :func:`upgrade_async`).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade_async(url, revision))
        return
    raise RuntimeError("upgrade() cannot run inside an event loop; await upgrade_async()")


async def current_revision(target: str | URL | AsyncEngine) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""
    engine = target if isinstance(target, AsyncEngine) else create_engine(target)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )
    finally:
        if engine is not target:
            await engine.dispose()


def _run_upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)
