"""Helpers of the realtime-channel tests: in-process gateways, recording clients, AsyncAPI.

- :class:`LiveGateway` runs a real app (``create_app``) with a real engine node under an
  in-process uvicorn server on 127.0.0.1 (port 0), so the tests use real WebSocket and
  HTTP clients (``websockets``, ``httpx``) against the same server stack as production.
- :class:`Recorder` keeps every JSON frame the server sent, per channel; the
  ``recorder`` fixture of the test modules validates all of them against
  ``openapi/asyncapi.yaml`` when the test ends (:class:`AsyncApiContract`).
- :class:`Client` wraps a ``websockets`` connection: ``recv()`` returns a parsed JSON
  frame (recorded) or ``bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import uvicorn
import websockets
import yaml
from fastapi import FastAPI
from referencing import Registry, Resource

from api.app import create_app
from api.settings import GatewaySettings
from engine.config import Config
from engine.crypto.identity import Identity
from engine.node import Node

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_PATH = ROOT / "openapi" / "asyncapi.yaml"
TIMEOUT = 10.0

NODE_DEFAULTS: dict[str, Any] = {
    "listen_addrs": ["/ip4/127.0.0.1/tcp/0"],
    "handshake_timeout": 10.0,
    "dial_timeout": 5.0,
    "reconnect_base_delay": 0.05,
    "reconnect_max_delay": 0.5,
    "reconnect_max_attempts": 3,
    "auto_connect": False,
}


# -- the contract -------------------------------------------------------------------------


class AsyncApiContract:
    """JSON Schema validation of server frames against ``openapi/asyncapi.yaml``."""

    def __init__(self, path: Path = ASYNCAPI_PATH) -> None:
        self.doc: dict[str, Any] = yaml.safe_load(path.read_text())
        uri = "urn:glueberry:asyncapi"
        self._registry: Registry[Any] = Registry().with_resource(
            uri, Resource.from_contents(self.doc, default_specification=_DRAFT)
        )
        self._uri = uri
        # channel -> frame type -> list of schema refs the server may send
        self.sent: dict[str, dict[str, list[str]]] = {}
        for op in self.doc["operations"].values():
            if op["action"] != "send":
                continue
            channel = op["channel"]["$ref"].rsplit("/", 1)[1]
            for ref in op["messages"]:
                message = self._resolve(ref["$ref"])
                payload_ref = message["payload"].get("$ref")
                if payload_ref is None:
                    continue  # binary data
                schema = self._resolve(payload_ref)
                frame_type = schema["properties"]["type"]["const"]
                self.sent.setdefault(channel, {}).setdefault(frame_type, []).append(payload_ref)

    def _resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        if "$ref" in node and len(node) == 1:
            return self._resolve(node["$ref"])
        result: dict[str, Any] = node
        return result

    def validate(self, channel: str, frame: dict[str, Any]) -> None:
        """Raise ``AssertionError`` unless ``frame`` is a documented server frame."""
        kinds = self.sent.get(channel)
        assert kinds is not None, f"channel {channel!r} is not documented"
        refs = kinds.get(frame.get("type"))  # type: ignore[arg-type]
        assert refs, f"{channel}: frame type {frame.get('type')!r} is not documented: {frame}"
        errors = []
        for ref in refs:
            validator = _DRAFT_VALIDATOR({"$ref": f"{self._uri}{ref}"}, registry=self._registry)
            found = list(validator.iter_errors(frame))
            if not found:
                return
            errors.extend(e.message for e in found)
        raise AssertionError(f"{channel}: frame does not match the contract: {frame}: {errors}")


_DRAFT_VALIDATOR = jsonschema.Draft202012Validator
from referencing.jsonschema import DRAFT202012 as _DRAFT  # noqa: E402


class Recorder:
    """Every JSON frame the server sent in one test, by channel."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []

    def add(self, channel: str, frame: dict[str, Any]) -> None:
        self.frames.append((channel, frame))

    def validate(self, contract: AsyncApiContract) -> int:
        for channel, frame in self.frames:
            contract.validate(channel, frame)
        return len(self.frames)


# -- clients ------------------------------------------------------------------------------


