"""The browser monitoring page served at ``/ui`` (static files, no build step).

``index.html``, ``app.js``, ``style.css`` and ``favicon.svg`` are package data, read by
:mod:`api.routes.ui`. The page asks the user for an API key (kept in ``sessionStorage``,
sent only as ``Authorization: Bearer`` on REST calls) and watches connection events with
an ``EventSource`` opened with a single-use ticket. See ``docs/ui.md``.
"""

__all__: list[str] = []
