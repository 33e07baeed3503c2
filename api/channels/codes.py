"""WebSocket close codes of the gateway's realtime channels (one table, documented).

Codes 4000-4999 are private-use (RFC 6455 section 7.4.2); the gateway mirrors the HTTP
status it would have answered where one exists (4401 ~ 401, 4403 ~ 403, 4029 ~ 429).
Every close carries a short human-readable reason (at most 123 bytes of UTF-8).

Refusals *before* the WebSocket is accepted (bad key, missing scope, disallowed origin,
malformed parameters, no node) are answered with a plain HTTP error response (401, 403,
422, 503, in the gateway's error shape) when the server supports the ASGI
``websocket.http.response`` extension (uvicorn does); otherwise the server accepts and
closes at once with the matching 44xx code below.
"""

from __future__ import annotations

import enum

__all__ = ["MAX_REASON_BYTES", "CloseCode", "close_reason"]

#: RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code.
MAX_REASON_BYTES = 123


class CloseCode(enum.IntEnum):
    """Close codes the server sends (see ``openapi/asyncapi.yaml``)."""

    NORMAL = 1000  # the client or the server ended the channel normally
    GOING_AWAY = 1001  # the server is shutting down (or the node stopped)
    TOO_SLOW = 4008  # the client did not read fast enough: messages dropped past the limit
    RATE_LIMITED = 4029  # the client kept sending above its frame-rate limit
    BAD_REQUEST = 4400  # malformed query parameters or path (pre-accept fallback)
    UNAUTHORIZED = 4401  # missing, invalid or used API key / ticket (pre-accept fallback)
    FORBIDDEN = 4403  # missing scope or origin not allowed (pre-accept fallback)
    UNAVAILABLE = 4503  # no node attached / node not running (pre-accept fallback)


def close_reason(text: str) -> str:
    """``text`` cut to what fits a close frame (123 UTF-8 bytes, whole characters)."""
    data = text.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")
