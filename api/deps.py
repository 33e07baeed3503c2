"""FastAPI dependencies as ``Annotated`` aliases: state, node, authentication, scopes.

Authentication and rate limiting happen together, in :func:`authenticate`:

- a request with a valid API key takes a token from that key's bucket;
- a request without a key, or with an invalid one, takes a token from its client IP's
  bucket first (so guessing keys is rate limited too), then gets 401;
- a request presenting credentials from a client IP whose bucket is spent gets 429
  *before* the credentials are checked, valid or not: otherwise a rate-limited caller
  could go on guessing and tell a valid key (200) from an invalid one (429).

Client IPs are bucketed by :func:`engine.net.gate.limit_key` (an IPv6 address by its
/64), so one host cannot rotate through its addresses to refill its budget.

The decision is stored on ``request.state.rate_decision`` for the ``RateLimit-*``
headers; a refused request gets 429 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from api.auth import (
    Principal,
    Scope,
    bearer_token,
    forbidden,
    origin_allowed,
    principal_from_record,
    unauthorized,
)
from api.errors import ApiError
from api.ratelimit import RateDecision, rate_limit_headers
from api.state import GatewayState
from engine.crypto.identity import PeerId
from engine.errors import NodeNotRunningError
from engine.net.gate import limit_key

__all__ = [
    "Admin",
    "Authenticated",
    "Gateway",
    "Limit",
    "Monitor",
    "NodeDep",
    "Offset",
    "PeerIdPath",
    "PeersWrite",
    "StreamsSend",
    "authenticate",
    "authenticate_connection",
    "client_ip",
    "get_gateway",
    "require",
]

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key created with `glueberry apikey create`.",
)


def get_gateway(request: Request) -> GatewayState:
    """The app's :class:`GatewayState`."""
    state: GatewayState = request.app.state.gateway
    return state


Gateway = Annotated[GatewayState, Depends(get_gateway)]


def get_node(gateway: Gateway) -> Any:
    """The engine node.

    Raises:
        NodeNotRunningError: no node is attached (mapped to 503).
    """
    if gateway.node is None:
        raise NodeNotRunningError("no node is attached to this gateway")
    return gateway.node


NodeDep = Annotated[Any, Depends(get_node)]


def client_ip(request: Request) -> str:
    """The client's address (uvicorn applies trusted proxy headers before this)."""
    return request.client.host if request.client is not None else "unknown"


def _too_many(decision: RateDecision, kind: str) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        "too many requests; retry later",
        details={"retry_after": round(decision.retry_after, 3), "bucket": kind},
        headers=rate_limit_headers(decision),
    )


async def _charge(request: Request, gateway: GatewayState, kind: str, key: str) -> None:
    await _charge_state(request.state, gateway, kind, key)


async def _charge_state(state: Any, gateway: GatewayState, kind: str, key: str) -> None:
    settings = gateway.settings
    if not settings.rate_limit_enabled:
        return
    if kind == "key":
        rate, burst = settings.rate_limit_per_key, settings.rate_limit_burst_per_key
    else:
        rate, burst = settings.rate_limit_per_ip, settings.rate_limit_burst_per_ip
        key = limit_key(key)
    decision = await gateway.limiter.hit(f"{kind}:{key}", rate, burst)
    state.rate_decision = decision
    if not decision.allowed:
        gateway.metrics.rate_limited.labels(kind).inc()
        raise _too_many(decision, kind)


async def _refuse_spent_ip(state: Any, gateway: GatewayState, ip: str) -> None:
    """429 when ``ip``'s failure budget is spent, before any credential is checked."""
    settings = gateway.settings
    if not settings.rate_limit_enabled:
        return
    decision = await gateway.limiter.exhausted(
        f"ip:{limit_key(ip)}", settings.rate_limit_per_ip, settings.rate_limit_burst_per_ip
    )
    if decision is not None:
        state.rate_decision = decision
        gateway.metrics.rate_limited.labels("ip").inc()
        raise _too_many(decision, "ip")


