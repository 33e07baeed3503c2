"""``glueberry serve``: the node and its gateway in one process, on one asyncio loop.

On start: load or create the identity key in the data directory, migrate the database,
open the repositories, start the node (inside the app's lifespan) and serve HTTP with
``uvicorn.Server(config).serve()`` inside ``asyncio.run`` (no second loop). Once both
listen, it prints one ``name=value`` line per fact on stdout, then ``ready``::

    http_url=http://127.0.0.1:8080
    peer_id=12D3KooW...
    p2p_addr=/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
    ready
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import socket
import sys
from typing import Any

__all__ = ["WS_MAX_QUEUE", "register", "run", "ws_max_message_size"]

HELP = """\
Start a Glueberry node and its HTTP gateway (one process, one event loop).

Every setting is read from GLUEBERRY_<NAME> variables or a .env file in the working
directory; the options below override them. Main settings:

  GLUEBERRY_DATA_DIR          identity key and SQLite file (default ./glueberry-data)
  GLUEBERRY_DATABASE_URL      postgresql+asyncpg://... (default: SQLite in the data dir)
  GLUEBERRY_HTTP_HOST/PORT    HTTP address (default 127.0.0.1:8080; port 0 = any free)
  GLUEBERRY_P2P_HOST/PORT     libp2p TCP address (default: GLUEBERRY_LISTEN_ADDRS)
  GLUEBERRY_LISTEN_ADDRS      libp2p multiaddrs (default /ip4/127.0.0.1/tcp/0)
  GLUEBERRY_BOOTSTRAP_PEERS   multiaddrs with /p2p/<peer id> to add and dial on start
  GLUEBERRY_REDIS_URL         share rate-limit budgets between replicas
  GLUEBERRY_CORS_ORIGINS, GLUEBERRY_WS_ORIGINS    browser origin allow-lists
  GLUEBERRY_RATE_LIMIT_PER_KEY, GLUEBERRY_RATE_LIMIT_BURST_PER_KEY,
  GLUEBERRY_RATE_LIMIT_PER_IP, GLUEBERRY_RATE_LIMIT_BURST_PER_IP    token buckets
  GLUEBERRY_MAX_BODY_SIZE     largest request body in bytes (413 above)
  GLUEBERRY_METRICS_PUBLIC    serve /metrics without an API key
  GLUEBERRY_HANDSHAKE_MODE    auto (built-in) or app (driven over the API)

