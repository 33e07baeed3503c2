"""Sans-IO parts of the gateway's realtime channels (WebSocket and SSE).

Control-frame schemas (:mod:`~api.channels.frames`), close codes
(:mod:`~api.channels.codes`), lag/drop accounting of outgoing messages
(:mod:`~api.channels.outbound`), the inbound frame rate limit
(:mod:`~api.channels.inbound`), the idempotency-key cache
(:mod:`~api.channels.idempotency`), the event feed shared by WebSocket and SSE
(:mod:`~api.channels.event_feed`) and SSE encoding (:mod:`~api.channels.sse`).
The routes in ``api/routes/ws_*.py`` only do the I/O around them.
"""

from api.channels.codes import CloseCode, close_reason
from api.channels.event_feed import EventCursor, event_feed, parse_filter
from api.channels.frames import FrameError, encode
from api.channels.idempotency import IdempotencyCache, KeyState
from api.channels.inbound import FrameRateLimiter, FrameVerdict
from api.channels.outbound import OutboundTracker
from api.channels.sse import sse_event

__all__ = [
    "CloseCode",
    "EventCursor",
    "FrameError",
    "FrameRateLimiter",
    "FrameVerdict",
    "IdempotencyCache",
    "KeyState",
    "OutboundTracker",
    "close_reason",
    "encode",
    "event_feed",
    "parse_filter",
    "sse_event",
]
