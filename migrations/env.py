"""Alembic environment (async): used by :mod:`migrations.runner` and the ``alembic`` CLI.

When the runner passes a connection in ``config.attributes["connection"]`` the
migrations run on it; otherwise an async engine is created from ``sqlalchemy.url``.
SQLite uses batch mode so later ``ALTER`` operations work there too.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from models.database import create_engine
from models.tables import Base

target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine() -> None:
    # Developers: `alembic -c migrations/alembic.ini -x url=... <command>`, or
    # GLUEBERRY_DATABASE_URL, override the ini file's URL.
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("GLUEBERRY_DATABASE_URL")
        or context.config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError("set sqlalchemy.url (or GLUEBERRY_DATABASE_URL via the CLI)")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    given = context.config.attributes.get("connection")
    if given is not None:
        _configure_and_run(given)
    else:
        asyncio.run(_run_with_new_engine())
