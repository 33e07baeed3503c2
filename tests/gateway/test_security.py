"""Authentication, scopes, rate limits, body limits and the error shape (in process)."""

from __future__ import annotations

import pytest

from api.auth import MemoryTicketStore, Principal, Scope
from models import ApiKeyRepository

from .conftest import AppFactory, assert_error_shape, new_key


async def test_health_needs_no_key(make_client: AppFactory) -> None:
    _, client = await make_client()
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_no_key_is_401_with_challenge(make_client: AppFactory) -> None:
    _, client = await make_client()
    response = await client.get("/v1/node")
    assert_error_shape(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwdw==", "Bearer", "Bearer gb_0000000000000000_" + "A" * 43, "token"],
)
async def test_bad_key_is_401(make_client: AppFactory, header: str) -> None:
    _, client = await make_client()
    response = await client.get("/v1/node", headers={"Authorization": header})
    assert_error_shape(response, 401, "unauthorized")


async def test_wrong_scope_is_403(make_client: AppFactory, api_keys: ApiKeyRepository) -> None:
    _, client = await make_client()
    monitor = await new_key(api_keys, "monitor")
    response = await client.post("/v1/peers", json={"peer_id": "x", "addrs": []}, headers=monitor)
    assert_error_shape(response, 403, "forbidden")
    assert response.json()["error"]["details"] == {"required_scope": "peers:write"}
    send = await new_key(api_keys, "streams:send")
    response = await client.get("/v1/peers", headers=send)
    assert_error_shape(response, 403, "forbidden")


async def test_admin_holds_every_scope(make_client: AppFactory, api_keys: ApiKeyRepository) -> None:
    _, client = await make_client()
    admin = await new_key(api_keys, "admin")
    # Authorized, then refused for lack of a node: 503, not 401/403.
    response = await client.get("/v1/peers", headers=admin)
    assert_error_shape(response, 503, "node_not_running")


async def test_revoked_key_is_401(make_client: AppFactory, api_keys: ApiKeyRepository) -> None:
    _, client = await make_client()
    created = await api_keys.create("soon revoked", ["monitor"])
    headers = {"Authorization": f"Bearer {created.token}"}
    assert (await client.post("/v1/tickets", headers=headers)).status_code == 201
    await api_keys.revoke(created.record.key_id)
    response = await client.post("/v1/tickets", headers=headers)
    assert_error_shape(response, 401, "unauthorized")


