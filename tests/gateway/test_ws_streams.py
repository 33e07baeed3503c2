"""The stream channel ``WS /v1/peers/{id}/streams/{name}`` on in-process gateways.

Two real nodes (TCP on 127.0.0.1) each behind a real app served by uvicorn in this
process; clients are ``websockets`` connections. Every JSON frame the server sends is
recorded and validated against ``openapi/asyncapi.yaml`` at the end of each test.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
import websockets

from api.channels.idempotency import KeyState
from models import ApiKeyRepository

from .ws_kit import LiveGateway, Recorder, pair, recorder, tiny_socket, ws_connect

__all__ = ["pair", "recorder"]  # fixtures


async def _key(api_keys: ApiKeyRepository, *scopes: str) -> str:
    return (await api_keys.create("ws", list(scopes))).token


def _stream_url(gw: LiveGateway, peer: Any, stream: str = "messages") -> str:
    return f"{gw.ws}/v1/peers/{peer}/streams/{stream}"


async def test_messages_acked_and_delivered_in_order(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    key = await _key(api_keys, "monitor", "streams:send")
    count = 300
    async with (
        ws_connect(_stream_url(b, a.node.peer_id), "stream", recorder, key=key) as rx,
        ws_connect(_stream_url(a, b.node.peer_id), "stream", recorder, key=key) as tx,
    ):
        ready_rx, ready_tx = await rx.recv_json(), await tx.recv_json()
        assert ready_rx["type"] == ready_tx["type"] == "ready"
        assert ready_tx["state"] == "established"

        async def send_all() -> None:
            for i in range(count):
                await tx.send(i.to_bytes(4, "big") * 8)

        sender = asyncio.ensure_future(send_all())
        for i in range(1, count + 1):
            assert await tx.recv_json() == {"type": "ack", "seq": i}
        await sender
        for i in range(count):
            assert await rx.recv() == i.to_bytes(4, "big") * 8


async def test_keyed_send_is_idempotent_across_connections(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    key = await _key(api_keys, "monitor", "streams:send")
    frame = {"type": "send", "data": base64.b64encode(b"once").decode(), "key": "k-1"}
    async with ws_connect(_stream_url(b, a.node.peer_id), "stream", recorder, key=key) as rx:
        await rx.recv_json()
        async with ws_connect(_stream_url(a, b.node.peer_id), "stream", recorder, key=key) as tx:
            await tx.recv_json()
            await tx.send(frame)
            assert await tx.recv_json() == {"type": "ack", "seq": 1, "key": "k-1"}
            await tx.send(frame)
            assert await tx.recv_json() == {
                "type": "ack",
                "seq": 2,
                "key": "k-1",
                "duplicate": True,
            }
        # A new connection (the client retrying after a drop) is deduplicated too.
        async with ws_connect(_stream_url(a, b.node.peer_id), "stream", recorder, key=key) as tx:
            await tx.recv_json()
            await tx.send(frame)
            assert (await tx.recv_json())["duplicate"] is True
            await tx.send(b"marker")
            assert await tx.recv_json() == {"type": "ack", "seq": 2}
        assert await rx.recv() == b"once"
        assert await rx.recv() == b"marker"  # "once" arrived exactly once


async def test_refusals_are_nacked_with_codes(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    monitor = await _key(api_keys, "monitor")
    sender = await _key(api_keys, "monitor", "streams:send")
    async with ws_connect(_stream_url(a, b.node.peer_id), "stream", recorder, key=monitor) as ws:
        await ws.recv_json()
        await ws.send(b"x")
        nack = await ws.recv_json()
        assert (nack["type"], nack["seq"], nack["code"], nack["status"]) == (
            "nack",
            1,
            "forbidden",
            403,
        )
    async with ws_connect(_stream_url(a, b.node.peer_id), "stream", recorder, key=sender) as ws:
        await ws.recv_json()
        await ws.send("not json")
        assert (await ws.recv_json())["code"] == "bad_frame"
        await ws.send({"type": "send", "data": "%%%"})
        assert (await ws.recv_json())["code"] == "bad_frame"
        await ws.send(b"x" * (a.node.config.max_message_size + 1))
        nack = await ws.recv_json()
        assert (nack["seq"], nack["code"], nack["status"]) == (3, "message_too_large", 422)
        await ws.send(b"fine")
        assert await ws.recv_json() == {"type": "ack", "seq": 4}
    stranger = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    async with ws_connect(_stream_url(a, stranger), "stream", recorder, key=sender) as ws:
        assert (await ws.recv_json())["state"] == "disconnected"
        await ws.send(b"x")
        nack = await ws.recv_json()
        assert nack["type"] == "nack"
        assert nack["status"] == 409


@pytest.mark.parametrize(
    "pair", [{"ws_rate_limit": 1.0, "ws_rate_burst": 2, "ws_rate_close_after": 3}], indirect=True
)
async def test_inbound_rate_limit_then_close_4029(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    key = await _key(api_keys, "monitor", "streams:send")
    async with ws_connect(_stream_url(a, b.node.peer_id), "stream", recorder, key=key) as ws:
        await ws.recv_json()
        for _ in range(5):
            await ws.send(b"m")
        assert (await ws.recv_json())["type"] == "ack"
        assert (await ws.recv_json())["type"] == "ack"
        for seq in (3, 4, 5):
            nack = await ws.recv_json()
            assert (nack["seq"], nack["code"], nack["status"]) == (seq, "rate_limited", 429)
            assert nack["retry_after"] > 0
        code, reason = await ws.closed()
        assert code == 4029
        assert "rate limited" in (reason or "")


async def test_refused_before_accept(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    url = _stream_url(a, b.node.peer_id)
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": f"Bearer {await _key(api_keys, 'peers:write')}"}, 403),
    ):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(url, "stream", recorder, headers=headers):
                pass
        assert info.value.response.status_code == status
    key = await _key(api_keys, "monitor")
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(_stream_url(a, "not-a-peer"), "stream", recorder, key=key):
            pass
    assert info.value.response.status_code == 422
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(
            _stream_url(a, b.node.peer_id, "bad!name"), "stream", recorder, key=key
        ):
            pass
    assert info.value.response.status_code == 422


async def test_ticket_is_single_use(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    key = await _key(api_keys, "monitor")
    async with a.client(key) as http:
        ticket = (await http.post("/v1/tickets")).json()["ticket"]
    url = f"{_stream_url(a, b.node.peer_id)}?ticket={ticket}"
    async with ws_connect(url, "stream", recorder) as ws:
        assert (await ws.recv_json())["type"] == "ready"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(url, "stream", recorder):
            pass
    assert info.value.response.status_code == 401


@pytest.mark.parametrize("pair", [{"ws_max_dropped": 4, "ws_queue_size": 8}], indirect=True)
async def test_slow_reader_gets_lag_dropped_then_4008(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    key = await _key(api_keys, "monitor", "streams:send")
    url_b = _stream_url(b, a.node.peer_id)
    payload = 32 * 1024
    total = 240
    async with (
        ws_connect(
            url_b, "stream", recorder, key=key, max_queue=1, sock=tiny_socket(b.port)
        ) as slow,
        ws_connect(url_b, "stream", recorder, key=key) as healthy,
        ws_connect(_stream_url(a, b.node.peer_id), "stream", recorder, key=key) as tx,
    ):
        assert (await slow.recv_json())["queue_size"] == 8
        await healthy.recv_json()
        await tx.recv_json()
        # Incompressible payloads (permessage-deflate is on). Windows of 4, below the queue
        # of 8, keep the healthy reader within its queue.
        for start in range(0, total, 4):
            for i in range(start, start + 4):
                await tx.send(i.to_bytes(4, "big") + os.urandom(payload - 4))
            for i in range(start, start + 4):
                assert (await tx.recv_json())["seq"] == i + 1
                assert (await healthy.recv())[:4] == i.to_bytes(4, "big")
        # The stalled reader now reads everything: messages in order, then the
        # accounting, then the close with 4008.
        delivered: list[int] = []
        control: list[dict[str, Any]] = []
        try:
            while True:
                frame = await slow.recv(timeout=3)
                if isinstance(frame, bytes):
                    delivered.append(int.from_bytes(frame[:4], "big"))
                else:
                    control.append(frame)
        except websockets.ConnectionClosed:
            pass
        assert slow.ws.close_code == 4008, (slow.ws.close_code, control)
        assert "too slow" in (slow.ws.close_reason or "")
        kinds = [f["type"] for f in control]
        assert "lag" in kinds
        assert "dropped" in kinds
        dropped = sum(f["count"] for f in control if f["type"] == "dropped")
        assert delivered == sorted(delivered)
        assert len(delivered) + dropped == total, (len(delivered), dropped)
        assert dropped > 4
        # The node and the other clients were not affected.
        await tx.send(b"after")
        assert (await tx.recv_json())["type"] == "ack"
        assert await healthy.recv() == b"after"


@pytest.mark.parametrize("pair", [{"idempotency_keys_per_api_key": 2}], indirect=True)
async def test_idempotency_quota_refuses_when_all_keys_are_in_flight(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    from api.routes.ws_common import channel_state

    a, b = pair
    created = await api_keys.create("ws", ["monitor", "streams:send"])
    cache = channel_state(a.app.state.gateway, a.app).idempotency

    def frame(key: str) -> dict[str, str]:
        return {"type": "send", "data": base64.b64encode(key.encode()).decode(), "key": key}

    url = _stream_url(a, b.node.peer_id)
    async with ws_connect(url, "stream", recorder, key=created.token) as tx:
        await tx.recv_json()
        await tx.send(frame("k-1"))
        assert await tx.recv_json() == {"type": "ack", "seq": 1, "key": "k-1"}
        # Two sends of this API key in flight on other connections fill its quota (2):
        # the acknowledged k-1 is evicted for one of them, the in-flight ones never are.
        other = (str(b.node.peer_id), "messages")
        assert cache.begin(created.record.key_id, (*other, "busy-1")) is KeyState.NEW
        assert cache.begin(created.record.key_id, (*other, "busy-2")) is KeyState.NEW
        await tx.send(frame("k-2"))
        nack = await tx.recv_json()
        assert (nack["type"], nack["seq"], nack["key"]) == ("nack", 2, "k-2")
        assert (nack["code"], nack["status"]) == ("idempotency_keys_exhausted", 429)
        await tx.send(frame("busy-1"))  # the in-flight key is still known: no double send
        assert (await tx.recv_json())["code"] == "duplicate_in_flight"
        # Another API key is not affected by this one's quota.
        async with ws_connect(
            url, "stream", recorder, key=await _key(api_keys, "monitor", "streams:send")
        ) as other_tx:
            await other_tx.recv_json()
            await other_tx.send(frame("k-2"))
            assert await other_tx.recv_json() == {"type": "ack", "seq": 1, "key": "k-2"}
        cache.forget(created.record.key_id, (*other, "busy-2"))
        await tx.send(frame("k-2"))
        assert await tx.recv_json() == {"type": "ack", "seq": 4, "key": "k-2"}
