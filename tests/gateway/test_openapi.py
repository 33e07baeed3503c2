"""The committed OpenAPI document matches the code and documents every route."""

from __future__ import annotations

import json

from api.openapi_export import DEFAULT_PATH, openapi_document, render

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def test_committed_openapi_is_current() -> None:
    assert DEFAULT_PATH.exists(), "run: python -m api.openapi_export"
    assert DEFAULT_PATH.read_text() == render(openapi_document()), (
        "openapi/openapi.json is stale; run: python -m api.openapi_export"
    )


def _has_example(node: object) -> bool:
    if isinstance(node, dict):
        if "example" in node or "examples" in node:
            return True
        return any(_has_example(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_example(v) for v in node)
    return False


def _resolve(document: dict, ref: str) -> dict:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_operation_is_documented() -> None:
    document = json.loads(DEFAULT_PATH.read_text())
    operation_ids = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            where = f"{method.upper()} {path}"
            operation_ids.append(op["operationId"])
            assert op.get("summary"), where
            assert op.get("description"), where
            assert "__" not in op["operationId"], where  # stable, not path-derived
            success = [code for code in op["responses"] if code.startswith("2")]
            assert success, where
            for code in success:
                content = op["responses"][code].get("content", {})
                for media in content.values():
                    schema = media.get("schema", {})
                    target = _resolve(document, schema["$ref"]) if "$ref" in schema else schema
                    assert (
                        _has_example(media)
                        or _has_example(target)
                        or _has_example(_examples_of_properties(document, target))
                    ), f"{where} {code}: no example"
            if path not in ("/healthz", "/readyz"):
                assert "401" in op["responses"], where
                assert op.get("security"), where
            body = op.get("requestBody")
            if body is not None:
                schema = body["content"]["application/json"]["schema"]
                refs = [schema, *schema.get("anyOf", [])]
                targets = [_resolve(document, s["$ref"]) for s in refs if "$ref" in s]
                assert any(_has_example(t) for t in targets), f"{where}: body without example"
    assert len(operation_ids) == len(set(operation_ids))


def _examples_of_properties(document: dict, schema: dict) -> list:
    out = []
    for prop in schema.get("properties", {}).values():
        for candidate in [prop, *prop.get("anyOf", []), prop.get("items", {})]:
            if "$ref" in candidate:
                out.append(_resolve(document, candidate["$ref"]))
            else:
                out.append(candidate)
    return out
