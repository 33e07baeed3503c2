"""Unit and property tests of engine.backoff.Backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backoff import Backoff
from engine.config import Config


def test_doubles_until_cap_without_jitter() -> None:
    b = Backoff(base_delay=1.0, max_delay=10.0, max_attempts=6, jitter=0.0)
    assert [b.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, None]
    assert b.attempts == 6
    assert b.exhausted


def test_reset_starts_over() -> None:
    b = Backoff(base_delay=0.5, max_delay=100.0, max_attempts=2, jitter=0.0)
    assert b.next_delay() == 0.5
    assert b.next_delay() == 1.0
    assert b.next_delay() is None
    b.reset()
    assert b.attempts == 0
    assert not b.exhausted
    assert b.next_delay() == 0.5


def test_zero_attempts_never_retries() -> None:
    b = Backoff(max_attempts=0)
    assert b.exhausted
    assert b.next_delay() is None
    assert b.attempts == 0


def test_unlimited_attempts() -> None:
    b = Backoff(base_delay=1.0, max_delay=5.0, max_attempts=None, jitter=0.0)
    delays = [b.next_delay() for _ in range(5000)]
    assert delays[-1] == 5.0
    assert not b.exhausted
    assert b.attempts == 5000


def test_jitter_uses_injected_random() -> None:
    values = iter([0.0, 0.5, 0.999999])
    b = Backoff(
        base_delay=10.0,
        max_delay=1000.0,
        max_attempts=None,
        jitter=0.5,
        random=lambda: next(values),
    )
    assert b.next_delay() == pytest.approx(5.0)  # u = -1 -> 10 * 0.5
    assert b.next_delay() == pytest.approx(20.0)  # u = 0  -> 20
    assert b.next_delay() == pytest.approx(60.0, rel=1e-5)  # u ~ 1 -> 40 * 1.5


def test_jitter_never_exceeds_cap() -> None:
    b = Backoff(base_delay=4.0, max_delay=10.0, max_attempts=None, jitter=1.0, random=lambda: 0.99)
    assert b.next_delay() == pytest.approx(4.0 * 1.98)
    assert b.next_delay() == 10.0  # 8 * 1.98 clamped to the cap


def test_huge_attempt_numbers_do_not_overflow() -> None:
    b = Backoff(base_delay=3.0, max_delay=7.0, jitter=0.0)
    assert b.raw_delay(10**6) == 7.0
    assert b.raw_delay(1025) == 7.0
    assert b.raw_delay(1024) == 7.0
    with pytest.raises(ValueError, match="1-based"):
        b.raw_delay(0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_delay": 0.0},
        {"base_delay": -1.0},
        {"base_delay": float("nan")},
        {"base_delay": 5.0, "max_delay": 4.0},
        {"max_delay": float("inf")},
        {"max_attempts": -1},
        {"jitter": -0.1},
        {"jitter": 1.5},
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_from_config() -> None:
    cfg = Config(
        reconnect_base_delay=2.0,
        reconnect_max_delay=30.0,
        reconnect_max_attempts=4,
        reconnect_jitter=0.0,
    )
    b = Backoff.from_config(cfg)
    assert (b.base_delay, b.max_delay, b.max_attempts, b.jitter) == (2.0, 30.0, 4, 0.0)
    assert [b.next_delay() for _ in range(5)] == [2.0, 4.0, 8.0, 16.0, None]


def test_default_random_is_in_bounds() -> None:
    b = Backoff(base_delay=1.0, max_delay=1.0, max_attempts=None, jitter=0.3)
    for _ in range(200):
        d = b.next_delay()
        assert d is not None
        assert 0.7 - 1e-9 <= d <= 1.0


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(min_value=1e-3, max_value=100.0),
    ratio=st.floats(min_value=1.0, max_value=1e4),
    max_attempts=st.one_of(st.none(), st.integers(min_value=0, max_value=60)),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_properties(
    base: float, ratio: float, max_attempts: int | None, jitter: float, seed: int
) -> None:
    cap = base * ratio
    rng = random.Random(seed)
    b = Backoff(base, cap, max_attempts, jitter, random=rng.random)
    limit = 80 if max_attempts is None else max_attempts
    previous_raw = 0.0
    for n in range(1, limit + 1):
        delay = b.next_delay()
        assert delay is not None
        assert b.attempts == n
        raw = b.raw_delay(n)
        # monotone and capped
        assert previous_raw <= raw <= cap
        previous_raw = raw
        # jitter bounds
        assert 0.0 <= delay <= cap
        assert raw * (1 - jitter) - 1e-9 * raw <= delay <= raw * (1 + jitter) + 1e-9 * raw
    if max_attempts is not None:
        assert b.exhausted
        assert b.next_delay() is None
        assert b.attempts == max_attempts
    b.reset()
    first = b.next_delay()
    if max_attempts == 0:
        assert first is None
    else:
        assert first is not None
        assert base * (1 - jitter) - 1e-12 <= first <= min(cap, base * (1 + jitter)) + 1e-12
