"""``/v1/events`` over WebSocket on an in-process gateway with real nodes.

Resume with ``since`` misses nothing; an expired or foreign cursor gets ``reset`` and a
snapshot; snapshot-then-changes has no gap or duplicate while many clients connect
during connection churn; filters; watch-only channel refuses commands. Every JSON
frame is validated against ``openapi/asyncapi.yaml``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from engine.connection_state import ConnectionState
from engine.events import EventFilter
from engine.node import Node
from models import ApiKeyRepository

from .ws_kit import (
    LiveGateway,
    Recorder,
    build_node,
    connect_nodes,
    gateway,
    live_gateway,
    recorder,
    ws_connect,
)

__all__ = ["gateway", "recorder"]  # fixtures


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[list[Node]]:
    nodes = [build_node(tmp_path / f"p{i}") for i in range(3)]
    for node in nodes:
        await node.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


@pytest.fixture
async def key(api_keys: ApiKeyRepository) -> str:
    return (await api_keys.create("events", ["monitor"])).token


async def _events_until(ws: Any, last_id: int) -> list[dict[str, Any]]:
    """Event frames until the one with ``last_id`` (heartbeats skipped)."""
    out: list[dict[str, Any]] = []
    while True:
        frame = await ws.recv_json()
        if frame["type"] == "event":
            out.append(frame)
            if frame["id"] >= last_id:
                return out


async def _settle(node: Node, peer: Node, *states: ConnectionState) -> None:
    """Wait (subscribe first, then look: race-free) until ``peer`` is in one of ``states``."""
    with node.subscribe(EventFilter(peers={peer.peer_id})) as sub:
        async with asyncio.timeout(10):
            while node.connection_state(peer.peer_id) not in states:
                await anext(sub)


async def _wait_last_id(node: Node, target: int) -> None:
    """Wait until the node has published event ``target``."""
    with node.subscribe() as sub:
        async with asyncio.timeout(20):
            while node.last_event_id < target:
                await anext(sub)


async def test_resume_with_since_misses_no_event(
    gateway: LiveGateway, peers: list[Node], key: str, recorder: Recorder
) -> None:
    url = f"{gateway.ws}/v1/events"
    node, other = gateway.node, peers[0]
    async with ws_connect(url, "events", recorder, key=key) as ws:
        ready = await ws.recv_json()
        assert ready == {"type": "ready", "channel": "events", "last_event_id": node.last_event_id}
        await connect_nodes(node, other)
        seen = await _events_until(ws, node.last_event_id)
    # Disconnected: more events happen meanwhile.
    cursor = seen[-1]["id"]
    await node.disconnect(other.peer_id)
    await _settle(node, other, ConnectionState.DISCONNECTED)
    await connect_nodes(node, other)
    expected, complete = node.events_since(cursor)
    assert complete
    assert expected
    async with ws_connect(f"{url}?since={cursor}", "events", recorder, key=key) as ws:
        assert (await ws.recv_json())["type"] == "ready"
        resumed = await _events_until(ws, expected[-1].id)
    assert [f["id"] for f in resumed] == [e.id for e in expected]
    assert [f["state"] for f in resumed] == [e.state.value for e in expected]
    ids = [f["id"] for f in seen + resumed]
    assert ids == sorted(set(ids))


@pytest.mark.parametrize("gateway", [{"node": {"event_retention": 2}}], indirect=True)
async def test_expired_or_foreign_cursor_gets_reset_then_snapshot(
    gateway: LiveGateway, peers: list[Node], key: str, recorder: Recorder
) -> None:
    node, other = gateway.node, peers[0]
    await connect_nodes(node, other)
    await node.disconnect(other.peer_id)
    await _settle(node, other, ConnectionState.DISCONNECTED)
    assert node.last_event_id >= node.first_event_id + 3
    oldest = node.events_since(0)[0][0].id
    expired = node.first_event_id  # this run's first event, evicted (retention 2)
    async with ws_connect(
        f"{gateway.ws}/v1/events?since={expired}", "events", recorder, key=key
    ) as ws:
        assert (await ws.recv_json())["type"] == "ready"
        reset = await ws.recv_json()
        assert reset == {
            "type": "reset",
            "reason": "cursor_expired",
            "since": expired,
            "oldest_id": oldest,
            "last_event_id": node.last_event_id,
        }
        snapshot = await ws.recv_json()
        assert snapshot["type"] == "snapshot"
        assert snapshot["last_event_id"] == node.last_event_id
        assert {"peer_id": str(other.peer_id), "state": "disconnected"} in snapshot["peers"]
    ahead = node.last_event_id + 1000
    async with ws_connect(
        f"{gateway.ws}/v1/events?since={ahead}", "events", recorder, key=key
    ) as ws:
        await ws.recv_json()
        reset = await ws.recv_json()
        assert (reset["type"], reset["reason"]) == ("reset", "cursor_ahead")
        assert (await ws.recv_json())["type"] == "snapshot"
    # A cursor below this run's first id was issued by an earlier run of the node.
    async with ws_connect(f"{gateway.ws}/v1/events?since=1", "events", recorder, key=key) as ws:
        await ws.recv_json()
        reset = await ws.recv_json()
        assert (reset["type"], reset["reason"]) == ("reset", "cursor_earlier_run")
        assert (await ws.recv_json())["type"] == "snapshot"
    # A retained cursor resumes normally.
    last = node.last_event_id
    async with ws_connect(
        f"{gateway.ws}/v1/events?since={last - 1}", "events", recorder, key=key
    ) as ws:
        await ws.recv_json()
        frame = await ws.recv_json()
        assert (frame["type"], frame["id"]) == ("event", last)


def _apply(model: dict[str, str], frame: dict[str, Any]) -> None:
    """Apply an event to a client's model, checking it continues from the known state."""
    peer = frame["peer_id"]
    known = model.get(peer, "disconnected")
    assert frame["previous_state"] == known, (frame, known)
    model[peer] = frame["state"]


