"""TCP transport: multiaddrs <-> socket addresses, dial and listen over asyncio streams.

Dialable addresses: ``/ip4/<a>/tcp/<port>``, ``/ip6/<a>/tcp/<port>``,
``/dns4|dns6|dns/<name>/tcp/<port>`` (resolved with ``loop.getaddrinfo``, never blocking
the loop), each optionally followed by ``/p2p/<peer id>``. Anything else raises
:class:`~engine.errors.InvalidMultiaddrError`.

asyncio sets ``TCP_NODELAY`` on its TCP transports, so small handshake messages are not
delayed by Nagle's algorithm.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from multiaddr import Multiaddr

from engine.crypto.identity import PeerId
from engine.errors import DialError, InvalidMultiaddrError, InvalidPeerIdError

__all__ = [
    "ConnectionCallback",
    "TcpAddress",
    "TcpListener",
    "parse_tcp_multiaddr",
    "resolve",
    "sockaddr_to_multiaddr",
    "tcp_dial",
]

ConnectionCallback = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

_STREAM_LIMIT = 256 * 1024
_HOST_KINDS = {"ip4", "ip6", "dns", "dns4", "dns6"}


@dataclass(frozen=True, slots=True)
class TcpAddress:
    """A parsed TCP multiaddr.

    Attributes:
        kind: ``ip4``, ``ip6``, ``dns``, ``dns4`` or ``dns6``.
        host: the address or DNS name.
        port: the TCP port (0 allowed for listening).
        peer_id: the ``/p2p/`` component, if any.
    """

    kind: str
    host: str
    port: int
    peer_id: PeerId | None = None

    @property
    def family(self) -> int:
        """The socket family to resolve or bind (``AF_UNSPEC`` for ``/dns``)."""
        if self.kind in ("ip4", "dns4"):
            return socket.AF_INET
        if self.kind in ("ip6", "dns6"):
            return socket.AF_INET6
        return socket.AF_UNSPEC


def parse_tcp_multiaddr(addr: Multiaddr | str) -> TcpAddress:
    """Parse ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/p2p/<id>]``.

    Args:
        addr: the multiaddr (object or text).

    Returns:
        The parsed address.

    Raises:
        InvalidMultiaddrError: unparsable, not TCP, or with extra components.
    """
    try:
        maddr = addr if isinstance(addr, Multiaddr) else Multiaddr(addr)
        items = [(proto.name, value) for proto, value in maddr.items()]
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise InvalidMultiaddrError(f"invalid multiaddr {str(addr)[:200]!r}") from exc
    peer: PeerId | None = None
    if items and items[-1][0] == "p2p":
        try:
            peer = PeerId.from_string(str(items[-1][1]))
        except InvalidPeerIdError as exc:
            raise InvalidMultiaddrError(f"invalid /p2p/ component in {str(addr)[:200]!r}") from exc
        items = items[:-1]
    if len(items) != 2 or items[0][0] not in _HOST_KINDS or items[1][0] != "tcp":
        raise InvalidMultiaddrError(
            f"not a TCP multiaddr (/ip4|ip6|dns4|dns6/<host>/tcp/<port>): {str(addr)[:200]!r}"
        )
    try:
        port = int(str(items[1][1]))
    except ValueError as exc:  # pragma: no cover - the package validates ports
        raise InvalidMultiaddrError(f"invalid TCP port in {str(addr)[:200]!r}") from exc
    return TcpAddress(kind=items[0][0], host=str(items[0][1]), port=port, peer_id=peer)


def sockaddr_to_multiaddr(sockaddr: tuple[object, ...] | None) -> Multiaddr:
    """The ``/ip4|ip6/<a>/tcp/<port>`` multiaddr of a socket address.

    Raises:
        InvalidMultiaddrError: not an IP socket address.
    """
    if not sockaddr or len(sockaddr) < 2:
        raise InvalidMultiaddrError("not an IP socket address")
    host, port = str(sockaddr[0]), int(str(sockaddr[1]))
    host = host.split("%", 1)[0]  # drop an IPv6 zone id
    try:
        ip = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidMultiaddrError(f"not an IP address: {host[:64]!r}") from exc
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    kind = "ip4" if ip.version == 4 else "ip6"
    return Multiaddr(f"/{kind}/{ip}/tcp/{port}")


async def resolve(addr: TcpAddress) -> list[tuple[str, int]]:
    """Resolve to ``(ip, port)`` pairs; IP addresses resolve to themselves.

    Raises:
        DialError: the DNS name does not resolve.
    """
    if addr.kind in ("ip4", "ip6"):
        return [(addr.host, addr.port)]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            addr.host, addr.port, family=addr.family, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise DialError(f"cannot resolve {addr.host[:200]!r}") from exc
    out: list[tuple[str, int]] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        pair = (str(sockaddr[0]), int(sockaddr[1]))
        if pair not in out:
            out.append(pair)
    if not out:
        raise DialError(f"{addr.host[:200]!r} resolves to no address")
    return out


async def tcp_dial(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP connection (no timeout here: the caller bounds the whole dial).

    Raises:
        DialError: the connection was refused or failed.
    """
    try:
        return await asyncio.open_connection(host, port, limit=_STREAM_LIMIT)
    except OSError as exc:
        raise DialError(f"TCP connect to {host}:{port} failed: {exc.strerror or exc}") from exc


class TcpListener:
    """A TCP listener; every accepted connection runs ``callback`` in its own task.

    The task ends when the callback returns (the host's upgrade), so a connection costs
    no listener task once it is established.
    """

    def __init__(self, callback: ConnectionCallback) -> None:
        self._callback = callback
        self._servers: list[asyncio.Server] = []
        self._addrs: list[Multiaddr] = []

    @property
    def addrs(self) -> list[Multiaddr]:
        """The bound addresses (real ports)."""
        return list(self._addrs)

    async def listen(self, addr: TcpAddress) -> list[Multiaddr]:
        """Bind and start accepting.

        Args:
            addr: an ``/ip4`` or ``/ip6`` address (port 0 picks a free port).

        Returns:
            The bound addresses.

        Raises:
            InvalidMultiaddrError: a DNS address (not listenable).
            DialError: the address cannot be bound.
        """
        if addr.kind not in ("ip4", "ip6"):
            raise InvalidMultiaddrError("only /ip4 and /ip6 addresses can be listened on")
        try:
            server = await asyncio.start_server(
                self._callback,
                addr.host,
                addr.port,
                family=addr.family,
                limit=_STREAM_LIMIT,
                backlog=1024,
                reuse_address=True,
            )
        except OSError as exc:
            raise DialError(f"cannot listen on {addr.host}:{addr.port}: {exc.strerror}") from exc
        self._servers.append(server)
        bound = [sockaddr_to_multiaddr(sock.getsockname()) for sock in server.sockets]
        self._addrs.extend(bound)
        return bound

    async def close(self) -> None:
        """Stop accepting; established connections are not touched."""
        servers, self._servers = self._servers, []
        # close() closes the listening sockets at once; wait_closed() is not awaited since
        # from Python 3.12 on it also waits for every accepted connection to end.
        for server in servers:
            server.close()
        self._addrs.clear()
