"""End to end: real ``glueberry serve`` processes on 127.0.0.1, driven only over HTTP.

Each process has its own data directory (identity key + SQLite database), listens on
port 0 for HTTP and libp2p, and announces its addresses on stdout. Waiting is always on
something (the ``ready`` line, a long-poll answer) with a deadline, never a sleep.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.crypto.identity import Identity

from .conftest import NO_REDIS, REDIS_URL, assert_error_shape
from .processes import GatewayProcess, create_key, run_cli

pytestmark = pytest.mark.slow


class Gateway:
    """A running gateway and an admin key for it."""

    def __init__(self, proc: GatewayProcess, key: str) -> None:
        self.proc = proc
        self.key = key
        self.http = proc.client(key)

    @property
    def peer_id(self) -> str:
        return self.proc.peer_id

    def close(self) -> None:
        self.http.close()
        self.proc.stop()


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    started: list[Gateway] = []
    try:
        for name in ("a", "b"):
            data_dir = tmp_path_factory.mktemp(f"node-{name}")
            key = create_key(data_dir, "admin")
            started.append(Gateway(GatewayProcess(data_dir).start(), key))
        yield started[0], started[1]
    finally:
        for gateway in started:
            gateway.close()


def _add_and_connect(a: Gateway, b: Gateway) -> dict:
    response = a.http.post(
        "/v1/peers",
        json={"peer_id": b.peer_id, "addrs": [b.proc.p2p_addr], "metadata": {"name": "b"}},
    )
    if response.status_code == 409:  # already in the address book from an earlier test
        assert response.json()["error"]["code"] == "peer_exists"
    else:
        assert response.status_code == 201, response.text
        assert response.json()["persisted"] is True
    response = a.http.post(f"/v1/peers/{b.peer_id}/connect", json={"timeout": 20})
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def test_peer_added_connected_and_messages_in_order(nodes: tuple[Gateway, Gateway]) -> None:
    a, b = nodes
    status = _add_and_connect(a, b)
    assert status["state"] == "established"
    peer = a.http.get(f"/v1/peers/{b.peer_id}").json()
    assert peer["connection"]["state"] == "established"
    assert peer["metadata"] == {"name": "b"}
    # B sees A established too (its side of the handshake may finish a moment later).
    events = b.http.get(
        "/v1/events", params={"wait": 20, "peer": a.peer_id, "state": "established"}
    ).json()
    assert events["events"], events

    start = b.http.get("/v1/messages", params={"since": 0}).json()["next_cursor"]
    sent = [f"message {i}" for i in range(20)]
    for text in sent:
        response = a.http.post(
            f"/v1/peers/{b.peer_id}/streams/messages/messages", json={"text": text}
        )
        assert response.status_code == 200, response.text
    received: list[str] = []
    cursor = start
    for _ in range(len(sent)):  # bounded: each round returns at least one message
        page = b.http.get(
            f"/v1/peers/{a.peer_id}/streams/messages/messages",
            params={"since": cursor, "wait": 20},
        ).json()
        assert page["gap"] is False
        assert page["messages"], "long-poll timed out before every message arrived"
        received += [m["text"] for m in page["messages"]]
        cursor = page["next_cursor"]
        if len(received) >= len(sent):
            break
    assert received == sent


def test_blacklist_and_cidr_ban_enforced(nodes: tuple[Gateway, Gateway]) -> None:
    a, b = nodes
    assert _add_and_connect(a, b)["state"] == "established"

    # Ban A on B by peer id: A is dropped, and neither side can reconnect.
    response = b.http.post("/v1/blacklist", json={"target": a.peer_id, "reason": "e2e"})
    assert response.status_code == 201, response.text
    assert response.json()["persisted"] is True
    assert all(c["peer_id"] != a.peer_id for c in b.http.get("/v1/connections").json()["items"])
    response = a.http.post(f"/v1/peers/{b.peer_id}/connect", json={"timeout": 10})
    assert_error_shape(response, response.status_code)
    assert response.status_code >= 400
    b.http.post("/v1/peers", json={"peer_id": a.peer_id, "addrs": [a.proc.p2p_addr]})
    response = b.http.post(f"/v1/peers/{a.peer_id}/connect", json={"timeout": 10})
    assert_error_shape(response, 403, "peer_blacklisted")
    assert b.http.delete(f"/v1/blacklist/{a.peer_id}").status_code == 200

    # A CIDR ban of 127.0.0.0/8 on B refuses A's connections (A dials from 127.0.0.1).
    response = b.http.post(
        "/v1/blacklist", json={"target": "127.0.0.0/8", "reason": "loopback", "ttl": 600}
    )
    assert response.status_code == 201, response.text
    assert response.json()["ban"]["kind"] == "cidr"
    assert b.http.get(f"/v1/peers/{a.peer_id}/connection").json()["state"] != "established"
    response = a.http.post(f"/v1/peers/{b.peer_id}/connect", json={"timeout": 10})
    assert response.status_code >= 400, response.text
    assert b.http.delete("/v1/blacklist/127.0.0.0/8").status_code == 200
    a.http.delete(f"/v1/peers/{b.peer_id}/reconnection")
    assert _add_and_connect(a, b)["state"] == "established"


def test_security_over_http(nodes: tuple[Gateway, Gateway]) -> None:
    a, _ = nodes
    with a.proc.client() as anonymous:
        assert_error_shape(anonymous.get("/v1/node"), 401, "unauthorized")
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
    monitor = create_key(a.proc.data_dir, "monitor")
    with a.proc.client(monitor) as client:
        assert client.get("/v1/node").status_code == 200
        response = client.post("/v1/peers", json={"peer_id": a.peer_id, "addrs": []})
        assert_error_shape(response, 403, "forbidden")
        key_id = monitor.split("_")[1]
        run_cli(a.proc.data_dir, "apikey", "revoke", key_id)
        assert_error_shape(client.get("/v1/node"), 401, "unauthorized")
    response = a.http.post(
        "/v1/peers", content=b"x" * (3 * 1024 * 1024), headers={"Content-Type": "application/json"}
    )
    assert_error_shape(response, 413, "payload_too_large")
    response = a.http.post("/v1/peers", json={"peer_id": 12, "addrs": "nope"})
    assert_error_shape(response, 422, "validation_error")


def test_rate_limit_429(tmp_path: Path) -> None:
    key = create_key(tmp_path, "monitor")
    proc = GatewayProcess(
        tmp_path,
        GLUEBERRY_RATE_LIMIT_PER_KEY="0.001",
        GLUEBERRY_RATE_LIMIT_BURST_PER_KEY="3",
    ).start()
    try:
        with proc.client(key) as client:
            statuses = [client.get("/v1/node").status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            response = client.get("/v1/node")
            assert_error_shape(response, 429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers["ratelimit-limit"] == "3"
    finally:
        proc.stop()


POSTGRES_URL = os.environ.get("GLUEBERRY_TEST_POSTGRES_URL", "")


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgres",
            id="postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not POSTGRES_URL, reason="GLUEBERRY_TEST_POSTGRES_URL is not set"
                ),
            ],
        ),
    ],
)
def test_address_book_survives_restart(tmp_path: Path, database: str) -> None:
    # PostgreSQL: one shared database, rows scoped by this fresh node's peer id.
    env = {"GLUEBERRY_DATABASE_URL": POSTGRES_URL} if database == "postgres" else {}
    key = create_key(tmp_path, "admin", **env)
    friend = str(Identity.generate().peer_id)
    proc = GatewayProcess(tmp_path, **env).start()
    peer_id = proc.peer_id
    try:
        with proc.client(key) as client:
            response = client.post(
                "/v1/peers",
                json={
                    "peer_id": friend,
                    "addrs": ["/ip4/192.0.2.7/tcp/4001"],
                    "metadata": {"name": "friend"},
                },
            )
            assert response.status_code == 201
            assert response.json()["persisted"] is True
            ban = client.post("/v1/blacklist", json={"target": "198.51.100.0/24"})
            assert ban.status_code == 201
    finally:
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says so.
        assert proc.stop() in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.log(), proc.log()
    proc = GatewayProcess(tmp_path, **env).start()
    try:
        assert proc.peer_id == peer_id  # the identity key was kept
        with proc.client(key) as client:  # and so was the API key
            peer = client.get(f"/v1/peers/{friend}")
            assert peer.status_code == 200, peer.text
            assert peer.json()["addrs"] == ["/ip4/192.0.2.7/tcp/4001"]
            assert peer.json()["metadata"] == {"name": "friend"}
            bans = client.get("/v1/blacklist").json()["items"]
            assert [b["target"] for b in bans] == ["198.51.100.0/24"]
    finally:
        proc.stop()


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason=NO_REDIS)
def test_redis_limiter_shared_between_gateway_processes(tmp_path: Path) -> None:
    # Two replicas of one node (same data dir: identity, database and API keys) share a
    # Redis; a key's budget of 4 is spent across both.
    prefix_db = REDIS_URL
    env = {
        "GLUEBERRY_REDIS_URL": prefix_db,
        "GLUEBERRY_RATE_LIMIT_PER_KEY": "0.001",
        "GLUEBERRY_RATE_LIMIT_BURST_PER_KEY": "4",
    }
    key = create_key(tmp_path, "monitor")
    first = GatewayProcess(tmp_path, **env).start()
    second = GatewayProcess(tmp_path, **env).start()
    try:
        assert first.url != second.url
        with first.client(key) as one, second.client(key) as two:
            statuses = [
                one.get("/v1/node").status_code,
                two.get("/v1/node").status_code,
                one.get("/v1/node").status_code,
                two.get("/v1/node").status_code,
            ]
            assert statuses == [200, 200, 200, 200]
            assert_error_shape(one.get("/v1/node"), 429, "rate_limited")
            assert_error_shape(two.get("/v1/node"), 429, "rate_limited")
    finally:
        first.stop()
        second.stop()


def test_serve_help_documents_settings(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "serve", "--help").stdout
    for text in ("--http-port", "--p2p-port", "GLUEBERRY_DATA_DIR", "GLUEBERRY_REDIS_URL"):
        assert text in out
    # Every setting of the gateway, the engine and the database is listed with its default.
    from api.settings import GatewaySettings
    from engine.config import Config
    from models.settings import DatabaseSettings

    for cls in (GatewaySettings, Config, DatabaseSettings):
        for name in cls.model_fields:
            assert f"GLUEBERRY_{name.upper()} (" in out, name
