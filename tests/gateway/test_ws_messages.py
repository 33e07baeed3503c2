"""``WS /v1/messages`` fan-in on in-process gateways (filters, payloads, watch-only)."""

from __future__ import annotations

import base64

import pytest
import websockets

from models import ApiKeyRepository

from .ws_kit import LiveGateway, Recorder, pair, recorder, ws_connect

__all__ = ["pair", "recorder"]  # fixtures


async def test_fan_in_with_stream_and_peer_filters(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    key = (await api_keys.create("m", ["monitor", "streams:send"])).token
    a_id = a.node.peer_id
    async with (
        ws_connect(f"{b.ws}/v1/messages", "messages", recorder, key=key) as everything,
        ws_connect(
            f"{b.ws}/v1/messages?stream=messages&peer={a_id}", "messages", recorder, key=key
        ) as filtered,
        ws_connect(
            f"{b.ws}/v1/messages?peer={b.node.peer_id}", "messages", recorder, key=key
        ) as nobody,
    ):
        ready = await filtered.recv_json()
        assert ready["type"] == "ready"
        assert (ready["stream"], ready["peer_id"]) == ("messages", str(a_id))
        await everything.recv_json()
        await nobody.recv_json()
        for i in range(20):
            await a.node.send(b.node.peer_id, "messages", b"m%d" % i)
        seqs = []
        for i in range(20):
            for ws in (everything, filtered):
                frame = await ws.recv_json()
                assert frame["type"] == "message"
                assert (frame["peer_id"], frame["stream"]) == (str(a_id), "messages")
                assert base64.b64decode(frame["data"]) == b"m%d" % i
            seqs.append(frame["seq"])
        assert seqs == sorted(set(seqs))
        # The peer filter that matches nobody got nothing; it answers commands with errors.
        await nobody.send("{}")
        error = await nobody.recv_json()
        assert (error["type"], error["code"]) == ("error", "unsupported")


async def test_fan_in_refusals(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, _ = pair
    key = (await api_keys.create("m", ["monitor"])).token
    for query, status in (("?peer=nope", 422), ("?stream=bad!name", 422)):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(f"{a.ws}/v1/messages{query}", "messages", recorder, key=key):
                pass
        assert info.value.response.status_code == status
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(f"{a.ws}/v1/messages", "messages", recorder):
            pass
    assert info.value.response.status_code == 401
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(
            f"{a.ws}/v1/messages",
            "messages",
            recorder,
            key=key,
            headers={"Origin": "https://evil.example"},
        ):
            pass
    assert info.value.response.status_code == 403


@pytest.mark.parametrize(
    "pair", [{"ws_origins": ["https://app.example"], "connect": False}], indirect=True
)
async def test_origin_allow_list(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, _ = pair
    key = (await api_keys.create("m", ["monitor"])).token
    url = f"{a.ws}/v1/messages"
    async with ws_connect(
        url, "messages", recorder, key=key, headers={"Origin": "https://app.example"}
    ) as ws:
        assert (await ws.recv_json())["type"] == "ready"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(
            url, "messages", recorder, key=key, headers={"Origin": "https://other.example"}
        ):
            pass
    assert info.value.response.status_code == 403
    assert b"origin_not_allowed" in info.value.response.body


@pytest.mark.parametrize(
    "pair",
    [{"ws_rate_limit": 1.0, "ws_rate_burst": 1, "ws_rate_close_after": 2, "connect": False}],
    indirect=True,
)
async def test_watch_channels_rate_limit_inbound_frames(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, _ = pair
    key = (await api_keys.create("m", ["monitor"])).token
    for path, channel in (("/v1/messages", "messages"), ("/v1/events", "events")):
        async with ws_connect(f"{a.ws}{path}", channel, recorder, key=key) as ws:
            assert (await ws.recv_json())["type"] == "ready"
            for _ in range(3):
                await ws.send("{}")
            codes = [(await ws.recv_json())["code"] for _ in range(3)]
            assert codes == ["unsupported", "rate_limited", "rate_limited"]
            code, _ = await ws.closed()
            assert code == 4029
