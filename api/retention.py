"""Bounded retention of received messages for long-poll readers.

curl users cannot hold a WebSocket, so the gateway keeps the last ``capacity`` received
messages in memory, each with a gateway-wide cursor (``seq``, strictly increasing from 1).
A reader asks for messages after its cursor and may wait for new ones; when its cursor
fell out of the buffer (older messages were evicted), the answer says so
(``gap = True``) and carries everything still retained, so the reader knows it lost data
instead of silently skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_MAX_RETAINED_BYTES",
    "MessagePage",
    "MessageRetention",
    "RetainedMessage",
]


@dataclass(frozen=True, slots=True)
class RetainedMessage:
    """One received message as the gateway keeps it."""

    seq: int
    peer_id: str
    stream: str
    data: bytes
    received_at: float


@dataclass(frozen=True, slots=True)
class MessagePage:
    """The answer to a long-poll read.

    Attributes:
        messages: matching messages after the cursor, oldest first.
        next_cursor: the cursor to pass as ``since`` next time.
        gap: True when messages after ``since`` were evicted before being read.
        oldest: seq of the oldest retained message (0 when empty).
    """

    messages: list[RetainedMessage]
    next_cursor: int
    gap: bool
    oldest: int


DEFAULT_MAX_RETAINED_BYTES = 64 * 1024 * 1024
"""Payload bytes retained at most by default (remote peers choose message sizes)."""


class MessageRetention:
    """A ring buffer of received messages with waiting readers.

    Args:
        capacity: messages kept at most (the oldest are evicted).
        max_bytes: payload bytes kept at most; the oldest messages are evicted until a
            new one fits (a single larger message is kept alone). Remote peers choose
            message sizes: without it, ``capacity`` messages of the largest size
            (10,000 x 1 MiB by default) could be held.
    """

    def __init__(
        self,
        capacity: int,
        *,
        max_bytes: int = DEFAULT_MAX_RETAINED_BYTES,
        first_seq: int = 1,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if first_seq < 1:
            raise ValueError("first_seq must be at least 1")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._buffer: deque[RetainedMessage] = deque()
        self._bytes = 0
        # The gateway starts each run at engine.events.run_cursor_base(), above every
        # cursor an earlier run issued, so such a cursor is recognised (see read()).
        self._first_seq = first_seq
        self._last_seq = first_seq - 1
        self._changed = asyncio.Event()
        self.evicted = 0

    @property
    def retained_bytes(self) -> int:
        """Payload bytes currently retained."""
        return self._bytes

    @property
    def last_seq(self) -> int:
        """Cursor of the newest message (0 before the first)."""
        return self._last_seq

    def __len__(self) -> int:
        return len(self._buffer)

    def append(
        self, peer_id: str, stream: str, data: bytes, received_at: float | None = None
    ) -> RetainedMessage:
        """Retain one message and wake waiting readers."""
        self._last_seq += 1
        message = RetainedMessage(
            seq=self._last_seq,
            peer_id=peer_id,
            stream=stream,
            data=data,
            received_at=time.time() if received_at is None else received_at,
        )
        buffer = self._buffer
        while buffer and (len(buffer) >= self.capacity or self._bytes + len(data) > self.max_bytes):
            self._bytes -= len(buffer.popleft().data)
            self.evicted += 1
        buffer.append(message)
        self._bytes += len(data)
        # Wake every waiter; each one re-checks its own filter.
        self._changed.set()
        self._changed = asyncio.Event()
        return message

    def read(
        self,
        since: int,
        *,
        limit: int,
        peer_id: str | None = None,
        stream: str | None = None,
    ) -> MessagePage:
        """Messages after ``since`` matching the filters, without waiting."""
        oldest = self._buffer[0].seq if self._buffer else 0
        # A cursor above the newest message or below this run's first one was issued by
        # an earlier run (before a restart): the reader may have missed messages, so read
        # from this run's start and report the gap. Cursor 0 means "from the start".
        start_cursor = self._first_seq - 1
        reset = since > self._last_seq or 0 < since < start_cursor
        since = start_cursor if reset else max(start_cursor, since)
        gap = reset or (bool(self._buffer) and since < oldest - 1)
        start = max(0, since - oldest + 1) if self._buffer else 0
        out: list[RetainedMessage] = []
        next_cursor = since
        for index in range(start, len(self._buffer)):
            message = self._buffer[index]
            if len(out) >= limit:
                break
            next_cursor = message.seq
            if peer_id is not None and message.peer_id != peer_id:
                continue
            if stream is not None and message.stream != stream:
                continue
            out.append(message)
        return MessagePage(out, next_cursor, gap, oldest)

    async def wait_read(
        self,
        since: int,
        *,
        wait: float,
        limit: int,
        peer_id: str | None = None,
        stream: str | None = None,
    ) -> MessagePage:
        """Like :meth:`read`, but wait up to ``wait`` seconds for a matching message."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait)
        page = self.read(since, limit=limit, peer_id=peer_id, stream=stream)
        while not page.messages and not page.gap:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
            page = self.read(page.next_cursor, limit=limit, peer_id=peer_id, stream=stream)
        return page

    async def consume(self, messages: AsyncIterator[Any]) -> None:
        """Retain every message of an engine subscription until it ends."""
        async for item in messages:
            self.append(str(item.peer_id), str(item.stream), bytes(item.data), item.received_at)
