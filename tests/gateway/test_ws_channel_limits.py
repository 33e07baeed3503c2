"""Open realtime channels per API key are bounded (``ws_max_channels_per_key``).

Two in-process gateways (real nodes, uvicorn, TCP on 127.0.0.1); clients are
``websockets`` and httpx. The excess channel is refused with HTTP 429
``too_many_channels`` before the WebSocket is accepted; other keys are unaffected; a
closed channel gives its slot back.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from api.routes.ws_common import channel_state
from models import ApiKeyRepository

from .ws_kit import TIMEOUT, LiveGateway, Recorder, pair, recorder, ws_connect

__all__ = ["pair", "recorder"]  # fixtures

LIMIT = {"ws_max_channels_per_key": 2, "connect": False}


async def _open_count(gw: LiveGateway, key_id: str, expected: int) -> None:
    # The server releases a slot when its handler ends, just after the close handshake.
    state = channel_state(gw.app.state.gateway, gw.app)
    async with asyncio.timeout(TIMEOUT):
        while state.per_key.get(key_id, 0) != expected:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("pair", [LIMIT], indirect=True)
async def test_excess_channels_of_one_key_are_refused_with_429(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    created = await api_keys.create("ws", ["monitor", "streams:send"])
    key, key_id = created.token, created.record.key_id
    other = (await api_keys.create("ws2", ["monitor"])).token
    stream_url = f"{a.ws}/v1/peers/{b.node.peer_id}/streams/messages"
    async with ws_connect(stream_url, "stream", recorder, key=key) as first:
        assert (await first.recv_json())["type"] == "ready"
        async with ws_connect(f"{a.ws}/v1/messages", "messages", recorder, key=key) as second:
            assert (await second.recv_json())["type"] == "ready"
            for url, channel in (
                (f"{a.ws}/v1/events", "events"),
                (stream_url, "stream"),
                (f"{a.ws}/v1/handshake", "handshake"),
            ):
                with pytest.raises(websockets.InvalidStatus) as info:
                    async with ws_connect(url, channel, recorder, key=key):
                        pass
                response = info.value.response
                assert response.status_code == 429
                error = json.loads(response.body or b"{}")["error"]
                assert error["code"] == "too_many_channels"
                assert error["details"] == {"limit": 2}
            # Server-Sent Events count against the same limit.
            async with a.client(key) as http:
                refused = await http.get("/v1/events/stream")
                assert refused.status_code == 429
                assert refused.json()["error"]["code"] == "too_many_channels"
            # Another API key has its own budget.
            async with ws_connect(f"{a.ws}/v1/events", "events", recorder, key=other) as ws:
                assert (await ws.recv_json())["type"] == "ready"
            assert channel_state(a.app.state.gateway, a.app).per_key[key_id] == 2
        # A closed channel gives its slot back.
        await _open_count(a, key_id, 1)
        async with ws_connect(f"{a.ws}/v1/events", "events", recorder, key=key) as again:
            assert (await again.recv_json())["type"] == "ready"
    await _open_count(a, key_id, 0)


@pytest.mark.parametrize("pair", [LIMIT], indirect=True)
async def test_sse_channel_releases_its_slot(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository
) -> None:
    a, _ = pair
    created = await api_keys.create("sse", ["monitor"])
    async with a.client(created.token) as http:
        for _ in range(3):  # more streams than the limit, one after another
            async with http.stream("GET", "/v1/events/stream") as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("event: ready"):
                        break
            await _open_count(a, created.record.key_id, 0)