async def authenticate(
    request: Request,
    gateway: Gateway,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Identify the caller from ``Authorization: Bearer <key>`` and charge its bucket.

    Raises:
        ApiError: 401 without a valid key, 429 over the rate limit.
    """
    header = request.headers.get("authorization")
    token = credentials.credentials if credentials is not None else None
    record = None
    if token and gateway.api_keys is not None:
        await _refuse_spent_ip(request.state, gateway, client_ip(request))
        record = await gateway.api_keys.verify(token)
    if record is None:
        await _charge(request, gateway, "ip", client_ip(request))
        if header is not None and token is None:
            raise unauthorized("the Authorization header must be 'Bearer <API key>'")
        raise unauthorized()
    principal = principal_from_record(record)
    await _charge(request, gateway, "key", principal.key_id)
    return principal


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates and demands ``scope`` (``admin`` has every scope)."""

    async def dependency(
        principal: Annotated[Principal, Depends(authenticate)],
    ) -> Principal:
        if not principal.allows(scope):
            raise forbidden(scope)
        return principal

    dependency.__name__ = f"require_{scope.value.replace(':', '_')}"
    return dependency


Authenticated = Annotated[Principal, Depends(authenticate)]
Monitor = Annotated[Principal, Depends(require(Scope.MONITOR))]
PeersWrite = Annotated[Principal, Depends(require(Scope.PEERS_WRITE))]
StreamsSend = Annotated[Principal, Depends(require(Scope.STREAMS_SEND))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]

Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Index of the first item.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (at most 1000).")]


def peer_id_path(
    peer_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=128,
            description="libp2p peer id (12D3KooW...).",
            examples=["12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"],
        ),
    ],
) -> PeerId:
    """The ``{peer_id}`` path parameter, parsed.

    Raises:
        InvalidPeerIdError: not a valid peer id (mapped to 422).
    """
    return PeerId.from_string(peer_id)


PeerIdPath = Annotated[PeerId, Depends(peer_id_path)]


async def authenticate_connection(
    connection: HTTPConnection, gateway: GatewayState, scope: Scope
) -> Principal:
    """Authenticate a browser-capable channel (WebSocket, EventSource) or any request.

    Accepts ``Authorization: Bearer <key>`` or a single-use ``?ticket=`` from
    ``POST /v1/tickets``; checks the ``Origin`` header against ``ws_origins``; charges
    the rate limit and demands ``scope``.

    Raises:
        ApiError: 403 for a refused origin or missing scope, 401 without valid
            credentials, 429 over the rate limit.
    """
    if not origin_allowed(connection.headers.get("origin"), gateway.settings.ws_origins):
        raise ApiError(403, "origin_not_allowed", "this Origin may not open channels")
    ticket = connection.query_params.get("ticket")
    state: Any = connection.state
    if ticket:
        await _refuse_spent_ip(state, gateway, _peer_host(connection))
        principal = await gateway.tickets.redeem(ticket)
        if principal is None:
            await _charge_state(state, gateway, "ip", _peer_host(connection))
            raise unauthorized("unknown, used or expired ticket")
        await _charge_state(state, gateway, "key", principal.key_id)
    else:
        token = None
        header = connection.headers.get("authorization")
        if header is not None:
            token = bearer_token(header)
        record = None
        if token and gateway.api_keys:
            await _refuse_spent_ip(state, gateway, _peer_host(connection))
            record = await gateway.api_keys.verify(token)
        if record is None:
            await _charge_state(state, gateway, "ip", _peer_host(connection))
            raise unauthorized()
        principal = principal_from_record(record)
        await _charge_state(state, gateway, "key", principal.key_id)
    if not principal.allows(scope):
        raise forbidden(scope)
    return principal


def _peer_host(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client is not None else "unknown"
