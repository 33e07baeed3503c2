"""``glueberry db``: database schema management (Alembic, run from the package)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

HELP = """\
Manage the node's database schema. The database is GLUEBERRY_DATABASE_URL
(sqlite+aiosqlite:///... or postgresql+asyncpg://...), or by default the SQLite file
<data dir>/glueberry.db (GLUEBERRY_DATA_DIR, default ./glueberry-data). Works from any
working directory: the migrations ship inside the package.
"""


def register(subparsers: Any) -> None:
    """Add the ``db`` sub-command (``upgrade``, ``current``)."""
    parser = subparsers.add_parser(
        "db",
        help="database schema: upgrade, current",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply migrations up to a revision")
    upgrade.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    current = actions.add_parser("current", help="print the revision the database is at")
    for sub in (upgrade, current):
        add_database_options(sub)
    upgrade.set_defaults(func=run_upgrade)
    current.set_defaults(func=run_current)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--database-url`` and ``--data-dir``, read by :func:`database_settings`."""
    parser.add_argument("--database-url", help="database URL (GLUEBERRY_DATABASE_URL)")
    parser.add_argument("--data-dir", help="data directory (GLUEBERRY_DATA_DIR)")


def database_settings(args: argparse.Namespace) -> Any:
    """``DatabaseSettings`` from the environment, overridden by ``--database-url`` /
    ``--data-dir``."""
    from models.settings import DatabaseSettings

    overrides: dict[str, Any] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return DatabaseSettings(**overrides)


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def run_upgrade(args: argparse.Namespace) -> int:
    """Upgrade the database; print the revision reached."""
    import asyncio

    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from migrations import current_revision, upgrade

    try:
        settings = database_settings(args)
        upgrade(settings.url, args.revision)
        revision = asyncio.run(current_revision(settings.url))
    except (ValidationError, SQLAlchemyError, OSError) as exc:
        print(f"glueberry db upgrade: {exc}", file=sys.stderr)
        return 1
    print(f"database {_shown(settings.url)} at revision {revision}")
    return 0


def run_current(args: argparse.Namespace) -> int:
    """Print the database's revision (``none`` for an empty database)."""
    import asyncio

    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from migrations import current_revision, head_revision

    try:
        settings = database_settings(args)
        revision = asyncio.run(current_revision(settings.url))
    except (ValidationError, SQLAlchemyError, OSError) as exc:
        print(f"glueberry db current: {exc}", file=sys.stderr)
        return 1
    head = head_revision()
    state = "up to date" if revision == head else f"head is {head}"
    print(f"{revision or 'none'} ({state})")
    return 0
