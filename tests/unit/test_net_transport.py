"""Multiaddr parsing, resolution and the TCP listener."""

from __future__ import annotations

import asyncio
import socket

import pytest
from multiaddr import Multiaddr

from engine.crypto.identity import Identity
from engine.errors import DialError, InvalidMultiaddrError
from engine.net.transport import (
    TcpAddress,
    TcpListener,
    parse_tcp_multiaddr,
    resolve,
    sockaddr_to_multiaddr,
    tcp_dial,
)


def test_parse_ip4_ip6_dns_and_p2p() -> None:
    peer = Identity.generate().peer_id
    a = parse_tcp_multiaddr(f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
    assert (a.kind, a.host, a.port, a.peer_id) == ("ip4", "127.0.0.1", 4001, peer)
    assert a.family == socket.AF_INET
    b = parse_tcp_multiaddr(Multiaddr("/ip6/::1/tcp/1"))
    assert (b.kind, b.host, b.family) == ("ip6", "::1", socket.AF_INET6)
    c = parse_tcp_multiaddr("/dns4/localhost/tcp/80")
    assert (c.kind, c.host, c.family) == ("dns4", "localhost", socket.AF_INET)
    assert parse_tcp_multiaddr("/dns/localhost/tcp/80").family == socket.AF_UNSPEC


@pytest.mark.parametrize(
    "text",
    [
        "not a multiaddr",
        "/ip4/127.0.0.1/udp/1",
        "/ip4/127.0.0.1",
        "/ip4/127.0.0.1/tcp/1/ws",
        "/tcp/1",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidMultiaddrError):
        parse_tcp_multiaddr(text)


def test_sockaddr_to_multiaddr() -> None:
    assert str(sockaddr_to_multiaddr(("127.0.0.1", 5))) == "/ip4/127.0.0.1/tcp/5"
    assert str(sockaddr_to_multiaddr(("::1", 5, 0, 0))) == "/ip6/::1/tcp/5"
    assert str(sockaddr_to_multiaddr(("::ffff:10.0.0.1", 7, 0, 0))) == "/ip4/10.0.0.1/tcp/7"
    with pytest.raises(InvalidMultiaddrError):
        sockaddr_to_multiaddr(None)


async def test_resolve_dns_with_getaddrinfo() -> None:
    got = await resolve(parse_tcp_multiaddr("/dns4/localhost/tcp/9"))
    assert ("127.0.0.1", 9) in got
    assert await resolve(TcpAddress("ip4", "1.2.3.4", 5)) == [("1.2.3.4", 5)]


async def test_resolve_failure_is_dial_error(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def fail(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "not found")

    monkeypatch.setattr(loop, "getaddrinfo", fail)  # no DNS query leaves the machine
    with pytest.raises(DialError):
        await resolve(TcpAddress("dns4", "name.invalid", 5))


async def test_listener_accepts_and_close_stops_accepting() -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await got.put(await reader.read(10))
        writer.close()

    listener = TcpListener(on_conn)
    [addr] = await listener.listen(parse_tcp_multiaddr("/ip4/127.0.0.1/tcp/0"))
    port = parse_tcp_multiaddr(addr).port
    assert port != 0
    assert listener.addrs == [addr]
    _, writer = await tcp_dial("127.0.0.1", port)
    writer.write(b"hi")
    assert await asyncio.wait_for(got.get(), 5) == b"hi"
    writer.close()
    await listener.close()
    assert listener.addrs == []
    with pytest.raises(DialError):
        await tcp_dial("127.0.0.1", port)
    with pytest.raises(InvalidMultiaddrError):
        await listener.listen(parse_tcp_multiaddr("/dns4/localhost/tcp/0"))
