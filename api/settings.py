"""Gateway settings: one pydantic-settings class, ``GLUEBERRY_`` environment prefix.

The engine's own settings live in :class:`engine.Config`; these are the HTTP side's
(listening address, database, Redis, CORS/WebSocket origins, rate limits, body size,
metrics exposure, tickets, long-poll retention). Nothing is built at import time: the CLI
or a test builds a :class:`GatewaySettings` and passes it to :func:`api.app.create_app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["GatewaySettings"]

KiB = 1024
MiB = 1024 * KiB


def _split_list(value: Any) -> Any:
    """Accept a comma-separated string (as environment variables carry) or a list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class GatewaySettings(BaseSettings):
    """Configuration of the HTTP gateway.

    Every field can be set through ``GLUEBERRY_<NAME>`` in the environment or a ``.env``
    file in the working directory. List fields take comma-separated values.
    """

    model_config = SettingsConfigDict(
        env_prefix="GLUEBERRY_",
        env_file=".env",
        extra="ignore",
        validate_default=True,
        frozen=True,
        # Connection URLs carry passwords: never echo an input value in an error.
        hide_input_in_errors=True,
    )

    # -- listening ------------------------------------------------------------------------
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    http_port: Annotated[int, Field(ge=0, le=65_535)] = Field(
        default=8080, description="HTTP port (0 = any free port)."
    )
    p2p_host: str = Field(
        default="127.0.0.1", description="Address the libp2p host listens on (with p2p_port)."
    )
    p2p_port: Annotated[int, Field(ge=0, le=65_535)] | None = Field(
        default=None,
        description="libp2p TCP port (0 = any free port); unset = the engine's listen_addrs.",
    )

    # -- storage --------------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("./glueberry-data"),
        description="Directory for the identity key and the embedded SQLite database.",
    )
    database_url: str | None = Field(
        default=None,
        repr=False,  # may carry a password
        description=(
            "SQLAlchemy async URL (postgresql+asyncpg://..., sqlite+aiosqlite:///...); "
            "unset = SQLite file glueberry.db in data_dir."
        ),
    )
    migrate_on_start: bool = Field(
        default=True, description="Run database migrations when `glueberry serve` starts."
    )
    redis_url: str | None = Field(
        default=None,
        repr=False,  # may carry a password
        description="Redis URL; when set, rate-limit budgets are shared by every replica.",
    )

    # -- peers ------------------------------------------------------------------------------
    bootstrap_peers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Multiaddrs with a /p2p/<peer id> suffix added to the address book and dialed "
            "on start (comma-separated)."
        ),
    )

    # -- browsers ---------------------------------------------------------------------------
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS (comma-separated; empty = CORS disabled).",
    )
    ws_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Origins allowed to open WebSocket/EventSource channels (comma-separated); "
            "empty = only clients that send no Origin header."
        ),
    )
    ticket_ttl: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="Seconds a single-use browser ticket stays valid."
    )
    max_tickets: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=10_000, description="Outstanding tickets kept at most (oldest dropped)."
    )

    # -- rate limits and request limits -------------------------------------------------
    rate_limit_enabled: bool = Field(default=True, description="Enforce rate limits.")
    rate_limit_per_key: Annotated[float, Field(gt=0, le=1_000_000)] = Field(
        default=50.0, description="Requests per second an API key may make (token refill)."
    )
    rate_limit_burst_per_key: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=100, description="Token bucket size per API key (burst)."
    )
    rate_limit_per_ip: Annotated[float, Field(gt=0, le=1_000_000)] = Field(
        default=5.0,
        description="Requests per second per client IP for unauthenticated requests.",
    )
    rate_limit_burst_per_ip: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=20, description="Token bucket size per client IP (unauthenticated)."
    )
    max_body_size: Annotated[int, Field(ge=1 * KiB, le=256 * MiB)] = Field(
        default=2 * MiB, description="Largest request body in bytes (413 above)."
    )

    # -- observability ------------------------------------------------------------------
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without an API key (default: monitor scope)."
    )
    readiness_max_loop_lag: Annotated[float, Field(gt=0, le=60)] = Field(
        default=0.5, description="Event-loop lag (seconds) above which /readyz reports 503."
    )
    log_level: str = Field(default="info", description="Log level of the server.")

    # -- long-poll message retention ----------------------------------------------------
    message_retention: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=10_000, description="Received messages kept for long-poll readers."
    )
    max_long_poll_wait: Annotated[float, Field(ge=0, le=300)] = Field(
        default=60.0, description="Longest `wait` (seconds) a long-poll request may ask for."
    )
    max_page_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=1000, description="Largest page a list or long-poll request may ask for."
    )

    # -- realtime channels (WebSocket / SSE) ---------------------------------------------
    ws_rate_limit: Annotated[float, Field(gt=0, le=10_000_000)] = Field(
        default=10_000.0, description="Inbound WebSocket frames per second per connection."
    )
    ws_rate_burst: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=20_000, description="Inbound frame bucket size per connection (burst)."
    )
    ws_rate_close_after: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=100, description="Refused frames in a row after which the server closes (4029)."
    )
    ws_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None,
        description=(
            "Received messages queued per channel connection before drops start "
            "(unset = the engine's message_buffer_size)."
        ),
    )
    ws_lag_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.5, description="Fraction of a client's queue at which a `lag` frame is sent."
    )
    ws_max_dropped: Annotated[int, Field(ge=0, le=100_000_000)] = Field(
        default=1024, description="Messages dropped for a slow client before closing (4008)."
    )
    ws_send_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="Seconds one write to a client may stall before closing (4008)."
    )
    ws_max_channels_per_key: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=64,
        description=(
            "Realtime channels (WebSocket and SSE) one API key may hold open; more are "
            "refused with 429 `too_many_channels` before the WebSocket is accepted."
        ),
    )
    ws_heartbeat: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=15.0, description="Idle seconds between `heartbeat` frames on event channels."
    )
    idempotency_keys: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=100_000, description="Stream-send idempotency keys remembered (LRU)."
    )
    idempotency_keys_per_api_key: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=10_000,
        description=(
            "Stream-send idempotency keys one API key may hold; keys in flight are never "
            "evicted, so a new key is refused (`idempotency_keys_exhausted`) when all are."
        ),
    )
    idempotency_ttl: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=600.0, description="Seconds a stream-send idempotency key is remembered."
    )

    @field_validator("bootstrap_peers", "cors_origins", "ws_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_list(value)

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in :attr:`data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'glueberry.db').resolve()}"
