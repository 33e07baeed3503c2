"""Connection admission: resource limits, per-IP rate limits and CIDR bans; no I/O.

:class:`ConnectionLimiter` is the host's built-in gate. It counts connections in two
stages, *pending* (TCP accepted or dialed, security/muxer upgrade running) and
*established*, and decides synchronously (no lock held across I/O, no await):

- ``max_pending_connections``: upgrades running at once (both directions);
- ``max_connections``: established connections (both directions);
- ``max_connections_per_ip``: concurrent inbound connections (pending or established)
  from one IP address;
- per-IP limits count an IPv6 address by its /64 (one subscriber's allocation: a single
  host can use 2**64 addresses, so counting each one alone would limit nothing);
  IPv4-mapped IPv6 addresses count as the IPv4 address;
- ``connection_rate_per_ip``: inbound attempts per second per IP, a token bucket with a
  burst of twice the rate. Idle buckets are pruned so the table stays bounded.

Refusals raise :class:`~engine.errors.ResourceLimitError` (limits) or
:class:`~engine.errors.ConnectionGatedError` (rate, bans). :class:`CidrGate` is a small
:class:`~engine.net.interface.ConnectionGate` for IP/CIDR bans, usable on its own.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable

from multiaddr import Multiaddr

from engine.crypto.identity import PeerId
from engine.errors import ConnectionGatedError, ResourceLimitError
from engine.net.interface import Direction

__all__ = ["CidrGate", "ConnectionLimiter", "limit_key", "multiaddr_ip"]

_MAX_BUCKETS = 100_000
_IPV6_LIMIT_PREFIX = 64


def limit_key(ip: str) -> str:
    """The key per-IP limits count ``ip`` under: the /64 of an IPv6 address, else the IP.

    Text that is not an IP address is its own key.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, _IPV6_LIMIT_PREFIX), strict=False))
    return str(addr)


def multiaddr_ip(addr: Multiaddr) -> str | None:
    """The IP address of an ``/ip4`` or ``/ip6`` multiaddr, else None."""
    try:
        for proto, value in addr.items():
            if proto.name in ("ip4", "ip6"):
                return str(value)
    except Exception:  # the multiaddr package raises several types
        return None
    return None


class ConnectionLimiter:
    """Counts pending/established connections and refuses those over a limit.

    Args:
        max_connections: established connections.
        max_pending: connections in the upgrade at once.
        max_per_ip: concurrent inbound connections from one IP.
        rate_per_ip: inbound attempts per second per IP (burst ``2 * rate``).
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_pending: int,
        max_per_ip: int,
        rate_per_ip: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.max_per_ip = max_per_ip
        self.rate = rate_per_ip
        self.burst = 2.0 * rate_per_ip
        self._clock = clock
        self.pending = 0
        self.established = 0
        self._per_ip: dict[str, int] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, updated)

    def per_ip(self, ip: str) -> int:
        """Inbound connections currently counted for ``ip`` (see :func:`limit_key`)."""
        return self._per_ip.get(limit_key(ip), 0)

    def admit(self, ip: str | None, direction: Direction) -> None:
        """Count a new connection as pending, or refuse it.

        Args:
            ip: the remote IP (inbound limits apply per IP; None skips them).
            direction: inbound connections are subject to the per-IP limits.

        Raises:
            ResourceLimitError: too many pending or established connections, or too many
                from this IP.
            ConnectionGatedError: this IP exceeds its connection rate.
        """
        if self.pending >= self.max_pending:
            raise ResourceLimitError(
                "too many connections in the handshake",
                details={"limit": self.max_pending, "what": "pending_connections"},
            )
        if self.established + self.pending >= self.max_connections:
            raise ResourceLimitError(
                "connection limit reached",
                details={"limit": self.max_connections, "what": "connections"},
            )
        if direction is Direction.INBOUND and ip is not None:
            ip = limit_key(ip)
            if self._per_ip.get(ip, 0) >= self.max_per_ip:
                raise ResourceLimitError(
                    "too many connections from this address",
                    details={"limit": self.max_per_ip, "what": "connections_per_ip"},
                )
            self._take_token(ip)
            self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.pending += 1

    def _take_token(self, ip: str) -> None:
        now = self._clock()
        tokens, updated = self._buckets.get(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens < 1.0:
            self._buckets[ip] = (tokens, now)
            raise ConnectionGatedError(
                "connection rate limit exceeded for this address",
                details={"rate_per_second": self.rate},
            )
        self._buckets[ip] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_BUCKETS:
            self._prune(now)

    def _prune(self, now: float) -> None:
        # A bucket that has refilled completely carries no information: drop it.
        full_after = self.burst / self.rate
        for key in [k for k, (_t, upd) in self._buckets.items() if now - upd >= full_after]:
            del self._buckets[key]
        if len(self._buckets) > _MAX_BUCKETS:  # still too many: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[
                : len(self._buckets) // 2
            ]:
                del self._buckets[key]

    def promote(self) -> None:
        """A pending connection became established.

        Raises:
            ResourceLimitError: the established limit is reached (the connection stays
                pending; the caller must :meth:`release` it).
        """
        if self.established >= self.max_connections:
            raise ResourceLimitError(
                "connection limit reached",
                details={"limit": self.max_connections, "what": "connections"},
            )
        self.pending -= 1
        self.established += 1

    def release(self, ip: str | None, direction: Direction, *, established: bool) -> None:
        """Forget a connection counted by :meth:`admit` (and maybe :meth:`promote`)."""
        if established:
            self.established -= 1
        else:
            self.pending -= 1
        if direction is Direction.INBOUND and ip is not None:
            ip = limit_key(ip)
            left = self._per_ip.get(ip, 0) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)


class CidrGate:
    """A :class:`~engine.net.interface.ConnectionGate` refusing banned networks and peers.

    Args:
        banned_networks: CIDRs (``"10.0.0.0/8"``, ``"2001:db8::/32"``) or single IPs.
        banned_peers: peer ids refused right after the security handshake.
    """

    def __init__(
        self, banned_networks: Iterable[str] = (), banned_peers: Iterable[PeerId] = ()
    ) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in banned_networks]
        self._peers = set(banned_peers)

    def ban_network(self, cidr: str) -> None:
        """Add a banned CIDR.

        Raises:
            ValueError: not a valid network.
        """
        self._networks.append(ipaddress.ip_network(cidr, strict=False))

    def ban_peer(self, peer_id: PeerId) -> None:
        """Add a banned peer id."""
        self._peers.add(peer_id)

    def allow_addr(self, remote: Multiaddr, direction: Direction) -> bool:
        """Refuse addresses inside a banned network."""
        ip_text = multiaddr_ip(remote)
        if ip_text is None:
            return True
        ip = ipaddress.ip_address(ip_text)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket reaches the IPv4 host it maps
        return not any(ip.version == net.version and ip in net for net in self._networks)

    def allow_peer(self, peer_id: PeerId, direction: Direction) -> bool:
        """Refuse banned peer ids."""
        return peer_id not in self._peers
