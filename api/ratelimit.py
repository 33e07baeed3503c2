"""Token-bucket rate limiting, in memory or shared through Redis.

The bucket arithmetic is one pure function, :func:`take_token` (no clock, no I/O), used by
:class:`MemoryRateLimiter` and mirrored line for line by the Lua script of
:class:`RedisRateLimiter`, which runs atomically inside Redis (with Redis' own clock) so
several gateway replicas share one budget per key without races.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; a
request takes one token or is refused with the time until one is available.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Protocol

__all__ = [
    "REDIS_TIMEOUT",
    "MemoryRateLimiter",
    "RateDecision",
    "RateLimiter",
    "RedisRateLimiter",
    "rate_limit_headers",
    "take_token",
]

log = logging.getLogger("glueberry.api.ratelimit")

REDIS_TIMEOUT = 1.0
"""Seconds a Redis connect or command may take (rate limits and tickets)."""


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one request against a bucket.

    Attributes:
        allowed: whether the request may proceed.
        limit: the bucket size (burst).
        remaining: whole tokens left after this request.
        retry_after: seconds until one token is available (0 when allowed).
        reset_after: seconds until the bucket is full again.
        window: seconds a full bucket takes to refill (``burst / rate``), for the policy.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    window: float


def take_token(
    tokens: float | None, stamp: float, now: float, rate: float, burst: int
) -> tuple[float, RateDecision]:
    """Refill a bucket to ``now`` and try to take one token.

    Args:
        tokens: tokens in the bucket at ``stamp``; ``None`` for a new (full) bucket.
        stamp: time of the last update (seconds, any monotonic origin).
        now: current time on the same clock.
        rate: refill rate in tokens per second (> 0).
        burst: bucket capacity (>= 1).

    Returns:
        The bucket's new token count (stamped ``now``) and the decision.
    """
    level = float(burst) if tokens is None else tokens
    level = min(float(burst), level + max(0.0, now - stamp) * rate)
    if level >= 1.0:
        level -= 1.0
        allowed, retry_after = True, 0.0
    else:
        allowed, retry_after = False, (1.0 - level) / rate
    decision = RateDecision(
        allowed=allowed,
        limit=burst,
        remaining=int(level),
        retry_after=retry_after,
        reset_after=(burst - level) / rate,
        window=burst / rate,
    )
    return level, decision


def rate_limit_headers(decision: RateDecision) -> dict[str, str]:
    """``RateLimit-*`` headers (IETF draft) and, when refused, ``Retry-After``."""
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset_after)),
        "RateLimit-Policy": f"{decision.limit};w={max(1, math.ceil(decision.window))}",
    }
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
    return headers


class RateLimiter(Protocol):
    """Where buckets live."""

    async def hit(self, key: str, rate: float, burst: int) -> RateDecision:
        """Take one token from bucket ``key`` (created full on first use)."""
        ...

    async def exhausted(self, key: str, rate: float, burst: int) -> RateDecision | None:
        """The refusal a request on bucket ``key`` would get now, without taking a token.

        ``None`` when the bucket has a token (or is unknown). Lets authentication refuse
        a caller whose failure budget is spent *before* checking its credentials, so a
        rate-limited caller learns nothing about whether a guessed key is valid.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryRateLimiter:
    """Buckets in this process (the default, one gateway replica).

    Args:
        max_keys: buckets kept at most; the least recently used is evicted (an evicted
            bucket comes back full, which only ever errs on the generous side).
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(self, max_keys: int = 100_000, clock: Any = time.monotonic) -> None:
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    async def hit(self, key: str, rate: float, burst: int) -> RateDecision:
        """Take one token from bucket ``key``."""
        now = float(self._clock())
        state = self._buckets.pop(key, None)
        tokens, stamp = state if state is not None else (None, now)
        level, decision = take_token(tokens, stamp, now, rate, burst)
        self._buckets[key] = (level, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return decision

    async def exhausted(self, key: str, rate: float, burst: int) -> RateDecision | None:
        """The refusal bucket ``key`` would give now (no token taken), or ``None``."""
        state = self._buckets.get(key)
        if state is None:
            return None
        now = float(self._clock())
        _, decision = take_token(state[0], state[1], now, rate, burst)
        return None if decision.allowed else decision

    async def aclose(self) -> None:
        """Nothing to release."""
        self._buckets.clear()


# The same arithmetic as take_token, atomically in Redis with Redis' clock. Numbers go
# back as strings: Redis converts Lua numbers to integers.
_LUA_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local level = tonumber(state[1])
local stamp = tonumber(state[2])
if level == nil or stamp == nil then
  level = burst
  stamp = now
end
level = math.min(burst, level + math.max(0, now - stamp) * rate)
local allowed = 0
local retry = 0
if level >= 1 then
  level = level - 1
  allowed = 1
else
  retry = (1 - level) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(level), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(level), tostring(retry)}
"""


