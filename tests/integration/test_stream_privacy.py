"""Stream names stay private: identify (and ``ls``) list no Glueberry stream protocol,
yet a peer can still open the streams (memory host and TCP host)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from node_kit import HOST_KINDS, Cluster, connect_pair

from engine.errors import NegotiationError
from engine.handshake import HANDSHAKE_PROTOCOL, stream_protocol
from engine.node import Node


@pytest.fixture(params=HOST_KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(request.param, tmp_path)
    try:
        yield c
    finally:
        await c.close()


async def announced(observer: Node, peer: Node) -> tuple[str, ...]:
    """The protocols ``peer`` announced to ``observer`` (identify on the TCP host)."""
    wait = getattr(observer.host, "wait_identified", None)
    if wait is not None:
        info = await wait(peer.peer_id, timeout=5)
        return tuple(info.protocols)
    conn = observer.host.connection_info(peer.peer_id)
    assert conn is not None
    return conn.protocols


async def test_identify_does_not_list_stream_names_but_peers_open_them(cluster: Cluster) -> None:
    a = await cluster.node(default_streams=["alpha", "beta"])
    b = await cluster.node(default_streams=["alpha", "beta"])
    await connect_pair(a, b)
    protocols = await announced(a, b)
    assert HANDSHAKE_PROTOCOL in protocols
    assert not [p for p in protocols if "alpha" in p or "beta" in p or "/glueberry/stream/" in p]

    sub = b.messages()
    for name in ("alpha", "beta"):
        await a.send(b.peer_id, name, name.encode())
    got: set[tuple[str, bytes]] = set()
    async with asyncio.timeout(5):
        async for msg in sub:
            got.add((msg.stream, msg.data))
            if len(got) == 2:
                break
    assert got == {("alpha", b"alpha"), ("beta", b"beta")}
    sub.unsubscribe()


async def test_unprepared_stream_name_is_still_refused_at_negotiation(cluster: Cluster) -> None:
    a = await cluster.node(default_streams=["alpha"])
    b = await cluster.node(default_streams=["alpha"])
    await connect_pair(a, b)
    with pytest.raises(NegotiationError):
        await a.host.new_stream(b.peer_id, [stream_protocol("gamma")], timeout=5)
    stream = await a.host.new_stream(b.peer_id, [stream_protocol("alpha")], timeout=5)
    assert stream.protocol_id == stream_protocol("alpha")
    await stream.reset()
