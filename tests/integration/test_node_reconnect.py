"""Reconnection, auto-connect, cancel_reconnection and events (memory and TCP hosts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from multiaddr import Multiaddr
from node_kit import HOST_KINDS, Cluster, connect_pair, introduce, wait_state

from engine.connection_state import ConnectionState
from engine.events import EventFilter
from engine.repository import MemoryRepository


@pytest.fixture(params=HOST_KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(request.param, tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def test_auto_connect_to_address_book_peers_on_start(cluster: Cluster) -> None:
    b = await cluster.node()
    c = await cluster.node()
    repo = MemoryRepository()
    for peer in (b, c):
        await repo.add_peer(peer.peer_id, [str(x) for x in peer.listen_addrs()])
    a = cluster.build(repository=repo, auto_connect=True)
    waits = [
        asyncio.ensure_future(wait_state(peer, a.peer_id, ConnectionState.ESTABLISHED))
        for peer in (b, c)
    ]
    await a.start()
    await asyncio.wait_for(asyncio.gather(*waits), 10)
    assert set(a.connected_peers()) == {b.peer_id, c.peer_id}
    assert all(a.is_outbound(p.peer_id) for p in (b, c))


async def test_events_have_strictly_increasing_ids_and_filters_work(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    start_id = a.last_event_id
    established_only = a.subscribe(EventFilter(states={ConnectionState.ESTABLISHED}))
    everything = a.subscribe()
    await connect_pair(a, b)
    async with asyncio.timeout(5):
        event = await anext(established_only)
    assert event.state is ConnectionState.ESTABLISHED
    assert event.peer_id == b.peer_id
    seen = []
    while (item := everything.get_nowait()) is not None:
        seen.append(item)
    assert [e.state for e in seen] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.ESTABLISHED,
    ]
    ids = [e.id for e in seen]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert ids[0] > start_id
    backlog, complete = a.events_since(start_id)
    assert complete
    assert [e.id for e in backlog] == ids
    everything.unsubscribe()
    established_only.unsubscribe()


async def test_ping_rtt_recorded(cluster: Cluster) -> None:
    a = await cluster.node()
    b = await cluster.node()
    await connect_pair(a, b)
    rtt = await a.ping(b.peer_id)
    assert rtt >= 0
    stats = a.peer_stats(b.peer_id)
    assert stats is not None
    assert stats.ping_rtt is not None


async def restart_memory_peer(cluster: Cluster, old_addr: Multiaddr, identity: object) -> None:
    ip = old_addr.value_for_protocol("ip4")
    node = cluster.build(identity=identity, ip=ip)  # type: ignore[arg-type]
    await node.host.listen([old_addr])
    await node.start()


async def test_lost_peer_reconnected_with_backoff_and_cancel(cluster: Cluster) -> None:
    if cluster.kind != "memory":
        pytest.skip("the TCP variant is test_node_kill (a SIGKILLed subprocess)")
    a = await cluster.node()
    b = await cluster.node()
    await connect_pair(a, b)
    addr = b.host.listen_addrs()[0]
    with a.subscribe(EventFilter(peers={b.peer_id})) as events:
        b.host.crash()  # type: ignore[attr-defined]
        await b.stop()
        # A dial fails at least once while the peer is gone.
        async with asyncio.timeout(10):
            failures = 0
            async for event in events:
                if event.state is ConnectionState.RECONNECTING and event.error_code:
                    failures += 1
                    if failures >= 2:
                        break
        assert a.peer_status(b.peer_id).reconnect_attempts >= 2
        await restart_memory_peer(cluster, addr, b._identity)
        async with asyncio.timeout(10):
            async for event in events:
                if event.state is ConnectionState.ESTABLISHED:
                    break
    # cancel_reconnection: the peer vanishes again and we stop trying.
    survivor = cluster.nodes[-1]
    survivor.host.crash()  # type: ignore[attr-defined]
    await wait_state(a, b.peer_id, ConnectionState.RECONNECTING)
    assert a.peer_status(b.peer_id).next_retry_at is not None
    assert a.cancel_reconnection(b.peer_id)
    assert a.connection_state(b.peer_id) is ConnectionState.DISCONNECTED
    assert not a.cancel_reconnection(b.peer_id)


async def test_reconnect_gives_up_after_max_attempts(cluster: Cluster) -> None:
    a = await cluster.node(reconnect_max_attempts=2, reconnect_base_delay=0.01)
    b = await cluster.node()
    await connect_pair(a, b)
    with a.subscribe(EventFilter(peers={b.peer_id})) as events:
        await b.stop()
        async with asyncio.timeout(10):
            states = []
            async for event in events:
                states.append(event.state)
                if event.state is ConnectionState.DISCONNECTED and len(states) > 1:
                    break
    assert states.count(ConnectionState.CONNECTING) == 2
    assert a.connection_state(b.peer_id) is ConnectionState.DISCONNECTED


async def test_simultaneous_connect_from_both_sides(cluster: Cluster) -> None:
    for _ in range(5):
        a = await cluster.node()
        b = await cluster.node()
        await introduce(a, b)
        await introduce(b, a)
        await asyncio.wait_for(
            asyncio.gather(a.connect(b.peer_id, timeout=10), b.connect(a.peer_id, timeout=10)),
            15,
        )
        assert a.connection_state(b.peer_id) is ConnectionState.ESTABLISHED
        assert b.connection_state(a.peer_id) is ConnectionState.ESTABLISHED
        sub = b.messages()
        await a.send(b.peer_id, "messages", b"hi")
        async with asyncio.timeout(5):
            assert (await anext(sub)).data == b"hi"
        sub.unsubscribe()


async def test_peer_restarted_unnoticed_is_rehandshaken_on_its_new_connection(
    cluster: Cluster,
) -> None:
    # The peer loses power: we keep a dead connection; it restarts and dials us, and the
    # host swaps the connections silently. Its new handshake must be answered at once.
    if cluster.kind != "memory":
        pytest.skip("needs a peer that vanishes without a FIN/RST (memory host)")
    a = await cluster.node()
    b = await cluster.node()
    await connect_pair(b, a)
    addr = b.host.listen_addrs()[0]
    identity = b._identity
    b.host.vanish()  # type: ignore[attr-defined]
    await b.stop()
    assert a.connection_state(b.peer_id) is ConnectionState.ESTABLISHED  # nothing noticed
    b2 = cluster.build(identity=identity, ip=addr.value_for_protocol("ip4"))
    await b2.host.listen([addr])
    await b2.start()
    with a.subscribe(EventFilter(peers={b.peer_id})) as events:
        await connect_pair(b2, a)
        async with asyncio.timeout(5):
            async for event in events:
                if event.state is ConnectionState.ESTABLISHED:
                    break
    sub_a = a.messages()
    sub_b = b2.messages()
    await b2.send(a.peer_id, "messages", b"from-new-b")
    await a.send(b.peer_id, "messages", b"to-new-b")
    async with asyncio.timeout(5):
        assert (await anext(sub_a)).data == b"from-new-b"
        assert (await anext(sub_b)).data == b"to-new-b"
