"""Per-client state keyed by attacker-chosen values stays bounded and cannot be dodged."""

from __future__ import annotations

import pytest

from engine.errors import ConnectionGatedError, ResourceLimitError
from engine.net.gate import ConnectionLimiter, limit_key
from engine.net.interface import Direction


def _limiter(**kw: float) -> ConnectionLimiter:
    return ConnectionLimiter(
        max_connections=int(kw.get("max_connections", 10_000)),
        max_pending=int(kw.get("max_pending", 10_000)),
        max_per_ip=int(kw.get("max_per_ip", 2)),
        rate_per_ip=kw.get("rate_per_ip", 1000.0),
        clock=lambda: 0.0,
    )


def test_one_ipv6_host_cannot_dodge_the_per_ip_limit_by_rotating_addresses() -> None:
    lim = _limiter(max_per_ip=2)
    lim.admit("2001:db8:1:2::1", Direction.INBOUND)
    lim.admit("2001:db8:1:2:ffff::7", Direction.INBOUND)
    with pytest.raises(ResourceLimitError):
        lim.admit("2001:db8:1:2:dead:beef:0:1", Direction.INBOUND)
    lim.admit("2001:db8:1:3::1", Direction.INBOUND)  # another /64 is another subscriber
    lim.release("2001:db8:1:2::1", Direction.INBOUND, established=False)
    assert lim.per_ip("2001:db8:1:2::99") == 1


def test_one_ipv6_host_cannot_dodge_the_rate_limit_by_rotating_addresses() -> None:
    lim = _limiter(max_per_ip=10_000, rate_per_ip=2.0)  # burst 4, no refill (frozen clock)
    for i in range(4):
        lim.admit(f"2001:db8::{i + 1:x}", Direction.INBOUND)
    with pytest.raises(ConnectionGatedError):
        lim.admit("2001:db8::ffff", Direction.INBOUND)


def test_limit_keys() -> None:
    assert limit_key("192.0.2.7") == "192.0.2.7"
    assert limit_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert limit_key("2001:db8:0:1:2:3:4:5") == "2001:db8:0:1::/64"
    assert limit_key("not-an-ip") == "not-an-ip"


def test_rate_buckets_of_many_addresses_stay_bounded() -> None:
    from engine.net import gate

    lim = _limiter(max_per_ip=10_000, rate_per_ip=1.0)
    for i in range(gate._MAX_BUCKETS + 10):
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        lim.admit(ip, Direction.INBOUND)
        lim.release(ip, Direction.INBOUND, established=False)
    assert len(lim._buckets) <= gate._MAX_BUCKETS
    assert not lim._per_ip


async def test_hot_data_of_unknown_peers_stays_bounded_while_the_database_is_down() -> None:
    from engine.crypto.identity import Identity
    from engine.errors import StorageError
    from models import create_engine
    from models.repository import PENDING_HARD_LIMIT_FACTOR, SqlRepository

    engine = create_engine("sqlite+aiosqlite:///:memory:")  # never migrated: flushes fail
    repo = SqlRepository(engine, Identity.generate().peer_id, max_pending=5)
    limit = PENDING_HARD_LIMIT_FACTOR * 5
    try:
        peers = [Identity.generate().peer_id for _ in range(limit + 15)]
        for i, peer in enumerate(peers):  # fresh peer ids, as inbound attackers mint them
            repo.touch_peer(peer, seen_at=1000.0 + i, connected=True)
        assert repo.dropped_touches == 15
        repo.touch_peer(peers[0], seen_at=5000.0)  # a known one still merges
        assert repo.dropped_touches == 15
        with pytest.raises(StorageError):
            await repo.flush()  # the batch comes back, still bounded
        for peer in peers:
            repo.touch_peer(peer, seen_at=6000.0)
        assert len(repo._pending) == limit
    finally:
        await engine.dispose()


def test_ipv4_bans_cover_ipv4_mapped_ipv6_addresses() -> None:
    from multiaddr import Multiaddr

    from engine.blacklist import Blacklist
    from engine.net.gate import CidrGate
    from engine.repository import BanRecord

    blacklist = Blacklist(clock=lambda: 0.0)
    blacklist.add(BanRecord("10.0.0.0/8", "cidr", "", 0.0, None))
    mapped = Multiaddr("/ip6/::ffff:10.1.2.3/tcp/4001")
    assert blacklist.is_addr_banned(mapped)
    assert not blacklist.allow_addr(mapped, Direction.INBOUND)
    assert blacklist.usable_addrs([mapped, Multiaddr("/ip4/192.0.2.1/tcp/1")]) == [
        Multiaddr("/ip4/192.0.2.1/tcp/1")
    ]
    assert not blacklist.is_addr_banned(Multiaddr("/ip6/2001:db8::1/tcp/1"))
    gate = CidrGate(["10.0.0.0/8"])
    assert not gate.allow_addr(mapped, Direction.OUTBOUND)
