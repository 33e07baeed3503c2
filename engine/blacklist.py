"""The blacklist: banned peer ids and CIDR networks, with expiry; the node's connection gate.

Pure in-memory decisions (no I/O): the node loads the bans from the repository on start,
writes every change through the repository before applying it here, and installs
:class:`Blacklist` as the host's :class:`~engine.net.interface.ConnectionGate`, so a banned
peer or address is refused in both directions, before the security handshake (address)
and right after it (peer id).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable

from multiaddr import Multiaddr

from engine.crypto.identity import PeerId
from engine.net.interface import Direction
from engine.repository import BanRecord

__all__ = ["Blacklist", "multiaddr_ip"]

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def multiaddr_ip(addr: Multiaddr) -> _IPAddress | None:
    """The IP address inside a multiaddr (``/ip4/...`` or ``/ip6/...``), or ``None``."""
    try:
        for proto, value in addr.items():
            if proto.name in ("ip4", "ip6"):
                return ipaddress.ip_address(str(value))
    except Exception:  # the multiaddr package raises several types
        return None
    return None


def _unmapped(ip: _IPAddress) -> _IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Blacklist:
    """Banned peer ids and networks; implements the host's connection gate.

    Args:
        clock: epoch-seconds clock used to decide expiry (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._peers: dict[str, BanRecord] = {}
        self._networks: dict[str, tuple[_IPNetwork, BanRecord]] = {}

    # -- mutation ----------------------------------------------------------------------------

    def load(self, records: Iterable[BanRecord]) -> None:
        """Replace the contents with ``records`` (from the repository)."""
        self._peers.clear()
        self._networks.clear()
        for record in records:
            self.add(record)

    def add(self, record: BanRecord) -> None:
        """Apply a ban (already normalised and persisted)."""
        if record.kind == "peer":
            self._peers[record.target] = record
        else:
            self._networks[record.target] = (ipaddress.ip_network(record.target), record)

    def remove(self, target: str) -> None:
        """Lift a ban by its normalised target text (no-op when absent)."""
        self._peers.pop(target, None)
        self._networks.pop(target, None)

    def records(self) -> list[BanRecord]:
        """Active bans, oldest first."""
        now = self._clock()
        out = [r for r in self._peers.values() if r.active(now)]
        out += [r for _, r in self._networks.values() if r.active(now)]
        return sorted(out, key=lambda r: (r.created_at, r.target))

    # -- decisions ---------------------------------------------------------------------------

    def is_peer_banned(self, peer_id: PeerId) -> bool:
        """Whether ``peer_id`` itself is banned (an active, unexpired ban)."""
        record = self._peers.get(peer_id.to_string())
        return record is not None and record.active(self._clock())

    def is_ip_banned(self, ip: _IPAddress) -> bool:
        """Whether ``ip`` lies inside a banned network.

        An IPv4-mapped IPv6 address (``::ffff:192.0.2.7``) is the IPv4 address it maps:
        a dual-stack socket reaches that IPv4 host, so the IPv4 bans apply to it.
        """
        if not self._networks:
            return False
        ip = _unmapped(ip)
        now = self._clock()
        for network, record in self._networks.values():
            if ip.version == network.version and ip in network and record.active(now):
                return True
        return False

    def is_addr_banned(self, addr: Multiaddr) -> bool:
        """Whether the IP inside ``addr`` lies inside a banned network."""
        ip = multiaddr_ip(addr)
        return ip is not None and self.is_ip_banned(ip)

    def usable_addrs(self, addrs: Iterable[Multiaddr]) -> list[Multiaddr]:
        """``addrs`` without the banned ones (what the node may dial)."""
        return [a for a in addrs if not self.is_addr_banned(a)]

    # -- ConnectionGate ----------------------------------------------------------------------

    def allow_addr(self, remote: Multiaddr, direction: Direction) -> bool:
        """Gate: refuse addresses inside a banned network, both directions."""
        return not self.is_addr_banned(remote)

    def allow_peer(self, peer_id: PeerId, direction: Direction) -> bool:
        """Gate: refuse banned peer ids, both directions."""
        return not self.is_peer_banned(peer_id)