async def test_snapshot_then_changes_no_gap_no_duplicate_under_churn(
    gateway: LiveGateway, peers: list[Node], key: str, recorder: Recorder
) -> None:
    node = gateway.node
    for peer in peers:
        await node.add_peer(peer.peer_id, [str(a) for a in peer.listen_addrs()])
    url = f"{gateway.ws}/v1/events?snapshot=true"
    cycles = 6

    async def churn(peer: Node) -> None:
        for _ in range(cycles):
            await node.connect(peer.peer_id, timeout=10)
            await node.disconnect(peer.peer_id)
            await _settle(node, peer, ConnectionState.DISCONNECTED)

    quiet = asyncio.Event()

    async def client(after: int) -> tuple[dict[str, str], list[int], Any]:
        await _wait_last_id(node, after)  # connect while the churn is under way
        async with ws_connect(url, "events", recorder, key=key) as ws:
            assert (await ws.recv_json())["type"] == "ready"
            snap = await ws.recv_json()
            assert snap["type"] == "snapshot"
            model = {p["peer_id"]: p["state"] for p in snap["peers"]}
            ids = [snap["last_event_id"]]
            await quiet.wait()
            final = node.last_event_id
            while ids[-1] < final:
                frame = await ws.recv_json()
                if frame["type"] != "event":
                    continue
                assert frame["id"] > ids[-1]  # strictly increasing: no duplicate
                _apply(model, frame)
                ids.append(frame["id"])
            return model, ids, snap

    start = node.last_event_id
    clients = [asyncio.ensure_future(client(start + 1 + 3 * i)) for i in range(12)]
    await asyncio.gather(*(churn(p) for p in peers))
    quiet.set()
    results = await asyncio.gather(*clients)
    truth = {str(p.peer_id): node.connection_state(p.peer_id).value for p in peers}
    all_events, _ = node.events_since(0)
    for model, ids, snap in results:
        assert model == truth
        # No gap: every global id after the snapshot is there (no filter was given).
        assert ids == list(range(snap["last_event_id"], node.last_event_id + 1)), ids
    assert [e.id for e in all_events] == list(range(node.first_event_id, node.last_event_id + 1))


async def test_filters_and_heartbeat_cursor(
    tmp_path: Path, api_keys: ApiKeyRepository, peers: list[Node], key: str, recorder: Recorder
) -> None:
    gw = await live_gateway(tmp_path / "hb", api_keys, ws_heartbeat=0.2)
    try:
        node = gw.node
        first, second = peers[0], peers[1]
        url = f"{gw.ws}/v1/events?peer={first.peer_id}&state=established,disconnected"
        async with ws_connect(url, "events", recorder, key=key) as ws:
            await ws.recv_json()
            await connect_nodes(node, second)  # filtered out (other peer)
            await connect_nodes(node, first)
            frame = await ws.recv_json()
            while frame["type"] == "heartbeat":
                frame = await ws.recv_json()
            assert (frame["type"], frame["peer_id"], frame["state"]) == (
                "event",
                str(first.peer_id),
                "established",
            )
            # Idle: a heartbeat carries the global cursor past the filtered-out events.
            beat = await ws.recv_json()
            while beat["type"] != "heartbeat" or beat["last_event_id"] < node.last_event_id:
                beat = await ws.recv_json()
            assert beat["last_event_id"] == node.last_event_id
            await ws.send("hello")
            error = await ws.recv_json()
            while error["type"] == "heartbeat":
                error = await ws.recv_json()
            assert (error["type"], error["code"], error["status"]) == ("error", "unsupported", 400)
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(f"{gw.ws}/v1/events?state=bogus", "events", recorder, key=key):
                pass
        assert info.value.response.status_code == 422
    finally:
        await gw.stop()
