"""Server-Sent Events encoding of channel frames (no I/O).

Each frame becomes one SSE event whose ``event:`` name is the frame's ``type`` and whose
``data:`` line is the frame's JSON (one line: JSON text has no raw newlines). Frames that
move the client's cursor carry an ``id:`` line, so a browser's ``EventSource`` resumes
with ``Last-Event-ID`` after a reconnection: ``event`` frames (their id), ``snapshot``
and ``heartbeat`` frames (the cursor they stand for).
"""

from __future__ import annotations

from typing import Any

from api.channels.frames import encode

__all__ = ["RETRY_MS", "comment", "sse_event"]

#: Reconnection delay suggested to EventSource clients (first bytes of the stream).
RETRY_MS = 2000


def _cursor(frame: dict[str, Any]) -> int | None:
    kind = frame.get("type")
    if kind == "event":
        return int(frame["id"])
    if kind in ("snapshot", "heartbeat"):
        return int(frame["last_event_id"])
    return None


def sse_event(frame: dict[str, Any]) -> str:
    """The SSE text of one frame."""
    cursor = _cursor(frame)
    head = f"id: {cursor}\n" if cursor is not None else ""
    return f"{head}event: {frame['type']}\ndata: {encode(frame)}\n\n"


def comment(text: str = "") -> str:
    """An SSE comment line (ignored by clients; flushes proxies)."""
    return f": {text}\n\n"