class Client:
    """A recording WebSocket client of one channel."""

    def __init__(self, ws: Any, channel: str, recorder: Recorder) -> None:
        self.ws = ws
        self.channel = channel
        self.recorder = recorder

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        """The next frame: ``bytes`` or a parsed (and recorded) JSON object."""
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(raw, bytes):
            return raw
        frame = json.loads(raw)
        self.recorder.add(self.channel, frame)
        return frame

    async def recv_json(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = await self.recv(timeout)
        assert isinstance(frame, dict), f"expected a JSON frame, got {frame!r}"
        return frame

    async def send(self, data: bytes | str | dict[str, Any]) -> None:
        await self.ws.send(json.dumps(data) if isinstance(data, dict) else data)

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Read (recording) until the server closes; return its close code and reason."""
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await self.recv(timeout)
        return self.ws.close_code, self.ws.close_reason

    async def aclose(self) -> None:
        await self.ws.close()


@contextlib.asynccontextmanager
async def ws_connect(
    url: str,
    channel: str,
    recorder: Recorder,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> AsyncIterator[Client]:
    """Open a channel (bearer ``key`` when given)."""
    extra = dict(headers or {})
    if key is not None:
        extra["Authorization"] = f"Bearer {key}"
    async with websockets.connect(
        url, additional_headers=extra, open_timeout=TIMEOUT, **kwargs
    ) as ws:
        yield Client(ws, channel, recorder)


# -- in-process gateways ------------------------------------------------------------------


class LiveGateway:
    """A node + gateway app served by uvicorn in this process (127.0.0.1, port 0)."""

    def __init__(self, app: FastAPI, node: Node) -> None:
        self.app = app
        self.node = node
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.started = asyncio.Event()
        started = self.started

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                started.set()

            def install_signal_handlers(self) -> None:  # pragma: no cover - not main thread
                return

        self.server = Server(
            uvicorn.Config(
                app,
                lifespan="on",
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=2.0,  # as `glueberry serve` (5 s): ends SSE streams
            )
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> LiveGateway:
        self.task = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
        waiter = asyncio.ensure_future(self.started.wait())
        done, _ = await asyncio.wait(
            {waiter, self.task}, timeout=TIMEOUT, return_when="FIRST_COMPLETED"
        )
        if waiter not in done:
            waiter.cancel()
            raise RuntimeError("in-process gateway did not start")
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(self.task, TIMEOUT * 3)
        self.sock.close()

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.http, headers=headers, timeout=TIMEOUT)


def gateway_settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {"data_dir": tmp_path, "http_port": 0, "rate_limit_enabled": False}
    values.update(overrides)
    return GatewaySettings(_env_file=None, **values)  # type: ignore[call-arg]


def build_node(tmp_path: Path, **overrides: Any) -> Node:
    config = Config(**{**NODE_DEFAULTS, "data_dir": tmp_path, **overrides})
    return Node(config, identity=Identity.generate())


async def live_gateway(
    tmp_path: Path, api_keys: Any, *, node: dict[str, Any] | None = None, **settings: Any
) -> LiveGateway:
    """A started in-process gateway with its own node (the app starts the node)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    engine_node = build_node(tmp_path, **(node or {}))
    app = create_app(gateway_settings(tmp_path, **settings), node=engine_node, api_keys=api_keys)
    return await LiveGateway(app, engine_node).start()


def tiny_socket(port: int) -> socket.socket:
    """A client socket to 127.0.0.1:``port`` with a small receive buffer, so a client
    that does not read fills up quickly (for ``ws_connect(..., sock=)``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def connect_nodes(a: Node, b: Node) -> None:
    """``a`` dials ``b`` and both reach ``established``."""
    from engine.connection_state import ConnectionState
    from engine.errors import PeerExistsError
    from engine.events import EventFilter

    with contextlib.suppress(PeerExistsError):
        await a.add_peer(b.peer_id, [str(addr) for addr in b.listen_addrs()])
    with b.subscribe(EventFilter(peers={a.peer_id}, states={ConnectionState.ESTABLISHED})) as sub:
        await a.connect(b.peer_id, timeout=TIMEOUT)
        if b.connection_state(a.peer_id) is not ConnectionState.ESTABLISHED:
            await asyncio.wait_for(anext(sub), TIMEOUT)


# -- fixtures shared by the channel test modules (import them by name) -------------------

CONTRACT = AsyncApiContract()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Records server frames; validates them all against the AsyncAPI contract at the end."""
    rec = Recorder()
    yield rec
    rec.validate(CONTRACT)


@pytest.fixture
async def gateway(
    tmp_path: Path, api_keys: Any, request: pytest.FixtureRequest
) -> AsyncIterator[LiveGateway]:
    """One in-process gateway with its own node (not connected to anything).

    Parametrize indirectly with gateway settings (``node=`` for engine settings).
    """
    settings: dict[str, Any] = dict(getattr(request, "param", {}))
    node_settings = settings.pop("node", {})
    gw = await live_gateway(tmp_path / "gw", api_keys, node=node_settings, **settings)
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture
async def pair(
    tmp_path: Path, api_keys: Any, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[LiveGateway, LiveGateway]]:
    """Two in-process gateways whose nodes are connected (auto handshake).

    Parametrize indirectly with gateway settings (``node=`` for engine settings).
    """
    settings: dict[str, Any] = dict(getattr(request, "param", {}))
    node_settings = settings.pop("node", {})
    connect = settings.pop("connect", True)
    a = await live_gateway(tmp_path / "a", api_keys, node=node_settings, **settings)
    b = await live_gateway(tmp_path / "b", api_keys, node=node_settings, **settings)
    try:
        if connect:
            await connect_nodes(a.node, b.node)
        yield a, b
    finally:
        await a.stop()
        await b.stop()
