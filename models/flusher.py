"""``PeriodicFlusher``: the one background task that writes batched hot data.

Started and stopped explicitly (no task outlives ``stop``); a flush can be requested
early with :meth:`PeriodicFlusher.wake`; :meth:`PeriodicFlusher.wait_flushed` lets tests
and shutdown code wait for a flush without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from engine.errors import StorageError

__all__ = ["PeriodicFlusher"]

_log = logging.getLogger(__name__)


class PeriodicFlusher:
    """Call ``flush`` every ``interval`` seconds (or sooner when woken) until stopped.

    Args:
        flush: the coroutine function writing the batch; an error is logged and the
            batch retried at the next round, it never kills the task.
        interval: seconds between rounds.
        name: task name (for debugging).
    """

    def __init__(self, flush: Callable[[], Awaitable[None]], interval: float, *, name: str) -> None:
        self._flush = flush
        self._interval = interval
        self._name = name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._rounds = 0
        self._round_done = asyncio.Condition()

    @property
    def running(self) -> bool:
        """Whether the task runs."""
        return self._task is not None and not self._task.done()

    @property
    def rounds(self) -> int:
        """Completed flush rounds (successful or not)."""
        return self._rounds

    def start(self) -> None:
        """Start the task (idempotent); needs a running event loop."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    def wake(self) -> None:
        """Ask for a flush round now."""
        self._wake.set()

    async def wait_flushed(self, rounds: int) -> None:
        """Wait until at least ``rounds`` rounds completed (wrap in ``asyncio.timeout``)."""
        async with self._round_done:
            await self._round_done.wait_for(lambda: self._rounds >= rounds)

    async def stop(self) -> None:
        """Stop the task and wait for it (the caller does the final flush)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await task
        finally:
            if not task.done():  # pragma: no cover - only when stop() itself is cancelled
                task.cancel()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._flush()
            except StorageError as exc:
                _log.warning("%s: flush failed, retrying next round: %s", self._name, exc)
            except Exception:  # a bug must not stop hot data from being written later
                _log.exception("%s: unexpected flush error, retrying next round", self._name)
            self._rounds += 1
            async with self._round_done:
                self._round_done.notify_all()
