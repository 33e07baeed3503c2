"""Channel authentication (tickets, origins) for the WebSocket/SSE routes, and CORS."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from api.auth import Scope
from api.deps import authenticate_connection
from engine.config import Config
from engine.crypto.identity import Identity
from engine.net.memory import MemoryNetwork
from engine.node import Node
from models import ApiKeyRepository

from .conftest import AppFactory, assert_error_shape, new_key


async def _app_with_channel(make_client: AppFactory, **settings: object):  # type: ignore[no-untyped-def]
    app, client = await make_client(**settings)

    @app.get("/test-channel")
    async def channel(request: Request) -> dict[str, str]:
        principal = await authenticate_connection(request, app.state.gateway, Scope.MONITOR)
        return {"key_id": principal.key_id, "via": principal.via}

    return app, client


async def test_ticket_opens_a_channel_once(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    _, client = await _app_with_channel(make_client)
    headers = await new_key(api_keys, "monitor")
    ticket = (await client.post("/v1/tickets", headers=headers)).json()["ticket"]
    response = await client.get(f"/test-channel?ticket={ticket}")
    assert response.status_code == 200
    assert response.json()["via"] == "ticket"
    assert_error_shape(await client.get(f"/test-channel?ticket={ticket}"), 401, "unauthorized")
    # A bearer key works too (backends).
    response = await client.get("/test-channel", headers=headers)
    assert response.json()["via"] == "key"
    assert_error_shape(await client.get("/test-channel"), 401, "unauthorized")


async def test_ticket_scopes_are_enforced(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    _, client = await _app_with_channel(make_client)
    headers = await new_key(api_keys, "streams:send")
    ticket = (await client.post("/v1/tickets", headers=headers)).json()["ticket"]
    assert_error_shape(await client.get(f"/test-channel?ticket={ticket}"), 403, "forbidden")


async def test_origin_allow_list(make_client: AppFactory, api_keys: ApiKeyRepository) -> None:
    _, client = await _app_with_channel(make_client, ws_origins=["https://app.example"])
    headers = await new_key(api_keys, "monitor")
    ok = await client.get("/test-channel", headers={**headers, "Origin": "https://app.example"})
    assert ok.status_code == 200
    refused = await client.get(
        "/test-channel", headers={**headers, "Origin": "https://evil.example"}
    )
    assert_error_shape(refused, 403, "origin_not_allowed")


async def test_cors_preflight(make_client: AppFactory) -> None:
    _, client = await make_client(cors_origins=["https://app.example"])
    response = await client.options(
        "/v1/node",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    response = await client.options(
        "/v1/node",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_bootstrap_peers_are_added_and_dialed(
    make_client: AppFactory, api_keys: ApiKeyRepository, tmp_path: Path
) -> None:
    net = MemoryNetwork()
    nodes = []
    for ip in ("127.0.0.1", "127.0.0.2"):
        identity = Identity.generate()
        config = Config(_env_file=None, data_dir=tmp_path / ip)  # type: ignore[call-arg]
        nodes.append(Node(config, identity=identity, host=net.create_host(identity.peer_id, ip=ip)))
    a, b = nodes
    await b.start()
    try:
        target = str(b.listen_addrs()[0])
        headers = await new_key(api_keys, "monitor")
        _, client = await make_client(node=a, bootstrap_peers=[target, "/ip4/1.2.3.4/tcp/1"])
        page = (
            await client.get(
                f"/v1/events?wait=10&peer={b.peer_id}&state=established", headers=headers
            )
        ).json()
        assert page["events"], page
        peer = (await client.get(f"/v1/peers/{b.peer_id}", headers=headers)).json()
        assert peer["addrs"] == [target.rsplit("/p2p/", 1)[0]]
    finally:
        await b.stop()