async def test_key_rate_limit_is_429_with_headers(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    _, client = await make_client(rate_limit_per_key=0.01, rate_limit_burst_per_key=3)
    headers = await new_key(api_keys, "monitor")
    remaining = []
    for _ in range(3):
        response = await client.post("/v1/tickets", headers=headers)
        assert response.status_code == 201
        remaining.append(int(response.headers["ratelimit-remaining"]))
        assert response.headers["ratelimit-limit"] == "3"
    assert remaining == [2, 1, 0]
    response = await client.post("/v1/tickets", headers=headers)
    assert_error_shape(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-remaining"] == "0"
    assert "ratelimit-reset" in response.headers
    # Another key has its own budget.
    other = await new_key(api_keys, "monitor")
    assert (await client.post("/v1/tickets", headers=other)).status_code == 201


async def test_unauthenticated_requests_limited_per_ip(make_client: AppFactory) -> None:
    _, client = await make_client(rate_limit_per_ip=0.01, rate_limit_burst_per_ip=2)
    bad = {"Authorization": "Bearer gb_0123456789abcdef_" + "x" * 43}
    assert (await client.get("/v1/node")).status_code == 401
    assert (await client.get("/v1/node", headers=bad)).status_code == 401
    response = await client.get("/v1/node", headers=bad)
    assert_error_shape(response, 429, "rate_limited")
    assert "retry-after" in response.headers
    # Health probes are never limited.
    assert (await client.get("/healthz")).status_code == 200


async def test_rate_limit_can_be_disabled(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    _, client = await make_client(
        rate_limit_enabled=False, rate_limit_per_key=0.01, rate_limit_burst_per_key=1
    )
    headers = await new_key(api_keys, "monitor")
    for _ in range(5):
        assert (await client.post("/v1/tickets", headers=headers)).status_code == 201


async def test_oversized_body_is_413(make_client: AppFactory, api_keys: ApiKeyRepository) -> None:
    _, client = await make_client(max_body_size=1024)
    headers = await new_key(api_keys, "admin")
    big = b'{"scopes": ["monitor"], "pad": "' + b"x" * 4096 + b'"}'
    response = await client.post(
        "/v1/tickets", content=big, headers={**headers, "Content-Type": "application/json"}
    )
    assert_error_shape(response, 413, "payload_too_large")
    assert response.json()["error"]["details"] == {"limit": 1024}

    async def chunks():  # no Content-Length: counted while streaming
        for _ in range(8):
            yield b"x" * 512

    response = await client.post(
        "/v1/tickets", content=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert_error_shape(response, 413, "payload_too_large")


async def test_malformed_input_is_422(make_client: AppFactory, api_keys: ApiKeyRepository) -> None:
    _, client = await make_client()
    headers = await new_key(api_keys, "admin")
    response = await client.post("/v1/tickets", json={"scopes": ["root"]}, headers=headers)
    assert_error_shape(response, 422, "validation_error")
    errors = response.json()["error"]["details"]["errors"]
    assert errors
    assert errors[0]["loc"][:2] == ["body", "scopes"]
    response = await client.post(
        "/v1/tickets",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert_error_shape(response, 422, "validation_error")
    response = await client.post("/v1/tickets", json={"unknown": 1}, headers=headers)
    assert_error_shape(response, 422, "validation_error")


async def test_unknown_route_and_method_have_error_shape(make_client: AppFactory) -> None:
    _, client = await make_client()
    assert_error_shape(await client.get("/v1/nothing"), 404, "not_found")
    assert_error_shape(await client.delete("/healthz"), 405, "method_not_allowed")


async def test_unexpected_exception_is_500_with_request_id(make_client: AppFactory) -> None:
    app, client = await make_client()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    response = await client.get("/boom")
    assert_error_shape(response, 500, "internal_error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    request_id = response.json()["error"]["details"]["request_id"]
    assert response.headers["x-request-id"] == request_id


async def test_ticket_is_single_use_and_narrowed(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    app, client = await make_client(ticket_ttl=5)
    headers = await new_key(api_keys, "monitor", "streams:send")
    response = await client.post("/v1/tickets", json={"scopes": ["monitor"]}, headers=headers)
    assert response.status_code == 201
    body = response.json()
    assert body["scopes"] == ["monitor"]
    store = app.state.gateway.tickets
    principal = await store.redeem(body["ticket"])
    assert principal is not None
    assert principal.scopes == frozenset({Scope.MONITOR})
    assert principal.via == "ticket"
    assert await store.redeem(body["ticket"]) is None
    response = await client.post("/v1/tickets", json={"scopes": ["admin"]}, headers=headers)
    assert_error_shape(response, 403, "forbidden")


async def test_ticket_expires() -> None:
    now = [1000.0]
    store = MemoryTicketStore(clock=lambda: now[0])
    principal = Principal("k", "n", frozenset({Scope.MONITOR}))
    ticket, expires_at = await store.issue(principal, ttl=30)
    assert expires_at == 1030.0
    now[0] = 1030.0
    assert await store.redeem(ticket) is None
    assert await store.redeem("gbt_unknown") is None


async def test_metrics_need_monitor_unless_public(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    _, client = await make_client()
    assert_error_shape(await client.get("/metrics"), 401, "unauthorized")
    send = await new_key(api_keys, "streams:send")
    assert_error_shape(await client.get("/metrics", headers=send), 403, "forbidden")
    monitor = await new_key(api_keys, "monitor")
    await client.get("/healthz")
    response = await client.get("/metrics", headers=monitor)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'glueberry_http_requests_total{method="GET",route="/healthz",status="200"}' in (
        response.text
    )
    _, public = await make_client(metrics_public=True)
    response = await public.get("/metrics")
    assert response.status_code == 200
    # One registry per app: the second app has not seen the first one's /healthz.
    assert 'route="/healthz"' not in response.text
