"""Glueberry gateway: the FastAPI REST/WebSocket app over the engine, and the CLI.

Build the app with :func:`api.app.create_app`; the ``glueberry`` command lives in
:mod:`api.cli`.
"""

__all__: list[str] = []