Create an API key first: glueberry apikey create --scope admin
"""


def settings_reference() -> str:
    """Every ``GLUEBERRY_*`` setting of the gateway, the engine and the database, with its
    default and description (built from the settings classes, so it cannot go stale)."""
    from pydantic_core import PydanticUndefined

    from api.settings import GatewaySettings
    from engine.config import Config
    from models.settings import DatabaseSettings

    lines = ["all settings (environment variable, default):"]
    seen: set[str] = set()
    for title, cls in (
        ("gateway", GatewaySettings),
        ("engine", Config),
        ("database", DatabaseSettings),
    ):
        lines.append(f"  [{title}]")
        for name, field in cls.model_fields.items():
            variable = f"GLUEBERRY_{name.upper()}"
            if variable in seen:
                continue
            seen.add(variable)
            if field.default_factory is not None:
                default: Any = field.default_factory()  # type: ignore[call-arg]
            elif field.default is PydanticUndefined:
                default = "(required)"
            else:
                default = field.default
            if isinstance(default, list):
                default = ",".join(str(v) for v in default)
            lines.append(f"  {variable} ({default})")
            lines.append(f"      {field.description or ''}")
    return "\n".join(lines)


class _HelpAction(argparse.Action):
    """``-h/--help`` that appends the settings reference (imported only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show this help and every setting")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.epilog = settings_reference()
        parser.print_help()
        parser.exit()


def register(subparsers: Any) -> None:
    """Add the ``serve`` sub-command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the node and the HTTP gateway",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action=_HelpAction)
    parser.add_argument("--http-host", help="HTTP bind address (GLUEBERRY_HTTP_HOST)")
    parser.add_argument(
        "--http-port", type=int, help="HTTP port, 0 = any free port (GLUEBERRY_HTTP_PORT)"
    )
    parser.add_argument("--p2p-host", help="libp2p bind address (GLUEBERRY_P2P_HOST)")
    parser.add_argument(
        "--p2p-port", type=int, help="libp2p TCP port, 0 = any free port (GLUEBERRY_P2P_PORT)"
    )
    parser.add_argument("--data-dir", help="data directory (GLUEBERRY_DATA_DIR)")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; return the exit code."""
    from pydantic import ValidationError

    from api.wiring import load_settings
    from engine.errors import GlueberryError

    try:
        settings = load_settings(
            env_file=args.env_file,
            http_host=args.http_host,
            http_port=args.http_port,
            p2p_host=args.p2p_host,
            p2p_port=args.p2p_port,
            data_dir=args.data_dir,
        )
        return asyncio.run(serve(settings, env_file=args.env_file))
    except ValidationError as exc:
        print(f"glueberry serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    except GlueberryError as exc:
        print(f"glueberry serve: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"glueberry serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this on Linux: uvicorn writes a response's head and body
    # separately, and without TCP_NODELAY a keep-alive client's delayed ACK holds the
    # body back ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


WS_MAX_QUEUE = 4
"""Client WebSocket messages uvicorn reads ahead of the application per connection."""


def ws_max_message_size(max_message_size: int) -> int:
    """Largest client WebSocket message accepted: a binary frame carrying one engine
    message, or a JSON text frame (at most ``MAX_CONTROL_FRAME``), plus slack."""
    from api.channels.frames import MAX_CONTROL_FRAME

    return max(MAX_CONTROL_FRAME, max_message_size) + 4096


def _http_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve(settings: Any, *, env_file: str | None = ".env") -> int:
    """Run node + gateway with these settings until the server is told to exit."""
    import uvicorn

    from api.app import create_app
    from api.wiring import database_settings, engine_config, load_identity
    from engine.node import Node
    from migrations import upgrade_async
    from models import ApiKeyRepository, SqlRepository, create_engine

    config = engine_config(settings, env_file)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    identity, created = load_identity(config)
    if created:
        print(f"created identity key {config.key_path}", file=sys.stderr)
    db = database_settings(settings, config)
    if settings.migrate_on_start:
        await upgrade_async(db.url)
    engine = create_engine(db)
    repository = SqlRepository(
        engine,
        identity.peer_id,
        max_metadata_size=config.max_metadata_size,
        flush_interval=config.flush_interval,
    )
    api_keys = ApiKeyRepository(engine, identity.peer_id, flush_interval=config.flush_interval)
    node = Node(config, identity=identity, repository=repository)
    sock = _bind(settings.http_host, settings.http_port)

    async def database_check() -> None:
        await api_keys.get("readiness")

    async def on_shutdown() -> None:
        try:
            await api_keys.close()
            await repository.close()
        finally:
            await engine.dispose()

    async def on_started(_: Any) -> None:
        # The node started the repository's flush loop; the key store has its own.
        await api_keys.start()
        if not await api_keys.list(include_revoked=False):
            # A first run answers 401 to everything but health: say how to get in.
            print(
                "no API key yet: every route but /healthz and /readyz needs one; create "
                f"one with: GLUEBERRY_DATA_DIR={settings.data_dir} glueberry apikey create "
                "--scope admin",
                file=sys.stderr,
                flush=True,
            )

    app = create_app(
        settings,
        node=node,
        api_keys=api_keys,
        database_check=database_check,
        persistent=True,
        on_started=on_started,
        on_shutdown=on_shutdown,
    )

    def announce() -> None:
        # Everything allocated during start-up (modules, settings, the node) lives as long
        # as the process: move it out of the collector's reach, so a full (generation 2)
        # collection no longer scans it. Measured: such a collection paused the loop for
        # ~18 ms (the p99 of connect + handshake); with the freeze it is gone.
        gc.freeze()
        lines = [f"http_url={_http_url(sock)}", f"peer_id={node.peer_id}"]
        lines += [f"p2p_addr={addr}" for addr in node.listen_addrs()]
        lines.append("ready")
        print("\n".join(lines), flush=True)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                announce()

    server = Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level=settings.log_level,
            access_log=False,
            proxy_headers=True,
            server_header=False,
            # Open event streams (SSE) never end on their own: on shutdown, give
            # in-flight responses 5 s, then cancel them (WebSockets get 1012 at once).
            timeout_graceful_shutdown=5,
            # uvicorn's defaults (16 MiB messages, 32 queued per connection) let one
            # client make the gateway buffer 512 MiB while a send waits on backpressure.
            ws_max_size=ws_max_message_size(int(config.max_message_size)),
            ws_max_queue=WS_MAX_QUEUE,
        )
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1
