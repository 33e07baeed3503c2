"""``GET /v1/events/stream``: connection events as Server-Sent Events (in-process gateway).

Parsed with a small SSE reader over httpx and with a plain ``curl -N`` subprocess; every
``data:`` frame is validated against ``openapi/asyncapi.yaml``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.node import Node
from models import ApiKeyRepository

from .conftest import assert_error_shape
from .ws_kit import (
    TIMEOUT,
    LiveGateway,
    Recorder,
    build_node,
    connect_nodes,
    gateway,
    recorder,
)

__all__ = ["gateway", "recorder"]  # fixtures


@pytest.fixture
async def other(tmp_path: Path) -> AsyncIterator[Node]:
    node = build_node(tmp_path / "other")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


class SseReader:
    """Minimal ``text/event-stream`` parser (spec section 9.2) over an httpx response."""

    def __init__(self, response: httpx.Response, recorder: Recorder) -> None:
        self.lines = response.aiter_lines()
        self.recorder = recorder

    async def next(self) -> dict[str, Any]:
        """The next event as ``{"id", "event", "data"}`` (``data`` parsed, recorded)."""
        fields: dict[str, Any] = {}
        async with asyncio.timeout(TIMEOUT):
            async for line in self.lines:
                if line == "":
                    if "data" in fields:
                        frame = json.loads(fields["data"])
                        self.recorder.add("eventsSse", frame)
                        assert fields.get("event") == frame["type"]
                        return {"id": fields.get("id"), "event": fields["event"], "data": frame}
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("stream ended")


async def test_sse_snapshot_events_and_last_event_id_resume(
    gateway: LiveGateway, other: Node, api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    node = gateway.node
    key = (await api_keys.create("sse", ["monitor"])).token
    async with gateway.client(key) as http:
        async with http.stream("GET", "/v1/events/stream?snapshot=true") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            sse = SseReader(response, recorder)
            assert (await sse.next())["event"] == "ready"
            snap = await sse.next()
            assert snap["event"] == "snapshot"
            assert snap["id"] == str(node.last_event_id)
            await connect_nodes(node, other)
            events = []
            while not events or events[-1]["data"]["state"] != "established":
                item = await sse.next()
                assert item["event"] == "event"
                assert item["id"] == str(item["data"]["id"])
                events.append(item)
        cursor = events[0]["id"]
        # EventSource reconnects with Last-Event-ID; it wins over since.
        headers = {"Last-Event-ID": cursor}
        async with http.stream("GET", "/v1/events/stream?since=0", headers=headers) as response:
            sse = SseReader(response, recorder)
            assert (await sse.next())["event"] == "ready"
            resumed = [await sse.next() for _ in events[1:]]
        assert [e["id"] for e in resumed] == [e["id"] for e in events[1:]]


async def test_sse_refused_without_valid_key_or_ticket(
    gateway: LiveGateway, api_keys: ApiKeyRepository
) -> None:
    async with gateway.client() as http:
        assert_error_shape(await http.get("/v1/events/stream"), 401, "unauthorized")
        assert_error_shape(
            await http.get("/v1/events/stream", headers={"Authorization": "Bearer x"}), 401
        )
        assert_error_shape(await http.get("/v1/events/stream?ticket=gbt_nope"), 401)
        writer = (await api_keys.create("w", ["peers:write"])).token
        assert_error_shape(
            await http.get("/v1/events/stream", headers={"Authorization": f"Bearer {writer}"}),
            403,
            "forbidden",
        )
        monitor = (await api_keys.create("m", ["monitor"])).token
        bad = {"Authorization": f"Bearer {monitor}", "Last-Event-ID": "abc"}
        assert_error_shape(await http.get("/v1/events/stream", headers=bad), 422)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_sse_from_plain_curl_with_a_single_use_ticket(
    gateway: LiveGateway, other: Node, api_keys: ApiKeyRepository, recorder: Recorder
) -> None:
    key = (await api_keys.create("curl", ["monitor"])).token
    async with gateway.client(key) as http:
        ticket = (await http.post("/v1/tickets")).json()["ticket"]
    url = f"{gateway.http}/v1/events/stream?ticket={ticket}"
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sN", url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert curl.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(TIMEOUT):
            while not any(line.startswith("event: ready") for line in lines):
                lines.append((await curl.stdout.readline()).decode())
            await connect_nodes(gateway.node, other)
            while not any('"state":"established"' in line for line in lines):
                lines.append((await curl.stdout.readline()).decode())
        for line in lines:
            if line.startswith("data: "):
                recorder.add("eventsSse", json.loads(line.removeprefix("data: ")))
        assert any(line.startswith("id: ") for line in lines)
    finally:
        curl.terminate()
        await curl.wait()
    # The ticket was used: a second curl is refused with 401.
    again = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await again.communicate()
    assert out.decode() == "401"
