"""Sans-IO parts of the gateway: bucket arithmetic, retention, error mapping, settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from api.errors import STATUS_BY_CODE, status_for
from api.ratelimit import MemoryRateLimiter, rate_limit_headers, take_token
from api.retention import MessageRetention
from api.settings import GatewaySettings
from engine import errors


def test_bucket_allows_burst_then_refuses_then_refills() -> None:
    level, decision = take_token(None, 0.0, 0.0, rate=2.0, burst=3)
    assert decision.allowed
    assert decision.remaining == 2
    assert level == 2.0
    level, decision = take_token(level, 0.0, 0.0, 2.0, 3)
    level, decision = take_token(level, 0.0, 0.0, 2.0, 3)
    assert decision.allowed
    assert decision.remaining == 0
    level, decision = take_token(level, 0.0, 0.0, 2.0, 3)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.5)
    assert decision.reset_after == pytest.approx(1.5)
    # Half a second later one token is back.
    level, decision = take_token(level, 0.0, 0.5, 2.0, 3)
    assert decision.allowed
    # A long pause never overfills the bucket.
    level, decision = take_token(level, 0.5, 1000.0, 2.0, 3)
    assert decision.remaining == 2


def test_rate_limit_headers() -> None:
    _, ok = take_token(None, 0, 0, rate=1.0, burst=10)
    headers = rate_limit_headers(ok)
    assert headers["RateLimit-Limit"] == "10"
    assert headers["RateLimit-Remaining"] == "9"
    assert headers["RateLimit-Policy"] == "10;w=10"
    assert "Retry-After" not in headers
    _, refused = take_token(0.2, 0, 0, rate=0.5, burst=1)
    assert rate_limit_headers(refused)["Retry-After"] == "2"


async def test_memory_limiter_uses_its_clock_and_evicts() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(max_keys=2, clock=lambda: now[0])
    assert (await limiter.hit("a", 1.0, 1)).allowed
    assert not (await limiter.hit("a", 1.0, 1)).allowed
    now[0] = 1.0
    assert (await limiter.hit("a", 1.0, 1)).allowed
    await limiter.hit("b", 1.0, 1)
    await limiter.hit("c", 1.0, 1)  # evicts "a", the least recently used
    assert (await limiter.hit("a", 1.0, 1)).allowed


async def test_retention_cursor_filters_and_gap() -> None:
    buf = MessageRetention(capacity=3)
    for i in range(3):
        buf.append("p1" if i % 2 == 0 else "p2", "s", f"m{i}".encode())
    page = buf.read(0, limit=10)
    assert [m.data for m in page.messages] == [b"m0", b"m1", b"m2"]
    assert (page.next_cursor, page.gap, page.oldest) == (3, False, 1)
    page = buf.read(0, limit=10, peer_id="p2")
    assert [m.seq for m in page.messages] == [2]
    assert page.next_cursor == 3  # filtered readers still advance
    page = buf.read(1, limit=1)
    assert [m.seq for m in page.messages] == [2]
    assert page.next_cursor == 2
    buf.append("p1", "s", b"m3")
    buf.append("p1", "s", b"m4")  # evicts seq 1 and 2
    page = buf.read(1, limit=10)
    assert page.gap
    assert page.oldest == 3
    assert [m.seq for m in page.messages] == [3, 4, 5]
    assert not buf.read(2, limit=10).gap
    # A cursor from before a restart (beyond the newest) is reported, not trusted.
    page = buf.read(99, limit=10)
    assert page.gap
    assert [m.seq for m in page.messages] == [3, 4, 5]


async def test_retention_long_poll_wakes_on_matching_message() -> None:
    buf = MessageRetention(capacity=10)
    reader = asyncio.create_task(buf.wait_read(0, wait=5.0, limit=10, stream="wanted"))
    await asyncio.sleep(0)
    buf.append("p", "other", b"x")
    await asyncio.sleep(0)
    assert not reader.done()
    buf.append("p", "wanted", b"y")
    page = await asyncio.wait_for(reader, 1.0)
    assert [m.data for m in page.messages] == [b"y"]
    assert page.next_cursor == 2


async def test_retention_long_poll_times_out_empty(ms: float) -> None:
    buf = MessageRetention(capacity=10)
    page = await buf.wait_read(0, wait=20 * ms, limit=10)
    assert page.messages == []
    assert page.next_cursor == 0
    assert not page.gap


def test_every_engine_error_has_a_status() -> None:
    for cls in errors.all_error_classes():
        error = cls.__new__(cls)  # some constructors take extra arguments
        status = status_for(error)
        assert 400 <= status <= 599, cls
    assert status_for(errors.PeerNotFoundError()) == 404
    assert status_for(errors.InvalidPeerIdError()) == 422
    assert status_for(errors.PeerBlacklistedError()) == 403
    assert status_for(errors.NotEstablishedError()) == 409
    assert status_for(errors.NodeNotRunningError()) == 503
    assert status_for(errors.DialTimeoutError()) == 504
    assert status_for(errors.DialError()) == 502  # inherits transport_error
    # Every mapped code is a real engine code (no stale entries).
    codes = {cls.code for cls in errors.all_error_classes()}
    assert set(STATUS_BY_CODE) <= codes


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GLUEBERRY_HTTP_PORT", "9000")
    monkeypatch.setenv("GLUEBERRY_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("GLUEBERRY_BOOTSTRAP_PEERS", "/ip4/1.2.3.4/tcp/1/p2p/x")
    monkeypatch.setenv("GLUEBERRY_METRICS_PUBLIC", "true")
    settings = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.http_port == 9000
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.bootstrap_peers == ["/ip4/1.2.3.4/tcp/1/p2p/x"]
    assert settings.metrics_public is True
    env = tmp_path / "gw.env"
    env.write_text("GLUEBERRY_HTTP_HOST=0.0.0.0\n")
    assert GatewaySettings(_env_file=env).http_host == "0.0.0.0"  # type: ignore[call-arg]


def test_settings_validation() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GatewaySettings(_env_file=None, http_port=70_000)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        GatewaySettings(_env_file=None, max_body_size=10)  # type: ignore[call-arg]


def test_http_socket_disables_nagle() -> None:
    # Regression: without TCP_NODELAY a keep-alive client waited ~40 ms per response
    # (delayed ACK against uvicorn's separate head and body writes).
    import socket

    from api.commands.serve import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getsockname()[1] != 0
    finally:
        sock.close()
