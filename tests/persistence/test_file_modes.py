"""The embedded database and its directory are created owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from models import create_engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_sqlite_files_and_new_directory_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: without care, files would be 0644
    try:
        db = tmp_path / "fresh" / "glueberry.db"
        engine = create_engine(f"sqlite+aiosqlite:///{db}")
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE t (x INTEGER)"))
                await conn.execute(text("INSERT INTO t VALUES (1)"))
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT x FROM t"))).scalar_one() == 1
            assert _mode(db.parent) == 0o700
            assert _mode(db) == 0o600
            wal = db.with_name(db.name + "-wal")
            assert wal.exists()  # WAL mode is on, so the journal file exists now
            assert _mode(wal) == 0o600
        finally:
            await engine.dispose()
    finally:
        os.umask(old)
