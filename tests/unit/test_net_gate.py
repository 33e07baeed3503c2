"""ConnectionLimiter (limits, per-IP rate with a fake clock) and CidrGate."""

from __future__ import annotations

import pytest
from multiaddr import Multiaddr

from engine.crypto.identity import Identity
from engine.errors import ConnectionGatedError, ResourceLimitError
from engine.net.gate import CidrGate, ConnectionLimiter, multiaddr_ip
from engine.net.interface import Direction

IN, OUT = Direction.INBOUND, Direction.OUTBOUND


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock | None = None, **kw: float) -> ConnectionLimiter:
    args: dict[str, float] = {
        "max_connections": 10,
        "max_pending": 5,
        "max_per_ip": 3,
        "rate_per_ip": 1000.0,
    }
    args.update(kw)
    return ConnectionLimiter(
        max_connections=int(args["max_connections"]),
        max_pending=int(args["max_pending"]),
        max_per_ip=int(args["max_per_ip"]),
        rate_per_ip=args["rate_per_ip"],
        clock=clock or Clock(),
    )


def test_pending_limit_and_release() -> None:
    lim = limiter(max_pending=2)
    lim.admit(None, OUT)
    lim.admit(None, OUT)
    with pytest.raises(ResourceLimitError) as info:
        lim.admit(None, OUT)
    assert info.value.details["what"] == "pending_connections"
    lim.release(None, OUT, established=False)
    lim.admit(None, OUT)
    assert lim.pending == 2


def test_established_limit_counts_pending_too() -> None:
    lim = limiter(max_connections=2, max_pending=5)
    lim.admit(None, OUT)
    lim.promote()
    lim.admit(None, OUT)
    with pytest.raises(ResourceLimitError):
        lim.admit(None, OUT)
    lim.promote()
    assert (lim.pending, lim.established) == (0, 2)
    lim.release(None, OUT, established=True)
    lim.admit(None, OUT)


def test_promote_refuses_over_the_limit() -> None:
    lim = limiter(max_connections=1, max_pending=5)
    lim.admit(None, OUT)
    lim.promote()
    lim.max_connections = 1
    lim.pending += 1  # a connection admitted before the limit shrank
    with pytest.raises(ResourceLimitError):
        lim.promote()


def test_per_ip_limit_inbound_only() -> None:
    lim = limiter(max_per_ip=2)
    lim.admit("10.0.0.1", IN)
    lim.admit("10.0.0.1", IN)
    with pytest.raises(ResourceLimitError) as info:
        lim.admit("10.0.0.1", IN)
    assert info.value.details["what"] == "connections_per_ip"
    lim.admit("10.0.0.2", IN)
    lim.admit("10.0.0.1", OUT)  # dials are not limited per IP
    lim.release("10.0.0.1", IN, established=False)
    assert lim.per_ip("10.0.0.1") == 1
    lim.admit("10.0.0.1", IN)


def test_rate_limit_with_burst_and_refill() -> None:
    clock = Clock()
    lim = limiter(clock, rate_per_ip=2.0, max_per_ip=100, max_pending=100)
    for _ in range(4):  # burst = 2 x rate
        lim.admit("1.2.3.4", IN)
    with pytest.raises(ConnectionGatedError):
        lim.admit("1.2.3.4", IN)
    lim.admit("5.6.7.8", IN)  # other IPs unaffected
    clock.now += 0.5  # one token back
    lim.admit("1.2.3.4", IN)
    with pytest.raises(ConnectionGatedError):
        lim.admit("1.2.3.4", IN)


def test_cidr_gate() -> None:
    peer = Identity.generate().peer_id
    gate = CidrGate(["10.0.0.0/8", "2001:db8::/32"], [peer])
    assert not gate.allow_addr(Multiaddr("/ip4/10.1.2.3/tcp/1"), IN)
    assert gate.allow_addr(Multiaddr("/ip4/11.1.2.3/tcp/1"), IN)
    assert not gate.allow_addr(Multiaddr("/ip6/2001:db8::1/tcp/1"), OUT)
    assert gate.allow_addr(Multiaddr("/dns4/example.com/tcp/1"), OUT)
    assert not gate.allow_peer(peer, IN)
    assert gate.allow_peer(Identity.generate().peer_id, IN)
    gate.ban_network("127.0.0.1")
    assert not gate.allow_addr(Multiaddr("/ip4/127.0.0.1/tcp/5"), IN)


def test_multiaddr_ip() -> None:
    assert multiaddr_ip(Multiaddr("/ip4/1.2.3.4/tcp/5")) == "1.2.3.4"
    assert multiaddr_ip(Multiaddr("/ip6/::1/tcp/5")) == "::1"
    assert multiaddr_ip(Multiaddr("/dns4/x/tcp/5")) is None
