"""Key guessing under the rate limit, IPv6 client buckets, tickets (security review)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from api.ratelimit import MemoryRateLimiter
from models import ApiKeyRepository

from .conftest import AppFactory, assert_error_shape, new_key

_BAD = {"Authorization": "Bearer gb_0123456789abcdef_" + "x" * 43}


async def test_a_spent_ip_learns_nothing_about_a_guessed_key(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    _, client = await make_client(rate_limit_per_ip=0.001, rate_limit_burst_per_ip=2)
    for _ in range(2):
        assert (await client.get("/v1/node", headers=_BAD)).status_code == 401
    assert (await client.get("/v1/node", headers=_BAD)).status_code == 429
    # A valid key from the same address gets the same answer as an invalid one: the
    # guess is not even checked, so 200-vs-429 cannot confirm a guessed key.
    valid = await new_key(api_keys, "monitor")
    response = await client.post("/v1/tickets", headers=valid)
    assert_error_shape(response, 429, "rate_limited")
    assert response.json()["error"]["details"]["bucket"] == "ip"
    assert "retry-after" in response.headers


async def test_a_spent_ip_cannot_probe_tickets_either(make_client: AppFactory) -> None:
    _, client = await make_client(rate_limit_per_ip=0.001, rate_limit_burst_per_ip=1)
    assert (await client.get("/v1/events/stream?ticket=gbt_nope")).status_code == 401
    response = await client.get("/v1/events/stream?ticket=gbt_nope")
    assert_error_shape(response, 429, "rate_limited")


async def test_valid_keys_are_unaffected_while_the_ip_budget_lasts(
    make_client: AppFactory, api_keys: ApiKeyRepository
) -> None:
    _, client = await make_client(rate_limit_per_ip=0.001, rate_limit_burst_per_ip=2)
    valid = await new_key(api_keys, "monitor")
    assert (await client.get("/v1/node", headers=_BAD)).status_code == 401
    for _ in range(5):  # valid requests charge the key's bucket, not the IP's
        assert (await client.post("/v1/tickets", headers=valid)).status_code == 201


async def test_ipv6_clients_share_the_budget_of_their_64(make_client: AppFactory) -> None:
    limiter = MemoryRateLimiter()
    _, client = await make_client(
        rate_limit_per_ip=0.001,
        rate_limit_burst_per_ip=2,
        rate_limiter=limiter,
        client_ip="2001:db8:0:1::1",
    )
    assert (await client.get("/v1/node", headers=_BAD)).status_code == 401
    assert (await client.get("/v1/node", headers=_BAD)).status_code == 401
    assert await limiter.exhausted("ip:2001:db8:0:1::/64", 0.001, 2) is not None
    assert await limiter.exhausted("ip:2001:db8:0:2::/64", 0.001, 2) is None


async def test_memory_limiter_exhausted_takes_no_token() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    assert await limiter.exhausted("k", 1.0, 1) is None  # unknown bucket: full
    assert (await limiter.hit("k", 1.0, 1)).allowed
    refusal = await limiter.exhausted("k", 1.0, 1)
    assert refusal is not None
    assert refusal.retry_after == 1.0
    now[0] = 1.0
    assert await limiter.exhausted("k", 1.0, 1) is None
    assert (await limiter.hit("k", 1.0, 1)).allowed  # exhausted() did not spend it


async def test_redis_limiter_remembers_refusals_locally_and_boundedly() -> None:
    from api.ratelimit import RedisRateLimiter

    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", max_refusals=2)
    answers = {"a": [0, "0.5", "30"], "b": [0, "0", "30"], "c": [0, "0", "30"], "d": [1, "1", "0"]}

    async def script(*, keys: list[str], args: list[str]) -> list[object]:
        return answers[keys[0].removeprefix("glueberry:rl:")]

    limiter._script = script  # Redis itself is out of scope here: only the local cache
    try:
        assert await limiter.exhausted("a", 1.0, 2) is None
        assert not (await limiter.hit("a", 1.0, 2)).allowed
        refusal = await limiter.exhausted("a", 1.0, 2)
        assert refusal is not None
        assert 0 < refusal.retry_after <= 30
        for key in ("b", "c"):
            await limiter.hit(key, 1.0, 2)
        assert len(limiter._refused) == 2  # bounded: "a" was forgotten first
        assert await limiter.exhausted("a", 1.0, 2) is None
        answers["b"] = [1, "1", "0"]
        assert (await limiter.hit("b", 1.0, 2)).allowed
        assert await limiter.exhausted("b", 1.0, 2) is None  # an allowed hit clears it
    finally:
        await limiter.aclose()


async def test_redis_outage_keeps_budgets_per_replica_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from api.ratelimit import RedisRateLimiter

    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with caplog.at_level(logging.INFO, logger="glueberry.api.ratelimit"):
            decisions = [await limiter.hit("ip:192.0.2.1", 0.001, 2) for _ in range(5)]
        assert [d.allowed for d in decisions] == [True, True, False, False, False]
        assert await limiter.exhausted("ip:192.0.2.1", 0.001, 2) is not None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "127.0.0.1" not in warnings[0].getMessage()
    finally:
        await limiter.aclose()


async def test_redis_clients_have_bounded_timeouts() -> None:
    from api.auth import RedisTicketStore
    from api.ratelimit import REDIS_TIMEOUT, RedisRateLimiter

    limiter = RedisRateLimiter("redis://127.0.0.1:1/0")
    tickets = RedisTicketStore("redis://127.0.0.1:1/0")
    try:
        for client in (limiter._redis, tickets._redis):
            kwargs = client.connection_pool.connection_kwargs
            assert kwargs["socket_timeout"] == REDIS_TIMEOUT
            assert kwargs["socket_connect_timeout"] == REDIS_TIMEOUT
    finally:
        await limiter.aclose()
        await tickets.aclose()


async def test_one_key_cannot_flush_the_tickets_of_others() -> None:
    from api.auth import MemoryTicketStore, Principal, Scope

    store = MemoryTicketStore(max_tickets=1000, clock=lambda: 0.0, max_per_key=5)
    victim = Principal("victim", "v", frozenset({Scope.MONITOR}))
    flooder = Principal("flooder", "f", frozenset({Scope.MONITOR}))
    kept, _ = await store.issue(victim, ttl=30)
    flood = [(await store.issue(flooder, ttl=30))[0] for _ in range(2000)]
    assert await store.redeem(kept) == replace(victim, via="ticket")
    assert await store.redeem(flood[0]) is None  # the flooder lost its own oldest
    assert await store.redeem(flood[-1]) is not None
    assert len(store._tickets) == 4
    assert set(store._by_key) == {"flooder"}


async def test_ticket_store_stays_bounded_overall() -> None:
    from api.auth import MemoryTicketStore, Principal, Scope

    store = MemoryTicketStore(max_tickets=10, clock=lambda: 0.0, max_per_key=100)
    for i in range(50):
        await store.issue(Principal(f"k{i}", "n", frozenset({Scope.MONITOR})), ttl=30)
    assert len(store._tickets) == 10
    assert sum(len(v) for v in store._by_key.values()) == 10
