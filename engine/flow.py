"""Per-stream flow control: high/low watermarks by message count *and* by bytes (asyncio).

A sender calls :meth:`FlowController.acquire` with the size of its message before
queueing it and the writer calls :meth:`FlowController.release` with the count and the
bytes once messages have left. Two budgets bound what is queued and not yet sent:

- messages: at most ``high_watermark`` pending;
- bytes: at most ``high_bytes`` pending. A message that does not fit waits, except when
  nothing is pending at all: a single message larger than the whole byte budget still
  goes through, alone (it is bounded by ``max_message_size``).

So, whatever the senders do, ``pending <= high_watermark`` and
``pending_bytes <= max(high_bytes, largest message)``.

Hysteresis: once a budget is exhausted (count reaches ``high_watermark``, bytes reach
``high_bytes``, or a message does not fit) the controller *pauses*; it resumes when the
writer has brought the count down to ``low_watermark`` **and** the bytes down to
``low_bytes``. At that point the waiting senders are handed their slots directly, in
arrival order, as many as the budgets take; the hand-over happens again at every later
release until no one waits (plan 0.2: the Go original woke only one waiter and left the
rest blocked forever; here no waiter is ever forgotten, and unlike a plain "wake
everybody" the budgets still hold while hundreds of senders wait). A newcomer never
overtakes a waiter.

Cancellation-safe: a waiter cancelled (or timed out) before it was granted a slot leaves
the queue; one cancelled after the grant, before it could resume, gives the slot back.
So ``pending`` / ``pending_bytes`` always equal acquisitions minus releases, whatever is
cancelled.

One asyncio loop, no lock: every method but :meth:`acquire`'s wait is synchronous.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque

from engine.errors import SendTimeoutError, StreamClosedError

__all__ = ["FlowController"]

_UNBOUNDED = sys.maxsize


class _Waiter:
    """A blocked sender: its future and the bytes it asks for."""

    __slots__ = ("fut", "size")

    def __init__(self, fut: asyncio.Future[None], size: int) -> None:
        self.fut = fut
        self.size = size


class FlowController:
    """Counts pending sends (messages and bytes) of one stream; blocks senders above them.

    Args:
        high_watermark: pending messages at which senders start waiting (>= 1).
        low_watermark: pending messages at which the waiting senders resume
            (0 <= low < high).
        high_bytes: pending bytes at which senders start waiting (>= 1); ``None`` means
            no byte budget.
        low_bytes: pending bytes at which waiting senders resume (0 <= low < high);
            default ``high_bytes // 2``.

    Raises:
        ValueError: a watermark is out of range.
    """

    __slots__ = (
        "_bytes",
        "_close_error",
        "_closed",
        "_paused",
        "_pending",
        "_waiters",
        "high_bytes",
        "high_watermark",
        "low_bytes",
        "low_watermark",
    )

    def __init__(
        self,
        high_watermark: int,
        low_watermark: int,
        *,
        high_bytes: int | None = None,
        low_bytes: int | None = None,
    ) -> None:
        if high_watermark < 1:
            raise ValueError(f"high_watermark must be >= 1, got {high_watermark}")
        if not 0 <= low_watermark < high_watermark:
            raise ValueError(
                f"low_watermark ({low_watermark}) must be >= 0 and below "
                f"high_watermark ({high_watermark})"
            )
        if high_bytes is None:
            if low_bytes is not None:
                raise ValueError("low_bytes watermark given without high_bytes")
            high_bytes = low_bytes = _UNBOUNDED
        else:
            if high_bytes < 1:
                raise ValueError(f"high_bytes watermark must be >= 1, got {high_bytes}")
            if low_bytes is None:
                low_bytes = high_bytes // 2
            if not 0 <= low_bytes < high_bytes:
                raise ValueError(
                    f"low_bytes watermark ({low_bytes}) must be >= 0 and below "
                    f"high_bytes ({high_bytes})"
                )
        self.high_watermark = high_watermark
        self.low_watermark = low_watermark
        self.high_bytes = high_bytes
        self.low_bytes = low_bytes
        self._pending = 0
        self._bytes = 0
        self._paused = False
        # Invariant: the deque is non-empty only while _paused is True (a newcomer never
        # overtakes a waiter). A future in it may be done (cancelled, timed out) until its
        # task resumes and removes it; every hand-over skips done futures, so such a
        # waiter never receives a slot.
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        self._close_error: BaseException | None = None  # None: a fresh StreamClosedError

    # -- state ----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages acquired and not yet released."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        """Bytes acquired and not yet released."""
        return self._bytes

    @property
    def paused(self) -> bool:
        """True while senders must wait (a budget is exhausted and not yet recovered)."""
        return self._paused

    @property
    def waiting(self) -> int:
        """Senders currently blocked in :meth:`acquire`."""
        return sum(1 for w in self._waiters if not w.fut.done())

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    # -- senders ----------------------------------------------------------------------------

    def try_acquire(self, size: int = 0) -> bool:
        """Take a slot for a message of ``size`` bytes if that needs no waiting.

        Args:
            size: the message's size in bytes (counted against the byte budget).

        Returns:
            True when a slot was taken, False when the sender would have to wait.

        Raises:
            StreamClosedError: (or the error given to :meth:`close`) after close.
        """
        self._check_open()
        if self._paused or not self._fits(size):
            return False
        self._take(size)
        return True

    async def acquire(self, timeout: float | None = None, size: int = 0) -> None:  # noqa: ASYNC109
        """Take a slot for a message of ``size`` bytes, waiting while the budgets are spent.

        Args:
            timeout: seconds to wait at most; ``None`` waits forever. (A parameter rather
                than ``asyncio.timeout`` around the call because ``node.send(timeout=)``
                passes it through; it costs one ``call_later`` handle, no task.)
            size: the message's size in bytes (counted against the byte budget).

        Raises:
            SendTimeoutError: no slot within ``timeout`` (nothing was taken).
            StreamClosedError: (or the error given to :meth:`close`) the controller was
                closed before or while waiting (nothing was taken).
            asyncio.CancelledError: the caller was cancelled (nothing was taken).
        """
        if self._closed:
            raise self._closed_error()
        if not self._paused:
            # The fast path, inlined (_fits + _take): it runs once per message sent.
            pending = self._pending
            nbytes = self._bytes + size
            if pending < self.high_watermark and (nbytes <= self.high_bytes or pending == 0):
                pending += 1
                self._pending = pending
                self._bytes = nbytes
                if pending >= self.high_watermark or nbytes >= self.high_bytes:
                    self._paused = True
                return
            self._paused = True  # does not fit: wait, and let no newcomer overtake
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        waiter = _Waiter(fut, size)
        self._waiters.append(waiter)
        timer = None
        if timeout is not None:
            timer = loop.call_later(max(0.0, timeout), self._expire, waiter, timeout)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                if fut.exception() is None:
                    # Granted a slot, cancelled before resuming: give it back.
                    self._release(1, size)
            else:
                self._forget(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self, count: int = 1, nbytes: int = 0) -> None:
        """Return ``count`` slots holding ``nbytes`` bytes; may let waiting senders through.

        Args:
            count: slots to return (>= 0, at most :attr:`pending`).
            nbytes: the bytes those slots were acquired with (>= 0, at most
                :attr:`pending_bytes`).

        Raises:
            ValueError: ``count`` or ``nbytes`` is negative or more than is pending (a
                caller bug; nothing changes).
        """
        pending = self._pending - count
        left = self._bytes - nbytes
        if count < 0 or pending < 0:
            raise ValueError(f"cannot release {count} of {self._pending} pending slots")
        if nbytes < 0 or left < 0:
            raise ValueError(f"cannot release {nbytes} of {self._bytes} pending bytes")
        self._pending = pending
        self._bytes = left
        if self._paused and pending <= self.low_watermark and left <= self.low_bytes:
            self._hand_over()

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
        for waiter in waiters:
            if not waiter.fut.done():
                waiter.fut.set_exception(self._closed_error())

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> BaseException:
        if self._close_error is not None:
            return self._close_error
        return StreamClosedError("stream closed")

    def _fits(self, size: int) -> bool:
        # One more message within the count budget, and its bytes within the byte budget
        # (or nothing pending at all: an oversized message goes through alone).
        return self._pending < self.high_watermark and (
            self._bytes + size <= self.high_bytes or self._pending == 0
        )

    def _take(self, size: int) -> None:
        self._pending += 1
        self._bytes += size
        if self._pending >= self.high_watermark or self._bytes >= self.high_bytes:
            self._paused = True

    def _release(self, count: int, nbytes: int) -> None:
        self._pending -= count
        self._bytes -= nbytes
        if self._paused and self._pending <= self.low_watermark and self._bytes <= self.low_bytes:
            self._hand_over()

    def _hand_over(self) -> None:
        # Below both low watermarks: grant waiters in arrival order while they fit. If the
        # head does not fit (a large message, bytes still pending), stay paused; every
        # later release comes back here, and at the latest an empty queue lets it pass.
        self._paused = False
        waiters = self._waiters
        while waiters:
            head = waiters[0]
            if head.fut.done():
                waiters.popleft()
                continue
            if not self._fits(head.size):
                self._paused = True
                return
            waiters.popleft()
            self._take(head.size)
            head.fut.set_result(None)
            if self._paused:
                return

    def _forget(self, waiter: _Waiter) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:  # already handed over by close()
            return
        # The head may have been the only one that did not fit: let the others try.
        if self._paused and self._pending <= self.low_watermark and self._bytes <= self.low_bytes:
            self._hand_over()

    def _expire(self, waiter: _Waiter, timeout: float) -> None:
        if waiter.fut.done():
            return
        self._forget(waiter)
        waiter.fut.set_exception(
            SendTimeoutError(
                f"no flow-control credit within {timeout} s",
                details={"timeout": timeout, "pending": self._pending},
            )
        )

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("paused" if self._paused else "open")
        budget = "" if self.high_bytes == _UNBOUNDED else f"/{self.high_bytes}B"
        return (
            f"<FlowController {state} pending={self._pending} bytes={self._bytes}{budget} "
            f"high={self.high_watermark} low={self.low_watermark} waiting={self.waiting}>"
        )
