"""``WS /v1/handshake``: an application drives the two-phase handshake of two app-mode
nodes over their gateways, then messages flow on the stream it prepared."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from models import ApiKeyRepository

from .ws_kit import TIMEOUT, Client, LiveGateway, Recorder, pair, recorder, ws_connect

__all__ = ["pair", "recorder"]  # fixtures

APP_MODE = {"node": {"handshake_mode": "app", "default_streams": []}, "connect": False}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Inbox:
    """Frames of one client by kind: waiting for one kind keeps the others for later."""

    def __init__(self, ws: Client) -> None:
        self.ws = ws
        self.pending: list[dict[str, Any]] = []

    async def next(self, kind: str) -> dict[str, Any]:
        for index, frame in enumerate(self.pending):
            if frame["type"] == kind:
                return self.pending.pop(index)
        while True:
            frame = await self.ws.recv_json()
            if frame["type"] == kind:
                return frame
            self.pending.append(frame)


async def _drive(hs: Client, events: Client, peer: str) -> None:
    """One side's application: hello, prepare, ready, finalize."""
    inbox = Inbox(hs)
    while True:
        frame = await events.recv_json()
        if frame.get("state") == "connected" and frame.get("peer_id") == peer:
            break
    await hs.send({"type": "send", "id": "hello", "peer_id": peer, "data": _b64(b"hello")})
    assert await inbox.next("ack") == {"type": "ack", "op": "send", "id": "hello"}
    hello = await inbox.next("handshake_message")
    assert (hello["peer_id"], base64.b64decode(hello["data"])) == (peer, b"hello")
    await hs.send({"type": "prepare", "id": 2, "peer_id": peer, "streams": ["chat"]})
    assert await inbox.next("ack") == {"type": "ack", "op": "prepare", "id": 2}
    await hs.send({"type": "send", "id": 3, "peer_id": peer, "data": _b64(b"ready")})
    await inbox.next("ack")
    ready = await inbox.next("handshake_message")
    assert base64.b64decode(ready["data"]) == b"ready"
    await hs.send({"type": "finalize", "id": 4, "peer_id": peer})
    assert await inbox.next("ack") == {"type": "ack", "op": "finalize", "id": 4}


@pytest.mark.parametrize("pair", [APP_MODE], indirect=True)
async def test_app_drives_the_handshake_over_websockets(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    key = (await api_keys.create("app", ["monitor", "peers:write", "streams:send"])).token
    a_id, b_id = str(a.node.peer_id), str(b.node.peer_id)
    async with (
        ws_connect(f"{a.ws}/v1/handshake", "handshake", recorder, key=key) as hs_a,
        ws_connect(f"{b.ws}/v1/handshake", "handshake", recorder, key=key) as hs_b,
        ws_connect(f"{a.ws}/v1/events", "events", recorder, key=key) as ev_a,
        ws_connect(f"{b.ws}/v1/events", "events", recorder, key=key) as ev_b,
    ):
        for ws in (hs_a, hs_b):
            ready = await ws.recv_json()
            assert (ready["type"], ready["handshake_mode"]) == ("ready", "app")
        await ev_a.recv_json()
        await ev_b.recv_json()
        await a.node.add_peer(b.node.peer_id, [str(x) for x in b.node.listen_addrs()])
        dial = asyncio.ensure_future(a.node.connect(b.node.peer_id, timeout=TIMEOUT))
        await asyncio.wait_for(
            asyncio.gather(_drive(hs_a, ev_a, b_id), _drive(hs_b, ev_b, a_id)), TIMEOUT
        )
        await dial
        async with (
            ws_connect(f"{a.ws}/v1/peers/{b_id}/streams/chat", "stream", recorder, key=key) as tx,
            ws_connect(f"{b.ws}/v1/peers/{a_id}/streams/chat", "stream", recorder, key=key) as rx,
        ):
            assert (await tx.recv_json())["state"] == "established"
            await rx.recv_json()
            await tx.send(b"over the app handshake")
            assert await tx.recv_json() == {"type": "ack", "seq": 1}
            assert await rx.recv() == b"over the app handshake"


@pytest.mark.parametrize("pair", [APP_MODE], indirect=True)
async def test_commands_need_peers_write_and_valid_frames(
    pair: tuple[LiveGateway, LiveGateway], api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    a, b = pair
    monitor = (await api_keys.create("mon", ["monitor"])).token
    writer = (await api_keys.create("w", ["monitor", "peers:write"])).token
    b_id = str(b.node.peer_id)
    async with ws_connect(f"{a.ws}/v1/handshake", "handshake", recorder, key=monitor) as ws:
        await ws.recv_json()
        await ws.send({"type": "finalize", "id": "f", "peer_id": b_id})
        nack = await ws.recv_json()
        assert (nack["type"], nack["op"], nack["id"], nack["status"]) == (
            "nack",
            "finalize",
            "f",
            403,
        )
    async with ws_connect(f"{a.ws}/v1/handshake", "handshake", recorder, key=writer) as ws:
        await ws.recv_json()
        await ws.send({"type": "dance", "id": 9})
        nack = await ws.recv_json()
        assert (nack["op"], nack["id"], nack["code"], nack["status"]) == (None, 9, "bad_frame", 400)
        await ws.send(b"\x00")
        assert (await ws.recv_json())["code"] == "bad_frame"
        await ws.send({"type": "send", "id": 1, "peer_id": b_id, "data": _b64(b"x")})
        nack = await ws.recv_json()
        assert (nack["op"], nack["code"], nack["status"]) == ("send", "peer_not_connected", 409)
        await ws.send({"type": "prepare", "id": 2, "peer_id": "bogus", "streams": ["s"]})
        assert (await ws.recv_json())["code"] == "invalid_peer_id"
