"""``/ui``: the browser monitoring page (static files; no API key needed to load them).

The files are the package data of :mod:`api.ui`, read once and served from memory with
a strict Content-Security-Policy: scripts, styles and images only from this origin, no
inline script or style, no framing, no form posts, Trusted Types enforced (so even a
future ``innerHTML`` with a string would throw instead of parsing markup). Every data
call the page makes goes to the ``/v1`` API with the key the user typed in, so serving
the page itself reveals nothing.

The routes are left out of the OpenAPI document: they are not part of the REST contract.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, Response

__all__ = ["CONTENT_SECURITY_POLICY", "router"]

#: The Content-Security-Policy of every ``/ui`` response.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

_MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files("api.ui").joinpath(name).read_bytes()


def _serve(name: str) -> Response:
    return Response(_asset(name), media_type=_MEDIA_TYPES[name], headers=_HEADERS)


@router.get("/ui")
@router.get("/ui/")
async def ui_index() -> Response:
    """The monitoring page."""
    return _serve("index.html")


@router.get("/ui/app.js")
async def ui_script() -> Response:
    """The page's script."""
    return _serve("app.js")


@router.get("/ui/style.css")
async def ui_style() -> Response:
    """The page's style sheet."""
    return _serve("style.css")


@router.get("/ui/favicon.svg")
async def ui_icon() -> Response:
    """The page's icon."""
    return _serve("favicon.svg")
