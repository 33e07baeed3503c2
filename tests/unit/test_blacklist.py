"""The blacklist gate: peer ids and CIDRs, both directions, expiry."""

from __future__ import annotations

from multiaddr import Multiaddr

from engine.blacklist import Blacklist, multiaddr_ip
from engine.crypto.identity import Identity
from engine.net.interface import Direction
from engine.repository import BanRecord


def test_peer_and_cidr_bans_with_expiry() -> None:
    now = [1000.0]
    bl = Blacklist(clock=lambda: now[0])
    peer = Identity.generate().peer_id
    other = Identity.generate().peer_id
    bl.load(
        [
            BanRecord(peer.to_string(), "peer", "spam", 1.0, 2000.0),
            BanRecord("10.0.0.0/8", "cidr", "", 2.0, None),
            BanRecord("2001:db8::/32", "cidr", "", 3.0, 1500.0),
        ]
    )
    for direction in Direction:
        assert not bl.allow_peer(peer, direction)
        assert bl.allow_peer(other, direction)
        assert not bl.allow_addr(Multiaddr("/ip4/10.1.2.3/tcp/1"), direction)
        assert bl.allow_addr(Multiaddr("/ip4/11.1.2.3/tcp/1"), direction)
        assert not bl.allow_addr(Multiaddr("/ip6/2001:db8::1/tcp/1"), direction)
    assert bl.allow_addr(Multiaddr("/dns4/example.com/tcp/1"), Direction.INBOUND)
    assert [r.target for r in bl.records()] == [peer.to_string(), "10.0.0.0/8", "2001:db8::/32"]
    now[0] = 1600.0  # the IPv6 ban expired
    assert bl.allow_addr(Multiaddr("/ip6/2001:db8::1/tcp/1"), Direction.OUTBOUND)
    now[0] = 2500.0  # the peer ban expired
    assert bl.allow_peer(peer, Direction.INBOUND)
    bl.remove("10.0.0.0/8")
    assert bl.allow_addr(Multiaddr("/ip4/10.1.2.3/tcp/1"), Direction.INBOUND)
    addrs = [Multiaddr("/ip4/10.0.0.1/tcp/1"), Multiaddr("/ip4/12.0.0.1/tcp/1")]
    bl.add(BanRecord("10.0.0.0/24", "cidr", "", 4.0, None))
    assert bl.usable_addrs(addrs) == addrs[1:]


def test_multiaddr_ip() -> None:
    assert str(multiaddr_ip(Multiaddr("/ip4/127.0.0.1/tcp/5"))) == "127.0.0.1"
    assert str(multiaddr_ip(Multiaddr("/ip6/::1/tcp/5"))) == "::1"
    assert multiaddr_ip(Multiaddr("/dns4/localhost/tcp/5")) is None
