"""Pure ASGI middleware: request body limit and rate-limit response headers.

Pure ASGI (no ``BaseHTTPMiddleware``) so bodies are never buffered and WebSocket scopes
pass through untouched.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.ratelimit import RateDecision, rate_limit_headers

__all__ = ["BodyLimitMiddleware", "RateLimitHeadersMiddleware"]


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_body_size`` with 413, before reading them whole.

    A ``Content-Length`` above the limit is refused at once, without reading a byte;
    chunked bodies are counted while they stream in and refused when they cross it.
    """

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_size
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > limit:
                    response = error_response(
                        413 if length > limit else 400,
                        "payload_too_large" if length > limit else "bad_request",
                        f"request body exceeds {limit} bytes"
                        if length > limit
                        else "invalid Content-Length",
                        {"limit": limit},
                        {"Connection": "close"},
                    )
                    await response(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI re-raises HTTPException from body reading as is; the error
                    # handlers turn it into the 413 error shape.
                    raise HTTPException(413, f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


class RateLimitHeadersMiddleware:
    """Add ``RateLimit-*`` headers from the decision the auth dependency stored."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = state.get("rate_decision")
                if isinstance(decision, RateDecision):
                    headers = list(message.get("headers", []))
                    present = {name.lower() for name, _ in headers}
                    for name, value in rate_limit_headers(decision).items():
                        if name.lower().encode() not in present:
                            headers.append((name.lower().encode(), value.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
