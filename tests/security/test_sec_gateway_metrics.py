"""Unauthenticated requests cannot grow the gateway's metric label sets without bound."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import GatewaySettings


async def test_arbitrary_http_methods_do_not_create_new_series(tmp_path: Path) -> None:
    settings = GatewaySettings(_env_file=None, data_dir=tmp_path, http_port=0)  # type: ignore[call-arg]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            for i in range(50):
                await client.request(f"X{i:04d}", "/healthz")
        requests = app.state.gateway.metrics.requests
        methods = {s.labels["method"] for s in requests.collect()[0].samples}
        assert len(methods) <= 10, f"{len(methods)} method labels from one client"


def test_gateway_settings_hide_connection_passwords(tmp_path: Path) -> None:
    from pydantic import ValidationError

    settings = GatewaySettings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        database_url="postgresql://u:hunter2@db/g",
        redis_url="redis://:sesame@cache:6379/0",
    )
    assert "hunter2" not in repr(settings)
    assert "sesame" not in repr(settings)
    assert "hunter2" not in str(settings)
    # Still usable by the code that connects.
    assert settings.effective_database_url == "postgresql://u:hunter2@db/g"
    assert settings.redis_url == "redis://:sesame@cache:6379/0"
    with pytest.raises(ValidationError) as info:
        GatewaySettings(_env_file=None, data_dir=tmp_path, redis_url=["redis://:sesame@x"])  # type: ignore[call-arg,arg-type]
    assert "sesame" not in str(info.value)
