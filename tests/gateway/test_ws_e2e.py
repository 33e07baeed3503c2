"""Realtime channels end to end: two real ``glueberry serve`` processes on 127.0.0.1,
driven only through HTTP and WebSocket clients (httpx, websockets, curl).

Every JSON frame received is validated against ``openapi/asyncapi.yaml``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from .processes import GatewayProcess, create_key
from .ws_kit import TIMEOUT, Client, Recorder, recorder, tiny_socket, ws_connect

__all__ = ["recorder"]  # fixture

pytestmark = pytest.mark.slow


class Side:
    """One gateway process, its admin key and its WebSocket base URL."""

    def __init__(self, proc: GatewayProcess, key: str) -> None:
        self.proc = proc
        self.key = key
        self.ws = proc.url.replace("http://", "ws://")
        self.port = int(proc.url.rsplit(":", 1)[1])

    @property
    def peer_id(self) -> str:
        return self.proc.peer_id

    def http(self, key: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.proc.url,
            headers={"Authorization": f"Bearer {key or self.key}"},
            timeout=TIMEOUT * 3,
        )

    def stream_url(self, peer: str, stream: str = "messages") -> str:
        return f"{self.ws}/v1/peers/{peer}/streams/{stream}"


def _start_pair(
    factory: pytest.TempPathFactory, name: str, **env: str
) -> Iterator[tuple[Side, Side]]:
    sides: list[Side] = []
    try:
        for tag in ("a", "b"):
            data_dir = factory.mktemp(f"{name}-{tag}")
            key = create_key(data_dir, "admin")
            sides.append(Side(GatewayProcess(data_dir, **env).start(), key))
        yield sides[0], sides[1]
    finally:
        for side in sides:
            side.proc.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    yield from _start_pair(tmp_path_factory, "ws")


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    """Small buffers: a 16-message client queue, 8 drops tolerated, 8 events retained."""
    yield from _start_pair(
        tmp_path_factory,
        "ws-small",
        GLUEBERRY_WS_QUEUE_SIZE="16",
        GLUEBERRY_WS_MAX_DROPPED="8",
        GLUEBERRY_EVENT_RETENTION="8",
    )


@pytest.fixture(scope="module")
def flow_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    """Engine flow control blocking senders at 8 pending messages per stream."""
    yield from _start_pair(
        tmp_path_factory, "ws-flow", GLUEBERRY_HIGH_WATERMARK="8", GLUEBERRY_LOW_WATERMARK="2"
    )


async def _connect(a: Side, b: Side) -> None:
    async with a.http() as http:
        response = await http.post(
            "/v1/peers", json={"peer_id": b.peer_id, "addrs": [b.proc.p2p_addr]}
        )
        assert response.status_code in (201, 409), response.text
        response = await http.post(f"/v1/peers/{b.peer_id}/connect", json={"timeout": 20})
        assert response.status_code == 200, response.text


async def _disconnect(a: Side, b: Side) -> None:
    async with a.http() as http:
        response = await http.post(f"/v1/peers/{b.peer_id}/disconnect")
        assert response.status_code in (200, 204), response.text


@pytest.fixture
async def connected(pair: tuple[Side, Side]) -> tuple[Side, Side]:
    await _connect(*pair)
    return pair


async def test_ten_thousand_messages_acked_and_in_order(
    connected: tuple[Side, Side], recorder: Recorder
) -> None:
    a, b = connected
    count = 10_000
    async with (
        ws_connect(b.stream_url(a.peer_id), "stream", recorder, key=b.key, compression=None) as rx,
        ws_connect(a.stream_url(b.peer_id), "stream", recorder, key=a.key, compression=None) as tx,
    ):
        assert (await rx.recv_json())["type"] == "ready"
        assert (await tx.recv_json())["state"] == "established"

        # The receiving client keeps at most 1,000 messages in flight, as a real consumer
        # of a bounded stream would: the test checks delivery, order and acks, not how
        # much the gateway buffers for a reader that falls behind (test_slow_reader_*).
        in_flight = asyncio.Semaphore(1000)

        async def send_all() -> None:
            for i in range(count):
                await in_flight.acquire()
                await tx.ws.send(i.to_bytes(4, "big") + bytes(1020))

        async def acks() -> None:
            for i in range(1, count + 1):
                frame = await tx.recv_json()
                assert frame == {"type": "ack", "seq": i}, frame

        async def receive() -> None:
            i = 0
            while i < count:
                data = await rx.recv()
                if not isinstance(data, bytes):
                    # Only an advisory lag warning may come in between; never `dropped`.
                    assert data["type"] == "lag", data
                    continue
                assert int.from_bytes(data[:4], "big") == i
                in_flight.release()
                i += 1

        await asyncio.wait_for(asyncio.gather(send_all(), acks(), receive()), 90)


async def _events_until(ws: Client, last_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while not out or out[-1]["id"] < last_id:
        frame = await ws.recv_json()
        if frame["type"] == "event":
            out.append(frame)
    return out


async def _last_event_id(side: Side) -> int:
    async with side.http() as http:
        page = (await http.get("/v1/events", params={"since": 0, "limit": 1000})).json()
        return int(page["next_cursor"])


async def test_events_disconnect_and_resume_with_since_misses_nothing(
    pair: tuple[Side, Side], recorder: Recorder
) -> None:
    a, b = pair
    await _disconnect(a, b)
    async with ws_connect(f"{a.ws}/v1/events", "events", recorder, key=a.key) as ws:
        start = (await ws.recv_json())["last_event_id"]
        await _connect(a, b)
        seen = await _events_until(ws, await _last_event_id(a))
    cursor = seen[-1]["id"]
    await _disconnect(a, b)  # happens while no client is connected
    await _connect(a, b)
    last = await _last_event_id(a)
    async with ws_connect(f"{a.ws}/v1/events?since={cursor}", "events", recorder, key=a.key) as ws:
        await ws.recv_json()
        resumed = await _events_until(ws, last)
    ids = [f["id"] for f in seen + resumed]
    assert ids == list(range(start + 1, last + 1))  # every global id once, in order


async def test_snapshot_then_changes_under_concurrent_connects(
    pair: tuple[Side, Side], recorder: Recorder
) -> None:
    a, b = pair
    await _connect(a, b)
    url = f"{a.ws}/v1/events?snapshot=true"
    quiet = asyncio.Event()

    async def client(index: int) -> tuple[dict[str, str], list[int]]:
        async with ws_connect(url, "events", recorder, key=a.key) as ws:
            await ws.recv_json()
            snap = await ws.recv_json()
            assert snap["type"] == "snapshot", snap
            model = {p["peer_id"]: p["state"] for p in snap["peers"]}
            ids = [snap["last_event_id"]]
            await quiet.wait()
            final = await _last_event_id(a)
            while ids[-1] < final:
                frame = await ws.recv_json()
                if frame["type"] != "event":
                    continue
                assert frame["id"] == ids[-1] + 1, (frame, ids[-1])  # no gap, no duplicate
                assert frame["previous_state"] == model.get(frame["peer_id"], "disconnected")
                model[frame["peer_id"]] = frame["state"]
                ids.append(frame["id"])
            return model, ids

    async def churn() -> None:
        for _ in range(4):
            await _disconnect(a, b)
            await _connect(a, b)

    clients = []
    churner = asyncio.ensure_future(churn())
    for index in range(10):  # clients connect while the churn runs
        clients.append(asyncio.ensure_future(client(index)))
        await asyncio.wait([churner], timeout=0.02)
    await churner
    quiet.set()
    results = await asyncio.gather(*clients)
    async with a.http() as http:
        state = (await http.get(f"/v1/peers/{b.peer_id}/connection")).json()["state"]
    for model, _ in results:
        assert model[b.peer_id] == state == "established"


async def test_sse_from_plain_curl(pair: tuple[Side, Side], recorder: Recorder) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    a, b = pair
    await _connect(a, b)
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-sN",
        "-H",
        f"Authorization: Bearer {a.key}",
        f"{a.proc.url}/v1/events/stream?snapshot=true&peer={b.peer_id}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert curl.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(TIMEOUT * 3):
            while not any(line.startswith("event: snapshot") for line in lines):
                lines.append((await curl.stdout.readline()).decode())
            await _disconnect(a, b)
            while not any('"state":"disconnected"' in line for line in lines):
                lines.append((await curl.stdout.readline()).decode())
    finally:
        curl.terminate()
        await curl.wait()
    for line in lines:
        if line.startswith("data: "):
            recorder.add("eventsSse", json.loads(line.removeprefix("data: ")))
    assert any(line.startswith("id: ") for line in lines)


async def test_channels_refused_without_valid_key_or_ticket(
    pair: tuple[Side, Side], recorder: Recorder
) -> None:
    a, b = pair
    for url in (f"{a.ws}/v1/events", a.stream_url(b.peer_id), f"{a.ws}/v1/messages"):
        for headers in ({}, {"Authorization": "Bearer gbk_wrong"}):
            with pytest.raises(websockets.InvalidStatus) as info:
                async with ws_connect(url, "events", recorder, headers=headers):
                    pass
            assert info.value.response.status_code == 401
    async with a.http() as http:
        assert (
            await http.get("/v1/events/stream", headers={"Authorization": ""})
        ).status_code == 401
        ticket = (await http.post("/v1/tickets", json={"scopes": ["monitor"]})).json()["ticket"]
    url = f"{a.ws}/v1/events?ticket={ticket}"
    async with ws_connect(url, "events", recorder) as ws:
        assert (await ws.recv_json())["type"] == "ready"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(url, "events", recorder):
            pass
    assert info.value.response.status_code == 401  # a used ticket cannot be reused
    async with httpx.AsyncClient(timeout=TIMEOUT) as plain:
        sse = await plain.get(f"{a.proc.url}/v1/events/stream?ticket={ticket}")
        assert sse.status_code == 401


async def _drain(ws: Client) -> tuple[list[int], list[dict[str, Any]]]:
    """Read until the server closes: message numbers and control frames."""
    delivered: list[int] = []
    control: list[dict[str, Any]] = []
    try:
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):
                delivered.append(int.from_bytes(frame[:4], "big"))
            else:
                control.append(frame)
    except websockets.ConnectionClosed:
        return delivered, control


async def test_slow_reader_gets_lag_dropped_and_4008_others_unaffected(
    small_pair: tuple[Side, Side], recorder: Recorder
) -> None:
    a, b = small_pair
    await _connect(a, b)
    total, size = 200, 32 * 1024
    async with (
        ws_connect(
            b.stream_url(a.peer_id),
            "stream",
            recorder,
            key=b.key,
            max_queue=1,
            sock=tiny_socket(b.port),
        ) as slow,
        ws_connect(b.stream_url(a.peer_id), "stream", recorder, key=b.key) as healthy,
        ws_connect(a.stream_url(b.peer_id), "stream", recorder, key=a.key) as tx,
    ):
        for ws in (slow, healthy, tx):
            await ws.recv_json()
        for start in range(0, total, 8):
            for i in range(start, start + 8):
                await tx.send(i.to_bytes(4, "big") + os.urandom(size - 4))
            for i in range(start, start + 8):
                assert (await tx.recv_json())["seq"] == i + 1
                assert (await healthy.recv())[:4] == i.to_bytes(4, "big")
        delivered, control = await _drain(slow)
        assert slow.ws.close_code == 4008
        assert {"lag", "dropped"} <= {f["type"] for f in control}
        dropped = sum(f["count"] for f in control if f["type"] == "dropped")
        assert delivered == sorted(delivered)
        assert len(delivered) + dropped == total
        # The node and the other clients carry on.
        await tx.send(b"still fine")
        assert (await tx.recv_json())["type"] == "ack"
        assert await healthy.recv() == b"still fine"


async def test_cursor_older_than_retention_gets_reset(
    small_pair: tuple[Side, Side], recorder: Recorder
) -> None:
    a, b = small_pair
    async with ws_connect(f"{a.ws}/v1/events", "events", recorder, key=a.key) as ws:
        ready = await ws.recv_json()
    cursor = ready["last_event_id"]  # a cursor of this run, retained now
    for _ in range(3):  # > 8 events: the first ones leave the retention buffer
        await _disconnect(a, b)
        await _connect(a, b)
    async with ws_connect(f"{a.ws}/v1/events?since={cursor}", "events", recorder, key=a.key) as ws:
        await ws.recv_json()
        reset = await ws.recv_json()
        assert (reset["type"], reset["reason"], reset["since"]) == (
            "reset",
            "cursor_expired",
            cursor,
        )
        snapshot = await ws.recv_json()
        assert snapshot["type"] == "snapshot"
        assert {"peer_id": b.peer_id, "state": "established"} in snapshot["peers"]


async def test_shutdown_with_open_channels_is_prompt(
    tmp_path_factory: pytest.TempPathFactory, recorder: Recorder
) -> None:
    """An open SSE stream and WebSocket do not hold a SIGTERMed gateway up."""
    data_dir = tmp_path_factory.mktemp("ws-shutdown")
    key = create_key(data_dir, "admin")
    side = Side(GatewayProcess(data_dir).start(), key)
    try:
        async with (
            side.http() as http,
            http.stream("GET", "/v1/events/stream") as sse,
            ws_connect(f"{side.ws}/v1/events", "events", recorder, key=key) as ws,
        ):
            assert sse.status_code == 200
            assert (await ws.recv_json())["type"] == "ready"
            loop = asyncio.get_running_loop()
            started = loop.time()
            code = await asyncio.to_thread(side.proc.stop)
            assert code in (0, -15)  # uvicorn re-raises the SIGTERM it handled
            assert loop.time() - started < 15  # 5 s grace for streaming responses
            assert (await ws.closed())[0] in (1001, 1012)
    finally:
        side.proc.stop()


async def test_engine_backpressure_reaches_the_websocket_client(
    flow_pair: tuple[Side, Side], recorder: Recorder
) -> None:
    """Node B frozen (SIGSTOP): A's engine blocks, A's gateway stops reading the client's
    socket, and the client's own sends stall; nothing is lost once B resumes."""
    a, b = flow_pair
    await _connect(a, b)
    total, size = 400, 32 * 1024  # 12.5 MiB: far more than the buffers on the way
    assert b.proc.proc is not None
    pid = b.proc.proc.pid
    async with (
        ws_connect(b.stream_url(a.peer_id), "stream", recorder, key=b.key) as rx,
        ws_connect(a.stream_url(b.peer_id), "stream", recorder, key=a.key) as tx,
    ):
        await rx.recv_json()
        await tx.recv_json()
        acked = 0

        async def send_all() -> None:
            for i in range(total):
                await tx.send(i.to_bytes(4, "big") + os.urandom(size - 4))

        async def count_acks() -> None:
            nonlocal acked
            while acked < total:
                frame = await tx.recv_json(timeout=60)
                assert frame == {"type": "ack", "seq": acked + 1}, frame
                acked += 1

        async def receive_all() -> None:
            for i in range(total):
                frame = await rx.recv(timeout=60)
                assert isinstance(frame, bytes), frame  # no lag/dropped: B's client keeps up
                assert frame[:4] == i.to_bytes(4, "big")

        os.kill(pid, signal.SIGSTOP)
        try:
            sender = asyncio.ensure_future(send_all())
            acks = asyncio.ensure_future(count_acks())
            receiver = asyncio.ensure_future(receive_all())
            done, _ = await asyncio.wait([sender], timeout=3)
            assert not done, "the client pushed everything although node B was frozen"
            assert acked < total
            async with a.http() as http:  # A's gateway itself is not blocked
                assert (await http.get("/v1/node")).status_code == 200
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(sender, acks, receiver), 60)
