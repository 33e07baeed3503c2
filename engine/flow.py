"""Per-stream flow control: high/low watermarks with hysteresis (asyncio).

A sender calls :meth:`FlowController.acquire` before queueing a message and the writer
calls :meth:`FlowController.release` once the message has left. Senders pass freely while
fewer than ``high_watermark`` messages are pending. When the count reaches the high
watermark the controller *pauses*: every later sender waits until releases bring the
count down to ``low_watermark``, and then **every** waiting sender is let through at once
(plan 0.2: the Go original woke only one of them and left the rest blocked forever). The
hand-over is direct: each released waiter is granted its slot before it even resumes, so
no wake-up can be lost and no newcomer can overtake a waiter. Since all waiters proceed,
``pending`` may exceed the high watermark by at most the number of senders that were
waiting; the controller pauses again at once in that case.

Cancellation-safe: a waiter cancelled (or timed out) before it was granted a slot leaves
the queue; one cancelled after the grant, before it could resume, gives the slot back.
So ``pending`` always equals acquisitions minus releases, whatever is cancelled.

One asyncio loop, no lock: every method but :meth:`acquire`'s wait is synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from engine.errors import SendTimeoutError, StreamClosedError

__all__ = ["FlowController"]


class FlowController:
    """Counts pending sends of one stream and blocks senders above the high watermark.

    Args:
        high_watermark: pending sends at which senders start waiting (>= 1).
        low_watermark: pending sends at which the waiting senders resume
            (0 <= low < high).

    Raises:
        ValueError: the watermarks are out of range.
    """

    __slots__ = (
        "_close_error",
        "_closed",
        "_paused",
        "_pending",
        "_waiters",
        "high_watermark",
        "low_watermark",
    )

    def __init__(self, high_watermark: int, low_watermark: int) -> None:
        if high_watermark < 1:
            raise ValueError(f"high_watermark must be >= 1, got {high_watermark}")
        if not 0 <= low_watermark < high_watermark:
            raise ValueError(
                f"low_watermark ({low_watermark}) must be >= 0 and below "
                f"high_watermark ({high_watermark})"
            )
        self.high_watermark = high_watermark
        self.low_watermark = low_watermark
        self._pending = 0
        self._paused = False
        # Invariant: the deque is non-empty only while _paused is True. A future in it may
        # be done (cancelled, timed out) until its task resumes and removes it; every
        # hand-over skips done futures, so such a waiter never receives a slot.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._close_error: BaseException | None = None  # None: a fresh StreamClosedError

    # -- state ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Acquired and not yet released."""
        return self._pending

    @property
    def paused(self) -> bool:
        """True while senders must wait (high watermark reached, low not yet)."""
        return self._paused

    @property
    def waiting(self) -> int:
        """Senders currently blocked in :meth:`acquire`."""
        return sum(1 for fut in self._waiters if not fut.done())

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    # -- senders ----------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot if that needs no waiting.

        Returns:
            True when a slot was taken, False when the controller is paused.

        Raises:
            StreamClosedError: (or the error given to :meth:`close`) after close.
        """
        self._check_open()
        if self._paused:
            return False
        self._take()
        return True

    async def acquire(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Take a slot, waiting while the controller is paused.

        Args:
            timeout: seconds to wait at most; ``None`` waits forever. (A parameter rather
                than ``asyncio.timeout`` around the call because ``node.send(timeout=)``
                passes it through; it costs one ``call_later`` handle, no task.)

        Raises:
            SendTimeoutError: no slot within ``timeout`` (nothing was taken).
            StreamClosedError: (or the error given to :meth:`close`) the controller was
                closed before or while waiting (nothing was taken).
            asyncio.CancelledError: the caller was cancelled (nothing was taken).
        """
        self._check_open()
        if not self._paused:
            self._take()
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        timer = None
        if timeout is not None:
            timer = loop.call_later(max(0.0, timeout), self._expire, fut, timeout)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                if fut.exception() is None:
                    # Granted a slot, cancelled before resuming: give it back.
                    self._release(1)
            else:
                self._forget(fut)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self, count: int = 1) -> None:
        """Return ``count`` slots; at or below the low watermark every waiter proceeds.

        Args:
            count: slots to return (>= 0, at most :attr:`pending`).

        Raises:
            ValueError: ``count`` is negative or more than is pending (a caller bug;
                nothing changes).
        """
        if count < 0 or count > self._pending:
            raise ValueError(f"cannot release {count} of {self._pending} pending slots")
        self._release(count)

    def close(self, error: BaseException | None = None) -> None:
        """Fail every waiter and every later acquire. Idempotent (the first error wins).

        Args:
            error: the exception waiters and later acquires get (a fresh
                :class:`~engine.errors.StreamClosedError` by default).
        """
        if self._closed:
            return
        self._closed = True
        self._close_error = error
        waiters, self._waiters = self._waiters, deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(self._closed_error())

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> BaseException:
        if self._close_error is not None:
            return self._close_error
        return StreamClosedError("stream closed")

    def _take(self) -> None:
        self._pending += 1
        if self._pending >= self.high_watermark:
            self._paused = True

    def _release(self, count: int) -> None:
        self._pending -= count
        if self._paused and self._pending <= self.low_watermark:
            self._paused = False
            # Hand every waiter its slot now, in arrival order (plan 0.2: all of them).
            waiters, self._waiters = self._waiters, deque()
            for fut in waiters:
                if not fut.done():
                    self._take()
                    fut.set_result(None)

    def _forget(self, fut: asyncio.Future[None]) -> None:
        # The pause itself stays until the low watermark even if nobody waits any more.
        with contextlib.suppress(ValueError):  # already handed over by close()
            self._waiters.remove(fut)

    def _expire(self, fut: asyncio.Future[None], timeout: float) -> None:
        if fut.done():
            return
        self._forget(fut)
        fut.set_exception(
            SendTimeoutError(
                f"no flow-control credit within {timeout} s",
                details={"timeout": timeout, "pending": self._pending},
            )
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("paused" if self._paused else "open")
        return (
            f"<FlowController {state} pending={self._pending} "
            f"high={self.high_watermark} low={self.low_watermark} waiting={self.waiting}>"
        )
