"""Database engines: SQLite (WAL, embedded default) or PostgreSQL (asyncpg).

:func:`create_engine` builds an :class:`~sqlalchemy.ext.asyncio.AsyncEngine` from a URL
or :class:`~models.settings.DatabaseSettings`. On SQLite every new connection gets:

- ``journal_mode=WAL``: readers never block the writer, a crash loses nothing committed;
- ``synchronous=NORMAL``: safe with WAL against process crashes (power loss may drop the
  last transactions, never corrupt the file);
- ``foreign_keys=ON`` (off by default in SQLite) and ``busy_timeout``;
- ``BEGIN IMMEDIATE`` for write transactions: the write lock is taken at the start, so a
  transaction that read first can never fail half-way with ``SQLITE_BUSY_SNAPSHOT``
  (busy_timeout cannot retry that case). Read-only connections
  (``execution_options(glueberry_readonly=True)``) use a plain deferred ``BEGIN``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from engine.errors import StorageError, StorageUnavailableError
from models.settings import DatabaseSettings

__all__ = [
    "READONLY",
    "create_engine",
    "create_sessionmaker",
    "is_sqlite",
    "read_connection",
    "write_transaction",
]

READONLY = "glueberry_readonly"
"""Execution option marking a read-only connection (plain ``BEGIN`` on SQLite)."""


def is_sqlite(url: str | URL) -> bool:
    """Whether ``url`` names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(
    source: str | URL | DatabaseSettings, *, echo: bool = False, busy_timeout_ms: int = 5000
) -> AsyncEngine:
    """Create the async engine for a database URL or settings object.

    Args:
        source: a URL (``sqlite+aiosqlite:///path``, ``postgresql+asyncpg://...``) or
            :class:`DatabaseSettings` (whose values override ``echo`` / ``busy_timeout_ms``).
        echo: log SQL statements.
        busy_timeout_ms: SQLite lock wait.

    Returns:
        The engine (dispose it with ``await engine.dispose()``).
    """
    pool_size = 5
    if isinstance(source, DatabaseSettings):
        echo = source.echo_sql
        busy_timeout_ms = source.sqlite_busy_timeout_ms
        pool_size = source.pool_size
        url = make_url(source.url)
    else:
        url = make_url(source)
    kwargs: dict[str, Any] = {"echo": echo}
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            # One shared connection, or every connection would see its own empty database.
            kwargs.update(poolclass=StaticPool)
        elif not database.startswith("file:"):
            path = Path(database)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The database holds API key hashes, bans and the address book: create it
            # owner-only (SQLite gives its -wal and -shm files the database's mode).
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        engine = _create_async_engine(url, **kwargs)
        _install_sqlite_hooks(engine, busy_timeout_ms)
        return engine
    kwargs.update(pool_size=pool_size, pool_pre_ping=True)
    return _create_async_engine(url, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """An ``async_sessionmaker`` bound to ``engine`` (``expire_on_commit=False``)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    timeout = int(busy_timeout_ms)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take over transaction control from the driver (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={timeout}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a write transaction, committed on exit, rolled back on error.

    ``IntegrityError`` passes through (callers turn it into ``PeerExistsError`` etc.);
    other database errors become :class:`StorageUnavailableError` (cannot connect) or
    :class:`StorageError`, with the driver's exception as ``__cause__``.
    """
    try:
        async with engine.begin() as conn:
            yield conn
    except IntegrityError:
        raise
    except DBAPIError as exc:
        raise _translate(exc, "write") from exc
    except (OSError, SQLAlchemyError) as exc:
        raise StorageUnavailableError(f"database unavailable: {type(exc).__name__}") from exc


@contextlib.asynccontextmanager
async def read_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only connection (plain ``BEGIN`` on SQLite); errors as in write_transaction."""
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**{READONLY: True})
            yield conn
    except DBAPIError as exc:
        raise _translate(exc, "read") from exc
    except (OSError, SQLAlchemyError) as exc:
        raise StorageUnavailableError(f"database unavailable: {type(exc).__name__}") from exc


def _translate(exc: DBAPIError, what: str) -> StorageError:
    name = type(exc.orig).__name__
    lowered = name.lower()
    if exc.connection_invalidated or any(
        word in lowered for word in ("connection", "cannotconnect", "interface")
    ):
        return StorageUnavailableError(f"database unavailable: {name}")
    return StorageError(f"database {what} failed: {name}")
