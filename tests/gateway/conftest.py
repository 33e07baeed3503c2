"""Fixtures of the gateway tests.

In-process tests drive the ASGI app with httpx's ``ASGITransport`` and run its lifespan
with ``app.router.lifespan_context``; API keys live in a real migrated SQLite database
(the persistence layer's ``ApiKeyRepository``, not a stand-in).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.settings import GatewaySettings
from engine.crypto.identity import Identity
from migrations import upgrade
from models import ApiKeyRepository, create_engine

REDIS_URL = os.environ.get("GLUEBERRY_TEST_REDIS_URL", "")
NO_REDIS = "GLUEBERRY_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/15)"


def settings_for(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    """Gateway settings isolated from the environment and any .env file."""
    values: dict[str, Any] = {"data_dir": tmp_path, "http_port": 0}
    values.update(overrides)
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once, copied by each test."""
    path = tmp_path_factory.mktemp("gateway-db") / "template.db"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(upgrade, f"sqlite+aiosqlite:///{path}").result()
    return path


@pytest.fixture
async def api_keys(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[ApiKeyRepository]:
    """A real API-key repository on a migrated SQLite copy."""
    path = tmp_path / "keys.db"
    shutil.copyfile(sqlite_template, path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    repo = ApiKeyRepository(engine, Identity.generate().peer_id)
    try:
        yield repo
    finally:
        await repo.close()
        await engine.dispose()


AppFactory = Callable[..., Awaitable[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
async def make_client(tmp_path: Path, api_keys: ApiKeyRepository) -> AsyncIterator[AppFactory]:
    """Build an app (lifespan running) and an httpx client bound to it."""
    async with AsyncExitStack() as stack:

        async def factory(
            *, node: Any = None, client_ip: str = "127.0.0.1", **overrides: Any
        ) -> tuple[FastAPI, httpx.AsyncClient]:
            keys = overrides.pop("keys", api_keys)
            extra = {k: overrides.pop(k) for k in list(overrides) if k in _APP_ARGS}
            app = create_app(settings_for(tmp_path, **overrides), node=node, api_keys=keys, **extra)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(
                app=app, raise_app_exceptions=False, client=(client_ip, 12345)
            )
            client = httpx.AsyncClient(transport=transport, base_url="http://gateway.test")
            await stack.enter_async_context(client)
            return app, client

        yield factory


_APP_ARGS = {"database_check", "rate_limiter", "ticket_store", "persistent", "manage_node"}


async def new_key(api_keys: ApiKeyRepository, *scopes: str) -> dict[str, str]:
    """Create a key with ``scopes``; return the Authorization header."""
    created = await api_keys.create("test", list(scopes))
    return {"Authorization": f"Bearer {created.token}"}


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None) -> None:
    """The response has ``status`` and the gateway's error shape (and ``code``)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str)
    assert isinstance(body["error"]["details"], dict)
    if code is not None:
        assert body["error"]["code"] == code
