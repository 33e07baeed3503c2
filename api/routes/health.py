"""``/healthz`` (liveness), ``/readyz`` (readiness per component), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import Scope, forbidden
from api.deps import Gateway, authenticate
from api.errors import error_responses
from api.health import check_readiness
from api.schemas import HealthStatus, ReadinessPublic

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> HealthStatus:
    """200 while the process and its event loop run. No authentication."""
    return HealthStatus()


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "A component is not ready."}},
)
async def readyz(gateway: Gateway) -> JSONResponse:
    """200 when every component is ready, 503 otherwise; one entry per component
    (database, p2p, event_loop, peers). No authentication."""
    report = await check_readiness(
        node=gateway.node,
        database_check=gateway.database_check,
        loop_lag=gateway.loop_lag.lag,
        max_loop_lag=gateway.settings.readiness_max_loop_lag,
    )
    body = ReadinessPublic(
        ready=report.ready,
        components={name: {"ok": c.ok, **c.detail} for name, c in report.components.items()},
    )
    return JSONResponse(body.model_dump(), status_code=200 if report.ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    openapi_extra={"security": [{"HTTPBearer": []}]},
    responses={
        200: {"content": {"text/plain": {"example": "glueberry_connected_peers 1.0\n"}}},
        **error_responses(401, 403, 429),
    },
)
async def metrics(request: Request, gateway: Gateway) -> Response:
    """Prometheus text format; needs the ``monitor`` scope unless ``metrics_public``."""
    if not gateway.settings.metrics_public:
        credentials = None
        header = request.headers.get("authorization")
        if header is not None:
            from fastapi.security import HTTPAuthorizationCredentials

            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                credentials = HTTPAuthorizationCredentials(
                    scheme="Bearer", credentials=token.strip()
                )
        principal = await authenticate(request, gateway, credentials)
        if not principal.allows(Scope.MONITOR):
            raise forbidden(Scope.MONITOR)
    gateway.metrics.loop_lag.set(gateway.loop_lag.lag)
    gateway.metrics.retained_messages.set(len(gateway.retention))
    return Response(generate_latest(gateway.registry), media_type=CONTENT_TYPE_LATEST)
