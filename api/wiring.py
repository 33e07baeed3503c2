"""Wiring the pieces of one gateway process from settings (used by the CLI commands).

Engine configuration, identity, database settings and repositories are built here from
a :class:`~api.settings.GatewaySettings`, so ``serve``, ``keygen`` and ``apikey`` agree on
the data directory, the key file and the database.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from api.settings import GatewaySettings
from engine.config import Config
from engine.crypto.identity import Identity

__all__ = [
    "database_settings",
    "engine_config",
    "load_identity",
    "load_settings",
    "open_api_keys",
    "p2p_listen_addr",
]


def load_settings(env_file: str | None = ".env", **overrides: Any) -> GatewaySettings:
    """Gateway settings from the environment / ``.env``, with CLI overrides on top.

    Args:
        env_file: dotenv file to read (``None`` to skip).
        overrides: values given on the command line (``None`` values are ignored).
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    return GatewaySettings(_env_file=env_file, **values)  # type: ignore[call-arg]


def p2p_listen_addr(host: str, port: int) -> str:
    """The TCP multiaddr for ``host:port`` (IPv4, IPv6 or DNS name)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"/dns/{host}/tcp/{port}"
    return f"/ip{ip.version}/{ip}/tcp/{port}"


def engine_config(settings: GatewaySettings, env_file: str | None = ".env") -> Config:
    """The engine :class:`~engine.Config` (``GLUEBERRY_*`` variables) for these settings.

    ``data_dir`` comes from the gateway settings; ``--p2p-port`` replaces the listen
    addresses with one TCP address on ``p2p_host``.
    """
    overrides: dict[str, Any] = {"data_dir": settings.data_dir}
    if settings.p2p_port is not None:
        overrides["listen_addrs"] = [p2p_listen_addr(settings.p2p_host, settings.p2p_port)]
    return Config(_env_file=env_file, **overrides)  # type: ignore[call-arg]


def load_identity(config: Config) -> tuple[Identity, bool]:
    """Load the node's identity key, creating it (0600) on first run.

    Returns:
        The identity and whether it was created now.

    Raises:
        KeyFileError: the key file is unreadable, malformed or insecure.
    """
    path: Path = config.key_path
    existed = path.exists()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Identity.load_or_create(path), not existed


def database_settings(settings: GatewaySettings, config: Config | None = None) -> Any:
    """The persistence layer's ``DatabaseSettings`` for these settings."""
    from models.settings import DatabaseSettings

    values: dict[str, Any] = {
        "database_url": settings.database_url or "",
        "data_dir": settings.data_dir,
    }
    if config is not None:
        values["flush_interval"] = config.flush_interval
        values["max_metadata_size"] = config.max_metadata_size
    return DatabaseSettings(**values)


async def open_api_keys(settings: GatewaySettings, *, migrate: bool = True) -> tuple[Any, Any]:
    """Open the API-key repository of this data directory's node.

    Returns:
        ``(api_keys, engine)``; close the first with ``close()`` and dispose the second.
    """
    from migrations import upgrade_async
    from models import ApiKeyRepository, create_engine

    config = engine_config(settings)
    identity, _ = load_identity(config)
    db = database_settings(settings, config)
    if migrate:
        await upgrade_async(db.url)
    engine = create_engine(db)
    return ApiKeyRepository(engine, identity.peer_id), engine
