"""Per-connection rate limit of inbound WebSocket frames (no I/O).

A token bucket per connection (the same arithmetic as the HTTP limiter,
:func:`api.ratelimit.take_token`): ``rate`` frames per second, bursts of ``burst``. A
frame over the limit is refused with a 429-equivalent control frame (code
``rate_limited``, ``retry_after`` seconds) and not acted upon; after ``close_after``
refusals in a row the client is persisting, and the server closes with
:attr:`~api.channels.codes.CloseCode.RATE_LIMITED` (4029).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from api.ratelimit import take_token

__all__ = ["FrameRateLimiter", "FrameVerdict"]


@dataclass(frozen=True, slots=True)
class FrameVerdict:
    """The decision on one inbound frame.

    Attributes:
        allowed: act on the frame.
        retry_after: seconds until a frame would be allowed (0 when allowed).
        close: refusals persisted: close the connection with 4029.
    """

    allowed: bool
    retry_after: float = 0.0
    close: bool = False


_ALLOWED = FrameVerdict(True)


class FrameRateLimiter:
    """Token bucket of one connection.

    Args:
        rate: frames per second (> 0).
        burst: bucket size (>= 1).
        close_after: consecutive refused frames after which to close (>= 1).
        clock: monotonic clock in seconds.

    Raises:
        ValueError: a bound is out of range.
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "close_after", "rate", "refused_in_row")

    def __init__(
        self,
        rate: float,
        burst: int,
        close_after: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or close_after < 1:
            raise ValueError("rate must be > 0, burst and close_after >= 1")
        self.rate = rate
        self.burst = burst
        self.close_after = close_after
        self._clock = clock
        self._tokens: float | None = None
        self._stamp = clock()
        self.refused_in_row = 0

    def check(self) -> FrameVerdict:
        """Take a token for one inbound frame."""
        now = self._clock()
        level, decision = take_token(self._tokens, self._stamp, now, self.rate, self.burst)
        self._tokens, self._stamp = level, now
        if decision.allowed:
            self.refused_in_row = 0
            return _ALLOWED
        self.refused_in_row += 1
        return FrameVerdict(
            False, decision.retry_after, close=self.refused_in_row >= self.close_after
        )
