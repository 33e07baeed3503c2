"""REST routes over real engine nodes on the engine's in-memory network (in process).

Two :class:`engine.node.Node` instances talk over ``MemoryNetwork``; each has its own
gateway app driven through httpx's ASGI transport. The end-to-end tests repeat the main
paths with real processes and sockets.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.config import Config
from engine.crypto.identity import Identity
from engine.net.memory import MemoryNetwork
from engine.node import Node
from models import ApiKeyRepository

from .conftest import AppFactory, assert_error_shape, new_key


@dataclass
class Side:
    node: Node
    client: httpx.AsyncClient
    headers: dict[str, str]

    @property
    def peer_id(self) -> str:
        return str(self.node.peer_id)

    @property
    def addr(self) -> str:
        return str(self.node.listen_addrs()[0]).rsplit("/p2p/", 1)[0]


def _node(net: MemoryNetwork, tmp: Path, ip: str, **config: Any) -> Node:
    identity = Identity.generate()
    cfg = Config(_env_file=None, data_dir=tmp, **config)  # type: ignore[call-arg]
    return Node(cfg, identity=identity, host=net.create_host(identity.peer_id, ip=ip))


@pytest.fixture
async def pair(
    make_client: AppFactory, api_keys: ApiKeyRepository, tmp_path: Path
) -> tuple[Side, Side]:
    net = MemoryNetwork()
    headers = await new_key(api_keys, "admin")
    sides = []
    for ip in ("127.0.0.1", "127.0.0.2"):
        node = _node(net, tmp_path / ip, ip)
        _, client = await make_client(node=node)
        sides.append(Side(node, client, headers))
    return sides[0], sides[1]


async def _connect(a: Side, b: Side) -> dict[str, Any]:
    response = await a.client.post(
        "/v1/peers", json={"peer_id": b.peer_id, "addrs": [b.addr]}, headers=a.headers
    )
    assert response.status_code == 201, response.text
    response = await a.client.post(f"/v1/peers/{b.peer_id}/connect", headers=a.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_node_info_and_readiness(pair: tuple[Side, Side]) -> None:
    a, _ = pair
    response = await a.client.get("/v1/node", headers=a.headers)
    assert response.status_code == 200
    info = response.json()
    assert info["peer_id"] == a.peer_id
    assert base64.b64decode(info["public_key"]) == a.node.public_key
    assert info["running"] is True
    assert info["addrs"][0].endswith(f"/p2p/{a.peer_id}")
    response = await a.client.get("/readyz")
    assert response.status_code == 200, response.text
    components = response.json()["components"]
    assert components["p2p"]["ok"] is True
    assert components["event_loop"]["ok"] is True
    assert components["peers"]["connected"] == 0


async def test_address_book_crud_and_pagination(pair: tuple[Side, Side]) -> None:
    a, _ = pair
    ids = [str(Identity.generate().peer_id) for _ in range(5)]
    for i, peer in enumerate(ids):
        response = await a.client.post(
            "/v1/peers",
            json={
                "peer_id": peer,
                "addrs": [f"/ip4/10.0.0.{i}/tcp/4001"],
                "metadata": {"i": str(i)},
            },
            headers=a.headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["persisted"] is False  # in-memory repository: honest about it
        assert body["peer"]["connection"]["state"] == "disconnected"
    response = await a.client.post(
        "/v1/peers", json={"peer_id": ids[0], "addrs": []}, headers=a.headers
    )
    assert_error_shape(response, 409, "peer_exists")
    page = (await a.client.get("/v1/peers?offset=1&limit=2", headers=a.headers)).json()
    assert page["total"] == 5
    assert (page["offset"], page["limit"], len(page["items"])) == (1, 2, 2)
    response = await a.client.patch(
        f"/v1/peers/{ids[0]}", json={"metadata": {"name": "x"}}, headers=a.headers
    )
    assert response.status_code == 200
    assert response.json()["peer"]["metadata"] == {"name": "x"}
    response = await a.client.get(f"/v1/peers/{ids[0]}", headers=a.headers)
    assert response.json()["addrs"] == ["/ip4/10.0.0.0/tcp/4001"]
    response = await a.client.delete(f"/v1/peers/{ids[0]}", headers=a.headers)
    assert response.json() == {"ok": True, "persisted": False}
    assert_error_shape(
        await a.client.get(f"/v1/peers/{ids[0]}", headers=a.headers), 404, "peer_not_found"
    )
    assert_error_shape(
        await a.client.get("/v1/peers/not-a-peer-id", headers=a.headers), 422, "invalid_peer_id"
    )
    response = await a.client.post(
        "/v1/peers", json={"peer_id": ids[1] + "x", "addrs": []}, headers=a.headers
    )
    assert_error_shape(response, 422, "invalid_peer_id")
    response = await a.client.post(
        "/v1/peers",
        json={"peer_id": str(Identity.generate().peer_id), "addrs": ["not a multiaddr"]},
        headers=a.headers,
    )
    assert_error_shape(response, 422)
    assert_error_shape(
        await a.client.get("/v1/peers?limit=0", headers=a.headers), 422, "validation_error"
    )


async def test_connect_send_and_long_poll_receive(pair: tuple[Side, Side]) -> None:
    a, b = pair
    status = await _connect(a, b)
    assert status["state"] == "established"
    assert status["is_outbound"] is True
    peer = (await a.client.get(f"/v1/peers/{b.peer_id}", headers=a.headers)).json()
    assert peer["connection"]["state"] == "established"
    assert peer["connection"]["reconnect_attempts"] == 0
    connections = (await a.client.get("/v1/connections", headers=a.headers)).json()
    assert [c["peer_id"] for c in connections["items"]] == [b.peer_id]

    # A reader waiting before the messages arrive is woken by the first one.
    url = f"/v1/peers/{a.peer_id}/streams/messages/messages?since=0&wait=10"
    waiting = asyncio.create_task(b.client.get(url, headers=b.headers))
    for i in range(3):
        response = await a.client.post(
            f"/v1/peers/{b.peer_id}/streams/messages/messages",
            json={"text": f"hello {i}"},
            headers=a.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"sent": True, "bytes": 7}
    first = (await asyncio.wait_for(waiting, 10)).json()
    assert first["messages"][0]["text"] == "hello 0"
    received = []
    cursor = 0
    for _ in range(10):
        page = (
            await b.client.get(
                f"/v1/peers/{a.peer_id}/streams/messages/messages?since={cursor}&wait=10",
                headers=b.headers,
            )
        ).json()
        received += [m["text"] for m in page["messages"]]
        cursor = page["next_cursor"]
        assert page["gap"] is False
        if len(received) >= 3:
            break
    assert received == ["hello 0", "hello 1", "hello 2"]
    # Binary payloads travel as base64; the global reader filters by stream.
    raw = bytes(range(256))
    response = await a.client.post(
        f"/v1/peers/{b.peer_id}/streams/messages/messages",
        json={"data": base64.b64encode(raw).decode()},
        headers=a.headers,
    )
    assert response.status_code == 200
    page = (
        await b.client.get(
            f"/v1/messages?since={cursor}&wait=10&stream=messages&peer={a.peer_id}",
            headers=b.headers,
        )
    ).json()
    assert base64.b64decode(page["messages"][0]["data"]) == raw
    assert page["messages"][0]["text"] is None
    empty = (await b.client.get("/v1/messages?since=0&stream=other", headers=b.headers)).json()
    assert empty["messages"] == []
    # The cursor moves past every scanned message, matching or not: to the 4th message.
    assert empty["next_cursor"] == page["next_cursor"] == page["messages"][0]["seq"]

    stats = (await a.client.get(f"/v1/peers/{b.peer_id}/stats", headers=a.headers)).json()
    assert stats["stats"]["messages_out"] == 4
    assert stats["stats"]["streams"]["messages"]["messages_out"] == 4
    all_stats = (await a.client.get("/v1/stats", headers=a.headers)).json()
    assert all_stats["total"] == 1
    metrics = (await a.client.get("/metrics", headers=a.headers)).text
    assert "glueberry_connected_peers 1.0" in metrics
    assert 'glueberry_messages_total{direction="out"} 4.0' in metrics


async def test_send_errors(pair: tuple[Side, Side]) -> None:
    a, b = pair
    url = f"/v1/peers/{b.peer_id}/streams/messages/messages"
    response = await a.client.post(url, json={"text": "x"}, headers=a.headers)
    assert response.status_code in (409, 404), response.text
    assert_error_shape(response, response.status_code)
    response = await a.client.post(url, json={"text": "x", "data": "eA=="}, headers=a.headers)
    assert_error_shape(response, 422, "validation_error")
    response = await a.client.post(url, json={"data": "***"}, headers=a.headers)
    assert_error_shape(response, 422, "validation_error")
    await _connect(a, b)
    bad = f"/v1/peers/{b.peer_id}/streams/bad%20name/messages"
    response = await a.client.post(bad, json={"text": "x"}, headers=a.headers)
    assert_error_shape(response, 422, "invalid_stream_name")


async def test_events_long_poll(pair: tuple[Side, Side]) -> None:
    a, b = pair
    waiting = asyncio.create_task(
        a.client.get(
            f"/v1/events?since=0&wait=10&peer={b.peer_id}&state=established", headers=a.headers
        )
    )
    await _connect(a, b)
    page = (await asyncio.wait_for(waiting, 10)).json()
    assert [e["state"] for e in page["events"]] == ["established"]
    assert page["events"][0]["previous_state"] == "connected"
    everything = (await a.client.get("/v1/events?since=0", headers=a.headers)).json()
    assert [e["state"] for e in everything["events"]] == ["connecting", "connected", "established"]
    assert everything["next_cursor"] == everything["events"][-1]["id"]
    later = (
        await a.client.get(f"/v1/events?since={everything['next_cursor']}", headers=a.headers)
    ).json()
    assert later["events"] == []


async def test_disconnect_and_cancel_reconnection(pair: tuple[Side, Side]) -> None:
    a, b = pair
    await _connect(a, b)
    response = await a.client.post(f"/v1/peers/{b.peer_id}/disconnect", headers=a.headers)
    assert response.status_code == 200
    assert response.json()["state"] == "disconnected"
    response = await a.client.delete(f"/v1/peers/{b.peer_id}/reconnection", headers=a.headers)
    assert response.status_code == 200
    assert response.json()["reconnect_attempts"] == 0


async def test_blacklist_peer_and_cidr(pair: tuple[Side, Side]) -> None:
    a, b = pair
    await _connect(a, b)
    response = await b.client.post(
        "/v1/blacklist", json={"target": a.peer_id, "reason": "spam"}, headers=b.headers
    )
    assert response.status_code == 201, response.text
    ban = response.json()["ban"]
    assert (ban["target"], ban["kind"], ban["reason"], ban["expires_at"]) == (
        a.peer_id,
        "peer",
        "spam",
        None,
    )
    # The banned peer was dropped and cannot come back, from either side.
    peer = (await b.client.get("/v1/connections", headers=b.headers)).json()
    assert peer["items"] == []
    response = await a.client.post(f"/v1/peers/{b.peer_id}/connect", headers=a.headers)
    assert response.status_code >= 400
    assert_error_shape(response, response.status_code)
    await b.client.post(
        "/v1/peers", json={"peer_id": a.peer_id, "addrs": [a.addr]}, headers=b.headers
    )
    response = await b.client.post(f"/v1/peers/{a.peer_id}/connect", headers=b.headers)
    assert_error_shape(response, 403)
    response = await b.client.delete(f"/v1/blacklist/{a.peer_id}", headers=b.headers)
    assert response.status_code == 200
    assert_error_shape(await b.client.delete(f"/v1/blacklist/{a.peer_id}", headers=b.headers), 404)

    # A CIDR ban covering A's address (127.0.0.1), with an expiry.
    response = await b.client.post(
        "/v1/blacklist", json={"target": "127.0.0.0/31", "ttl": 3600}, headers=b.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["ban"]["kind"] == "cidr"
    assert response.json()["ban"]["expires_at"] is not None
    bans = (await b.client.get("/v1/blacklist", headers=b.headers)).json()
    assert [x["target"] for x in bans["items"]] == ["127.0.0.0/31"]
    response = await a.client.post(f"/v1/peers/{b.peer_id}/connect", headers=a.headers)
    assert response.status_code >= 400
    response = await b.client.post(f"/v1/peers/{a.peer_id}/connect", headers=b.headers)
    assert response.status_code >= 400
    response = await b.client.delete("/v1/blacklist/127.0.0.0/31", headers=b.headers)
    assert response.status_code == 200
    status = await a.client.post(f"/v1/peers/{b.peer_id}/connect", headers=a.headers)
    assert status.json()["state"] == "established"
    response = await b.client.post(
        "/v1/blacklist", json={"target": "not-an-address"}, headers=b.headers
    )
    assert_error_shape(response, 422, "invalid_ban_target")


async def test_app_mode_handshake(
    make_client: AppFactory, api_keys: ApiKeyRepository, tmp_path: Path
) -> None:
    net = MemoryNetwork()
    headers = await new_key(api_keys, "peers:write", "monitor")
    sides = []
    for ip in ("127.0.0.1", "127.0.0.2"):
        node = _node(net, tmp_path / ip, ip, handshake_mode="app")
        _, client = await make_client(node=node)
        sides.append(Side(node, client, headers))
    a, b = sides
    handshakes = b.node.handshake_messages()
    await a.client.post(
        "/v1/peers", json={"peer_id": b.peer_id, "addrs": [b.addr]}, headers=a.headers
    )
    response = await a.client.post(
        f"/v1/peers/{b.peer_id}/connect", json={"wait": False}, headers=a.headers
    )
    assert response.status_code == 202
    # Wait (bounded) for A to reach Connected: the handshake stream is ready.
    page = (
        await a.client.get(
            f"/v1/events?since=0&wait=10&peer={b.peer_id}&state=connected", headers=a.headers
        )
    ).json()
    assert page["events"], page
    response = await a.client.post(
        f"/v1/peers/{b.peer_id}/handshake/messages", json={"text": "hello"}, headers=a.headers
    )
    assert response.status_code == 200, response.text
    message = await asyncio.wait_for(anext(handshakes), 10)
    assert message.data == b"hello"
    handshakes.unsubscribe()
    for me, other in ((a, b), (b, a)):
        response = await me.client.post(
            f"/v1/peers/{other.peer_id}/handshake/prepare",
            json={"streams": ["chat"]},
            headers=me.headers,
        )
        assert response.status_code == 200, response.text
    for me, other in ((a, b), (b, a)):
        response = await me.client.post(
            f"/v1/peers/{other.peer_id}/handshake/finalize", headers=me.headers
        )
        assert response.status_code == 200, response.text
    status = (await a.client.get(f"/v1/peers/{b.peer_id}/connection", headers=a.headers)).json()
    assert status["state"] == "established"
    response = await a.client.post(
        f"/v1/peers/{b.peer_id}/handshake/prepare",
        json={"streams": ["chat"], "public_key": "***"},
        headers=a.headers,
    )
    assert_error_shape(response, 422, "invalid_public_key")
