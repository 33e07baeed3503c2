"""Persistence on SQLAlchemy 2.x: tables, the SQL repositories and database setup.

``SqlRepository`` implements the engine's :class:`engine.repository.Repository`;
``ApiKeyRepository`` stores the gateway's API keys. Build engines with
:func:`create_engine` from :class:`DatabaseSettings`; bring the schema up to date with
``migrations.upgrade_async`` (the server) or ``glueberry db upgrade`` (the CLI).
"""

from models.api_keys import ApiKeyRecord, ApiKeyRepository, NewApiKey, hash_token
from models.database import create_engine, create_sessionmaker, is_sqlite
from models.repository import SqlRepository
from models.settings import DatabaseSettings
from models.tables import ApiKeyRow, AuditRow, BanRow, Base, PeerAddrRow, PeerRow

__all__ = [
    "ApiKeyRecord",
    "ApiKeyRepository",
    "ApiKeyRow",
    "AuditRow",
    "BanRow",
    "Base",
    "DatabaseSettings",
    "NewApiKey",
    "PeerAddrRow",
    "PeerRow",
    "SqlRepository",
    "create_engine",
    "create_sessionmaker",
    "hash_token",
    "is_sqlite",
]