class RedisRateLimiter:
    """Buckets in Redis, shared by every gateway replica using the same Redis.

    Args:
        url: ``redis://`` URL.
        prefix: key prefix, so several deployments can share one Redis.
        fail_open: when Redis cannot be reached, keep serving (availability of the API
            matters more than exact budgets) with this replica's own in-memory buckets
            instead of failing the request. Budgets stay enforced per replica, so an
            outage of Redis does not lift the limit on guessing keys. The outage is
            logged once, and its end too (not once per request: that would let clients
            flood the log).
        max_refusals: refusals remembered locally for :meth:`exhausted` (bounded; the
            oldest are forgotten first).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "glueberry:rl:",
        fail_open: bool = True,
        max_refusals: int = 10_000,
    ) -> None:
        import redis.asyncio as aioredis

        # Bounded waits: an unreachable (blackholed) Redis must not hang every request
        # for the OS connect timeout.
        self._redis: Any = aioredis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        self._script: Any = self._redis.register_script(_LUA_SCRIPT)
        self._prefix = prefix
        self._fail_open = fail_open
        # key -> (monotonic time a token is available again, the refusal): answered
        # locally, without a Redis round trip on every authenticated request.
        self._refused: OrderedDict[str, tuple[float, RateDecision]] = OrderedDict()
        self._max_refusals = max_refusals
        self._fallback = MemoryRateLimiter()
        self._degraded = False

    async def hit(self, key: str, rate: float, burst: int) -> RateDecision:
        """Take one token from bucket ``key`` atomically in Redis."""
        from redis.exceptions import RedisError

        try:
            allowed, level_text, retry_text = await self._script(
                keys=[self._prefix + key], args=[repr(float(rate)), str(int(burst))]
            )
        except (RedisError, OSError) as exc:
            if not self._fail_open:
                raise
            if not self._degraded:
                self._degraded = True
                log.warning(
                    "rate limiter: redis unavailable (%s); using this replica's own buckets",
                    type(exc).__name__,
                )
            decision = await self._fallback.hit(key, rate, burst)
            self._remember(key, decision)
            return decision
        if self._degraded:
            self._degraded = False
            log.info("rate limiter: redis reachable again; budgets are shared again")
        level = float(level_text)
        decision = RateDecision(
            allowed=bool(int(allowed)),
            limit=burst,
            remaining=int(level),
            retry_after=float(retry_text),
            reset_after=(burst - level) / rate,
            window=burst / rate,
        )
        self._remember(key, decision)
        return decision

    def _remember(self, key: str, decision: RateDecision) -> None:
        self._refused.pop(key, None)
        if not decision.allowed:
            self._refused[key] = (time.monotonic() + decision.retry_after, decision)
            while len(self._refused) > self._max_refusals:
                self._refused.popitem(last=False)

    async def exhausted(self, key: str, rate: float, burst: int) -> RateDecision | None:
        """The last refusal of bucket ``key`` on this replica while it lasts, or ``None``.

        Only refusals this replica saw are known (no Redis round trip): across replicas
        a spent budget is noticed by each one at its next charge of the bucket.
        """
        entry = self._refused.get(key)
        if entry is None:
            return None
        until, decision = entry
        left = until - time.monotonic()
        if left <= 0:
            del self._refused[key]
            return None
        return replace(decision, retry_after=left)

    async def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
