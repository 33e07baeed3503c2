"""Settings of the persistence layer (pydantic-settings, ``GLUEBERRY_`` prefix).

Nothing is read at import time: build a :class:`DatabaseSettings` (from keyword
arguments or the environment) and pass it to :func:`models.database.create_engine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DatabaseSettings"]


class DatabaseSettings(BaseSettings):
    """Where and how the node's database is reached.

    ``GLUEBERRY_DATABASE_URL`` selects the database; empty means the embedded SQLite file
    ``<data_dir>/glueberry.db``. PostgreSQL URLs use asyncpg
    (``postgresql+asyncpg://user@host:5432/db``); a plain ``postgresql://`` is upgraded.
    """

    # The URL may carry a password: keep it out of validation errors and the repr.
    model_config = SettingsConfigDict(
        env_prefix="GLUEBERRY_",
        env_file=None,
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    database_url: str = Field(
        default="", description="SQLAlchemy async URL; empty = SQLite under data_dir.", repr=False
    )
    data_dir: Path = Field(
        default=Path("./glueberry-data"), description="Directory of the embedded database."
    )
    database_file: str = Field(
        default="glueberry.db", description="SQLite file name, relative to data_dir."
    )
    flush_interval: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=5.0, description="Seconds between flushes of hot data (last seen, counters)."
    )
    max_metadata_size: Annotated[int, Field(ge=0, le=1024 * 1024)] = Field(
        default=4096, description="Largest peer metadata (JSON-encoded bytes)."
    )
    sqlite_busy_timeout_ms: Annotated[int, Field(ge=0, le=600_000)] = Field(
        default=5000, description="SQLite busy_timeout: how long a writer waits for the lock."
    )
    pool_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=5, description="Connection pool size (PostgreSQL)."
    )
    echo_sql: bool = Field(default=False, description="Log every SQL statement (debugging).")

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"invalid database URL: {exc}") from None
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+asyncpg")
        elif url.drivername == "sqlite":
            url = url.set(drivername="sqlite+aiosqlite")
        if url.drivername not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
            raise ValueError(
                f"unsupported database driver {url.drivername!r}; "
                "use sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return url.render_as_string(hide_password=False)

    @property
    def url(self) -> str:
        """The effective database URL (the SQLite default filled in)."""
        if self.database_url:
            return self.database_url
        path = (self.data_dir / self.database_file).resolve()
        return f"sqlite+aiosqlite:///{path}"
