"""Exponential backoff with jitter, as a plain sans-IO class.

The delay before retry number ``n`` (1-based) is::

    raw(n)   = min(max_delay, base_delay * 2 ** (n - 1))
    delay(n) = clamp(raw(n) * (1 + jitter * u), 0, max_delay),   u uniform in [-1, 1)

so the un-jittered delay doubles until it reaches ``max_delay`` and stays there, and the
jitter spreads simultaneous retries of many peers (thundering herd) by at most
``±jitter`` of the raw delay without ever exceeding ``max_delay``. After ``max_attempts``
delays have been handed out, :meth:`Backoff.next_delay` returns ``None``: the caller
gives up. Nothing here sleeps or reads a clock; the random source is injectable so tests
are deterministic.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Config

__all__ = ["Backoff"]

_system_random = secrets.SystemRandom()


class Backoff:
    """Exponential backoff state for one retrying thing (e.g. one peer's reconnects).

    Args:
        base_delay: first delay in seconds (> 0).
        max_delay: cap of every delay in seconds (>= base_delay).
        max_attempts: delays handed out before giving up; ``0`` = never retry,
            ``None`` = retry forever.
        jitter: relative jitter in ``[0, 1]``; 0 gives exact powers of two.
        random: source of floats in ``[0, 1)``; defaults to the system CSPRNG
            (unpredictable, so peers cannot be herded into retrying in sync).

    Raises:
        ValueError: an argument is out of range.
    """

    __slots__ = ("_attempts", "_random", "base_delay", "jitter", "max_attempts", "max_delay")

    def __init__(
        self,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        max_attempts: int | None = 10,
        jitter: float = 0.2,
        *,
        random: Callable[[], float] | None = None,
    ) -> None:
        if not (math.isfinite(base_delay) and base_delay > 0):
            raise ValueError(f"base_delay must be a positive number, got {base_delay!r}")
        if not (math.isfinite(max_delay) and max_delay >= base_delay):
            raise ValueError(f"max_delay ({max_delay!r}) must be >= base_delay ({base_delay!r})")
        if max_attempts is not None and max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0 or None, got {max_attempts!r}")
        if not (0.0 <= jitter <= 1.0):
            raise ValueError(f"jitter must be within [0, 1], got {jitter!r}")
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.max_attempts = max_attempts
        self.jitter = float(jitter)
        self._random: Callable[[], float] = random if random is not None else _system_random.random
        self._attempts = 0

    @classmethod
    def from_config(cls, config: Config, *, random: Callable[[], float] | None = None) -> Backoff:
        """The reconnect backoff described by ``config.reconnect_*``.

        Args:
            config: the engine configuration.
            random: optional random source (see the class docstring).

        Returns:
            A fresh backoff (0 attempts).
        """
        return cls(
            base_delay=config.reconnect_base_delay,
            max_delay=config.reconnect_max_delay,
            max_attempts=config.reconnect_max_attempts,
            jitter=config.reconnect_jitter,
            random=random,
        )

    @property
    def attempts(self) -> int:
        """Delays handed out since the last :meth:`reset` (the current retry number)."""
        return self._attempts

    @property
    def exhausted(self) -> bool:
        """True when :meth:`next_delay` would return ``None``."""
        return self.max_attempts is not None and self._attempts >= self.max_attempts

    def raw_delay(self, attempt: int) -> float:
        """The un-jittered delay of retry number ``attempt`` (1-based), capped.

        Args:
            attempt: retry number, >= 1.

        Returns:
            ``min(max_delay, base_delay * 2 ** (attempt - 1))``.

        Raises:
            ValueError: ``attempt`` < 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        # 2.0 ** 1024 overflows; any exponent that large is past every finite cap anyway.
        if attempt > 1024:
            return self.max_delay
        return min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))

    def next_delay(self) -> float | None:
        """Advance to the next retry and return its delay in seconds.

        Returns:
            The delay (``0 <= delay <= max_delay``), or ``None`` once ``max_attempts``
            delays were handed out (the attempt counter then stays where it is).
        """
        if self.exhausted:
            return None
        self._attempts += 1
        raw = self.raw_delay(self._attempts)
        if self.jitter == 0.0:
            return raw
        u = self._random() * 2.0 - 1.0  # [-1, 1)
        return min(self.max_delay, max(0.0, raw * (1.0 + self.jitter * u)))

    def reset(self) -> None:
        """Start over (call after a success): the next delay is ``base_delay`` again."""
        self._attempts = 0

    def __repr__(self) -> str:
        return (
            f"Backoff(base_delay={self.base_delay}, max_delay={self.max_delay}, "
            f"max_attempts={self.max_attempts}, jitter={self.jitter}, "
            f"attempts={self._attempts})"
        )
