"""Host refusals: a closed set of reasons, both directions counted, a notifee hook
(``refused(reason, direction, remote)`` through call_soon), and the node's counters fed
by the hook (TCP host; the memory host reports its gate and limit refusals the same way)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from multiaddr import Multiaddr
from node_kit import Cluster, introduce

from engine.config import Config
from engine.crypto.identity import Identity, PeerId
from engine.errors import ConnectionGatedError, DialError, GlueberryError, ResourceLimitError
from engine.net.host import Host
from engine.net.interface import ConnectionInfo, Direction, HostRefusal
from engine.net.memory import MemoryNetwork

LOCAL = Multiaddr("/ip4/127.0.0.1/tcp/0")
T = 10.0

Refusal = tuple[HostRefusal, Direction, Multiaddr | None]


class RefusalRecorder:
    def __init__(self) -> None:
        self.refusals: list[Refusal] = []
        self.changed = asyncio.Event()

    def connected(self, info: ConnectionInfo) -> None:
        pass

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        pass

    def refused(self, reason: HostRefusal, direction: Direction, remote: Multiaddr | None) -> None:
        self.refusals.append((reason, direction, remote))
        self.changed.set()

    async def wait(self, n: int) -> list[Refusal]:
        async with asyncio.timeout(T):
            while len(self.refusals) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.refusals


class Gate:
    def __init__(self, *, addr_ok: bool = True, peer_ok: bool = True) -> None:
        self.addr_ok = addr_ok
        self.peer_ok = peer_ok

    def allow_addr(self, remote: Multiaddr, direction: Direction) -> bool:
        return self.addr_ok

    def allow_peer(self, peer_id: PeerId, direction: Direction) -> bool:
        return self.peer_ok


@pytest.fixture
async def hosts() -> AsyncIterator[Callable[..., Awaitable[tuple[Host, RefusalRecorder]]]]:
    made: list[Host] = []

    async def factory(**overrides: object) -> tuple[Host, RefusalRecorder]:
        host = Host(Identity.generate(), Config(**overrides))  # type: ignore[arg-type]
        await host.listen([LOCAL])
        rec = RefusalRecorder()
        host.add_notifee(rec)
        made.append(host)
        return host, rec

    yield factory
    for host in made:
        await host.close()


def test_reasons_are_a_closed_set_of_stable_strings() -> None:
    assert {r.value for r in HostRefusal} == {
        "gate_addr",
        "gate_peer",
        "max_pending",
        "max_connections",
        "max_per_ip",
        "rate_limited",
        "upgrade_failed",
    }


async def test_gate_refusals_both_directions(
    hosts: Callable[..., Awaitable[tuple[Host, RefusalRecorder]]],
) -> None:
    (a, ra), (b, rb) = await hosts(), await hosts()
    b.set_gate(Gate(addr_ok=False))
    with pytest.raises(DialError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    [(reason, direction, remote)] = await rb.wait(1)
    assert (reason, direction) == (HostRefusal.GATE_ADDR, Direction.INBOUND)
    assert remote is not None
    assert remote.value_for_protocol("ip4") == "127.0.0.1"

    b.set_gate(Gate(peer_ok=False))
    with pytest.raises(DialError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert (await rb.wait(2))[1][:2] == (HostRefusal.GATE_PEER, Direction.INBOUND)
    b.set_gate(None)

    a.set_gate(Gate(addr_ok=False))
    with pytest.raises(ConnectionGatedError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert (await ra.wait(1))[0] == (
        HostRefusal.GATE_ADDR,
        Direction.OUTBOUND,
        b.listen_addrs()[0],
    )
    a.set_gate(Gate(peer_ok=False))
    with pytest.raises(ConnectionGatedError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert (await ra.wait(2))[1][:2] == (HostRefusal.GATE_PEER, Direction.OUTBOUND)
    assert a.refusal_counts() == {"inbound": {}, "outbound": {"gate_addr": 1, "gate_peer": 1}}
    assert b.refusal_counts()["inbound"] == {"gate_addr": 1, "gate_peer": 1}


async def test_limit_refusals_are_counted_inbound_and_outbound(
    hosts: Callable[..., Awaitable[tuple[Host, RefusalRecorder]]],
) -> None:
    b, rb = await hosts(max_connections=1)
    (a1, _), (a2, _) = await hosts(), await hosts()
    await a1.dial(b.peer_id, b.listen_addrs(), timeout=T)
    with pytest.raises(DialError):
        await a2.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert (await rb.wait(1))[0][:2] == (HostRefusal.MAX_CONNECTIONS, Direction.INBOUND)
    with pytest.raises(ResourceLimitError):
        await b.dial(a2.peer_id, a2.listen_addrs(), timeout=T)
    assert (await rb.wait(2))[1] == (
        HostRefusal.MAX_CONNECTIONS,
        Direction.OUTBOUND,
        a2.listen_addrs()[0],
    )
    assert b.refusal_counts() == {
        "inbound": {"max_connections": 1},
        "outbound": {"max_connections": 1},
    }


async def test_failed_upgrade_is_upgrade_failed_not_an_exception_name(
    hosts: Callable[..., Awaitable[tuple[Host, RefusalRecorder]]],
) -> None:
    b, rb = await hosts()
    addr = b.listen_addrs()[0]
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", int(addr.value_for_protocol("tcp"))
    )
    writer.write(b"\xff" * 64 + b"\n")  # not multistream-select
    await writer.drain()
    [(reason, direction, _remote)] = await rb.wait(1)
    writer.close()
    assert (reason, direction) == (HostRefusal.UPGRADE_FAILED, Direction.INBOUND)
    assert b.refusal_counts()["inbound"] == {"upgrade_failed": 1}


async def test_a_raising_refusal_notifee_breaks_nothing(
    hosts: Callable[..., Awaitable[tuple[Host, RefusalRecorder]]],
) -> None:
    class Boom(RefusalRecorder):
        def refused(
            self, reason: HostRefusal, direction: Direction, remote: Multiaddr | None
        ) -> None:
            super().refused(reason, direction, remote)
            raise RuntimeError("notifee bug")

    (a, _), (b, rb) = await hosts(), await hosts()
    boom = Boom()
    b.add_notifee(boom)
    b.set_gate(Gate(addr_ok=False))
    with pytest.raises(DialError):
        await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    await boom.wait(1)
    await rb.wait(1)  # the other notifee still heard it
    b.set_gate(None)
    await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
    assert a.is_connected(b.peer_id)


async def test_memory_host_reports_gate_refusals() -> None:
    net = MemoryNetwork()
    a = net.create_host(Identity.generate().peer_id)
    b = net.create_host(Identity.generate().peer_id, ip="127.0.0.2")
    await a.listen([LOCAL])
    await b.listen([LOCAL])
    ra, rb = RefusalRecorder(), RefusalRecorder()
    a.add_notifee(ra)
    b.add_notifee(rb)
    try:
        b.set_gate(Gate(addr_ok=False))
        with pytest.raises(DialError):
            await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
        [(reason, direction, remote)] = await rb.wait(1)
        assert (reason, direction) == (HostRefusal.GATE_ADDR, Direction.INBOUND)
        assert remote is not None
        assert remote.value_for_protocol("ip4") == "127.0.0.1"
        b.set_gate(None)
        a.set_gate(Gate(peer_ok=False))
        with pytest.raises(ConnectionGatedError):
            await a.dial(b.peer_id, b.listen_addrs(), timeout=T)
        assert (await ra.wait(1))[0][:2] == (HostRefusal.GATE_PEER, Direction.OUTBOUND)
        assert a.refusal_counts()["outbound"] == {"gate_peer": 1}
    finally:
        await a.close()
        await b.close()


async def test_node_counts_host_refusals_through_the_hook(tmp_path: Path) -> None:
    cluster = Cluster("tcp", tmp_path)
    try:
        b = await cluster.node(max_connections=1)
        a1 = await cluster.node()
        a2 = await cluster.node()
        await introduce(a1, b)
        await introduce(a2, b)
        await introduce(b, a2)
        await a1.connect(b.peer_id, timeout=T)
        with pytest.raises(GlueberryError):
            await a2.connect(b.peer_id, timeout=T)
        with pytest.raises(GlueberryError):
            await b.connect(a2.peer_id, timeout=T)
        async with asyncio.timeout(T):
            while b.counters()["refused"].get("max_connections", 0) < 2:
                await asyncio.sleep(0.005)
        assert b.counters()["refused"] == {"max_connections": 2}
    finally:
        await cluster.close()
