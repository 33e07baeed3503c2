"""The events snapshot lists every peer the engine tracks, not only the address book.

Two in-process gateways (real nodes, app-mode handshake that nobody drives); node A
dials B, so B sees A only as an *inbound* peer, and the handshake times out: B puts A in
cooldown. A snapshot of B's ``/v1/events`` must show A in ``cooldown`` at once (it is
in no address book and not connected), over WebSocket and SSE.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from engine.connection_state import ConnectionState
from engine.errors import HandshakeTimeoutError
from engine.events import EventFilter
from models import ApiKeyRepository

from .ws_kit import TIMEOUT, LiveGateway, Recorder, pair, recorder, ws_connect

__all__ = ["pair", "recorder"]  # fixtures

APP_MODE = {
    "connect": False,
    "node": {
        "handshake_mode": "app",
        "handshake_timeout": 0.2,
        "failed_handshake_cooldown": 60.0,
    },
}


async def _inbound_peer_in_cooldown(a: LiveGateway, b: LiveGateway) -> None:
    await a.node.add_peer(b.node.peer_id, [str(addr) for addr in b.node.listen_addrs()])
    watched = EventFilter(peers={a.node.peer_id}, states={ConnectionState.COOLDOWN})
    with b.node.subscribe(watched) as events:
        with pytest.raises(HandshakeTimeoutError):
            await a.node.connect(b.node.peer_id, timeout=TIMEOUT)
        if b.node.connection_state(a.node.peer_id) is not ConnectionState.COOLDOWN:
            await asyncio.wait_for(anext(events), TIMEOUT)


@pytest.mark.parametrize("pair", [APP_MODE], indirect=True)
async def test_snapshot_includes_inbound_peer_in_cooldown(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    await _inbound_peer_in_cooldown(a, b)
    inbound = str(a.node.peer_id)
    assert b.node.peer_states() == {a.node.peer_id: ConnectionState.COOLDOWN}
    assert (await b.node.list_peers())[1] == 0  # not in B's address book
    key = (await api_keys.create("watch", ["monitor"])).token
    url = f"{b.ws}/v1/events?snapshot=true"
    async with ws_connect(url, "events", recorder, key=key) as ws:
        ready = await ws.recv_json()
        snapshot = await ws.recv_json()
    assert snapshot["type"] == "snapshot"
    assert snapshot["last_event_id"] == ready["last_event_id"]
    assert snapshot["peers"] == [{"peer_id": inbound, "state": "cooldown"}]
    # A state filter applies to tracked peers too.
    async with ws_connect(f"{url}&state=established", "events", recorder, key=key) as ws:
        await ws.recv_json()
        assert (await ws.recv_json())["peers"] == []
    # Server-Sent Events share the feed.
    async with (
        b.client(key) as http,
        http.stream("GET", "/v1/events/stream?snapshot=true") as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"snapshot"' in line:
                frame = json.loads(line.removeprefix("data: "))
                assert frame["peers"] == [{"peer_id": inbound, "state": "cooldown"}]
                break
        else:
            pytest.fail("no snapshot event")
