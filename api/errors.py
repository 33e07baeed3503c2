"""Errors to HTTP, in one place.

Every error response of the gateway has one JSON shape::

    {"error": {"code": "peer_not_found", "message": "...", "details": {...}}}

Engine errors (:class:`engine.errors.GlueberryError`) are mapped by their stable ``code``
through :data:`STATUS_BY_CODE`, walking up the class hierarchy to the nearest mapped
ancestor. Gateway-only conditions (authentication, scopes, rate limits, body size) raise
:class:`ApiError`. FastAPI's validation errors become 422, Starlette's 404/405/413
keep their status, and anything unexpected becomes 500 ``internal_error`` carrying a
request id that is also logged with the traceback server-side, never sent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import GlueberryError

__all__ = [
    "AUTH_ERRORS",
    "STATUS_BY_CODE",
    "ApiError",
    "ErrorBody",
    "ErrorResponse",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("glueberry.api")

# The one table from engine error codes to HTTP statuses. A code missing here inherits the
# status of its nearest ancestor class (see status_for); the root maps to 500.
STATUS_BY_CODE: dict[str, int] = {
    "glueberry_error": 500,
    "config_invalid": 500,
    "invalid_input": 422,
    "crypto_error": 500,
    "weak_shared_secret": 422,
    "invalid_public_key": 422,
    "frame_error": 502,
    "protocol_error": 502,
    "local_protocol_error": 500,
    "transport_error": 502,
    "dial_timeout": 504,
    "connection_gated": 403,
    "resource_limit": 503,
    "connection_closed": 409,
    "stream_error": 502,
    "stream_closed": 409,
    "stream_busy": 409,
    "stream_limit": 503,
    "peer_error": 409,
    "peer_not_found": 404,
    "peer_exists": 409,
    "peer_blacklisted": 403,
    "peer_not_connected": 409,
    "peer_not_established": 409,
    "peer_in_cooldown": 409,
    "ban_not_found": 404,
    "handshake_failed": 502,
    "handshake_timeout": 504,
    "invalid_state_transition": 409,
    "send_timeout": 504,
    "node_state": 503,
    "storage_error": 500,
    "storage_unavailable": 503,
    "api_key_not_found": 404,
}

_STARLETTE_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
}


def status_for(error: GlueberryError) -> int:
    """The HTTP status for an engine error: its code's, or its nearest ancestor's."""
    for cls in type(error).__mro__:
        code = getattr(cls, "code", None)
        if isinstance(code, str) and code in STATUS_BY_CODE:
            return STATUS_BY_CODE[code]
    return 500


class ApiError(Exception):
    """A gateway-level error (auth, scope, rate limit, body size, cursor, ...).

    Args:
        status: HTTP status code.
        code: stable machine-readable code (``unauthorized``, ``forbidden``, ...).
        message: human-readable text, safe to show.
        details: JSON-safe extra facts.
        headers: response headers to add (``WWW-Authenticate``, ``Retry-After``, ...).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})

    @classmethod
    def from_engine(cls, error: GlueberryError) -> ApiError:
        """An engine error as a gateway error: its status (:func:`status_for`), code and
        message; not its details.

        Args:
            error: the engine error.

        Returns:
            the :class:`ApiError` to raise or to refuse a channel with.
        """
        return cls(status_for(error), error.code, error.message)


# -- response schema (for OpenAPI) ---------------------------------------------------------


class ErrorBody(BaseModel):
    """The error object."""

    code: str = Field(description="Stable machine-readable error code.", examples=["not_found"])
    message: str = Field(description="Human-readable description.")
    details: dict[str, Any] = Field(default_factory=dict, description="Extra JSON-safe facts.")


class ErrorResponse(BaseModel):
    """Every non-2xx response body."""

    error: ErrorBody


_DESCRIPTIONS: dict[int, str] = {
    401: "Missing, invalid or revoked API key.",
    403: "The API key lacks the required scope, or the peer is refused.",
    404: "Not found.",
    409: "Conflict with the peer's current state.",
    413: "Request body too large.",
    422: "Malformed input.",
    429: "Rate limited; see Retry-After.",
    502: "The remote peer or network failed.",
    503: "Not available (node not running, limit reached).",
    504: "Timed out.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries with the error shape for ``statuses``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorResponse, "description": _DESCRIPTIONS.get(status, "Error.")}
    return out


AUTH_ERRORS = (401, 403, 429)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build a JSON response with the gateway's error shape."""
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _jsonable_validation_errors(errors: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in errors:
        entry = {
            "loc": [str(part) for part in item.get("loc", ())],
            "msg": str(item.get("msg", "")),
            "type": str(item.get("type", "")),
        }
        out.append(entry)
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Register the exception handlers that give every error the one JSON shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    async def on_engine_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GlueberryError)
        status = status_for(exc)
        if status >= 500:
            log.warning("engine error on %s %s: %s", request.method, request.url.path, exc.code)
        return error_response(status, exc.code, exc.message, exc.details)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(
            422,
            "validation_error",
            "the request is malformed",
            {"errors": _jsonable_validation_errors(exc.errors())},
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STARLETTE_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, None, exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex
        log.error(
            "unhandled error on %s %s (request id %s)",
            request.method,
            request.url.path,
            request_id,
            exc_info=exc,
        )
        return error_response(
            500,
            "internal_error",
            "internal server error",
            {"request_id": request_id},
            {"X-Request-Id": request_id},
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(GlueberryError, on_engine_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
