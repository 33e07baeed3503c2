"""Write (or check) the committed OpenAPI document: ``python -m api.openapi_export``.

The document is generated from an app built with default settings and no node, so it
depends only on the code. ``--check`` exits 1 when the committed file differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PATH", "main", "openapi_document", "render"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the gateway."""
    from api.app import create_app
    from api.settings import GatewaySettings

    app = create_app(GatewaySettings(_env_file=None))  # type: ignore[call-arg]
    document: dict[str, Any] = app.openapi()
    return document


def render(document: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the document, or with ``--check`` compare it with the committed one."""
    parser = argparse.ArgumentParser(prog="python -m api.openapi_export", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="file to write")
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render(openapi_document())
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale; run: python -m api.openapi_export", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
