"""``openapi/asyncapi.yaml`` is well-formed and covers every realtime channel of the app.

(The frames the server actually sends are validated against it by the ``recorder``
fixture of every channel test; see ``ws_kit.py``.)
"""

from __future__ import annotations

from typing import Any

import jsonschema
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute, APIWebSocketRoute

from api.routes import ROUTERS

from .ws_kit import AsyncApiContract

DOC: dict[str, Any] = AsyncApiContract().doc


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(ref: str) -> Any:
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reference_resolves_and_schemas_are_valid() -> None:
    assert DOC["asyncapi"].startswith("3.")
    for ref in _refs(DOC):
        assert ref.startswith("#/"), ref
        _resolve(ref)
    for name, schema in DOC["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)  # raises naming the problem
        assert name


def test_operations_use_their_channels_messages() -> None:
    for name, op in DOC["operations"].items():
        channel = op["channel"]["$ref"]
        for message in op["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), (name, message)
    sent = {op["channel"]["$ref"] for op in DOC["operations"].values() if op["action"] == "send"}
    assert sent == {f"#/channels/{name}" for name in DOC["channels"]}


def test_every_realtime_route_is_a_channel() -> None:
    routes = [route for router in ROUTERS for route in router.routes]
    websocket_paths = {r.path for r in routes if isinstance(r, APIWebSocketRoute)}
    sse_paths = {
        r.path for r in routes if isinstance(r, APIRoute) and r.response_class is StreamingResponse
    }
    assert sse_paths == {"/v1/events/stream"}
    addresses = {c["address"] for c in DOC["channels"].values()}
    assert websocket_paths | sse_paths == addresses
