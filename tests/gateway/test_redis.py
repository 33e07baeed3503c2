"""Redis-backed limiter and tickets (needs GLUEBERRY_TEST_REDIS_URL)."""

from __future__ import annotations

import secrets

import pytest

from api.auth import Principal, RedisTicketStore, Scope
from api.ratelimit import RedisRateLimiter

from .conftest import NO_REDIS, REDIS_URL

pytestmark = [pytest.mark.redis, pytest.mark.skipif(not REDIS_URL, reason=NO_REDIS)]


async def test_two_limiters_share_one_budget() -> None:
    prefix = f"glueberry:test:{secrets.token_hex(4)}:"
    a = RedisRateLimiter(REDIS_URL, prefix=prefix, fail_open=False)
    b = RedisRateLimiter(REDIS_URL, prefix=prefix, fail_open=False)
    try:
        results = []
        for i in range(6):
            limiter = a if i % 2 == 0 else b
            results.append(await limiter.hit("key:shared", 0.001, 4))
        assert [r.allowed for r in results] == [True, True, True, True, False, False]
        assert [r.remaining for r in results[:4]] == [3, 2, 1, 0]
        assert results[-1].retry_after > 1
        # Other keys are independent.
        assert (await a.hit("key:other", 0.001, 4)).allowed
    finally:
        await a.aclose()
        await b.aclose()


async def test_unreachable_redis_fails_open() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
    try:
        decision = await limiter.hit("key:x", 1.0, 5)
        assert decision.allowed
        assert not await limiter.ping()
    finally:
        await limiter.aclose()


async def test_ticket_redeemed_once_across_stores() -> None:
    prefix = f"glueberry:test:{secrets.token_hex(4)}:"
    a = RedisTicketStore(REDIS_URL, prefix=prefix)
    b = RedisTicketStore(REDIS_URL, prefix=prefix)
    try:
        ticket, _ = await a.issue(Principal("k1", "n", frozenset({Scope.MONITOR})), ttl=10)
        principal = await b.redeem(ticket)
        assert principal is not None
        assert principal.key_id == "k1"
        assert principal.scopes == {Scope.MONITOR}
        assert principal.via == "ticket"
        assert await a.redeem(ticket) is None
    finally:
        await a.aclose()
        await b.aclose()
