"""Engine settings: one pydantic-settings class, ``GLUEBERRY_`` environment prefix.

Every setting of the Go library's config and of the improvement plan lives here, with a
default and validation that says what is wrong. Nothing is built at import time: create a
``Config`` (from keyword arguments, the environment or a ``.env`` file) and pass it in.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Config", "HandshakeMode"]

KiB = 1024
MiB = 1024 * KiB

PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]


class HandshakeMode(enum.StrEnum):
    """Who drives the Glueberry handshake."""

    AUTO = "auto"  # the built-in handshake (hello -> prepare -> complete -> finalize)
    APP = "app"  # the application receives handshake messages and calls prepare/finalize


class Config(BaseSettings):
    """Configuration of a Glueberry node (engine layer).

    Every field can be set through ``GLUEBERRY_<NAME>`` in the environment.
    """

    model_config = SettingsConfigDict(
        env_prefix="GLUEBERRY_",
        env_file=None,
        extra="ignore",
        validate_default=True,
        frozen=True,
    )

    # -- identity and addresses ----------------------------------------------------------
    data_dir: Path = Field(
        default=Path("./glueberry-data"),
        description="Directory for the identity key and the embedded database.",
    )
    key_file: str = Field(
        default="identity.key", description="Identity key file name, relative to data_dir."
    )
    listen_addrs: list[str] = Field(
        default_factory=lambda: ["/ip4/127.0.0.1/tcp/0"],
        description="Multiaddrs the libp2p host listens on (port 0 = any free port).",
    )
    agent_version: str = Field(
        default="glueberry-py/0.1.0", max_length=256, description="Announced via identify."
    )

    # -- handshake --------------------------------------------------------------------------
    handshake_mode: HandshakeMode = Field(
        default=HandshakeMode.AUTO, description="'auto' (built-in) or 'app' (application)."
    )
    handshake_timeout: PositiveSeconds = Field(
        default=30.0, description="Seconds a connected peer has to finish the handshake."
    )
    failed_handshake_cooldown: Annotated[float, Field(ge=0, le=86_400)] = Field(
        default=60.0, description="Seconds a peer is not redialed after a failed handshake."
    )
    default_streams: list[str] = Field(
        default_factory=lambda: ["messages"],
        description="Stream names the built-in handshake prepares.",
    )

    # -- dialing and reconnection -------------------------------------------------------
    dial_timeout: PositiveSeconds = Field(default=10.0, description="Seconds per dial attempt.")
    reconnect_base_delay: PositiveSeconds = Field(
        default=1.0, description="First reconnect backoff delay in seconds."
    )
    reconnect_max_delay: PositiveSeconds = Field(
        default=300.0, description="Cap of the reconnect backoff delay in seconds."
    )
    reconnect_max_attempts: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        default=10, description="Reconnect attempts before giving up (0 = no reconnection)."
    )
    reconnect_jitter: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.2, description="Relative jitter applied to every backoff delay (0..1)."
    )
    auto_connect: bool = Field(
        default=True, description="Dial address-book peers when the node starts."
    )

    # -- liveness -----------------------------------------------------------------------------
    keepalive_interval: PositiveSeconds = Field(
        default=5.0, description="Seconds between keep-alive pings on an idle connection."
    )
    keepalive_timeout: PositiveSeconds = Field(
        default=15.0, description="A peer silent this long (seconds) is declared gone."
    )

    # -- messages, streams and buffers ----------------------------------------------------
    max_message_size: Annotated[int, Field(ge=64, le=64 * MiB)] = Field(
        default=1 * MiB, description="Largest message payload, enforced on send and receive."
    )
    max_stream_name_length: Annotated[int, Field(ge=1, le=128)] = Field(
        default=64, description="Longest stream name."
    )
    max_metadata_size: Annotated[int, Field(ge=0, le=1 * MiB)] = Field(
        default=4 * KiB, description="Largest peer metadata (JSON-encoded bytes)."
    )
    max_streams_per_peer: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=64, description="Named streams one peer may have open."
    )
    event_buffer_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=1024, description="Queued events per subscriber before drops are counted."
    )
    event_retention: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=10_000,
        description="Latest connection events kept so clients can resume from a cursor.",
    )
    message_buffer_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=4096, description="Queued received messages per subscriber."
    )
    high_watermark: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=1024, description="Pending sends per stream at which senders block."
    )
    low_watermark: Annotated[int, Field(ge=0, le=1_000_000)] = Field(
        default=256, description="Pending sends per stream at which blocked senders resume."
    )
    send_buffer_bytes: Annotated[int, Field(ge=1 * KiB, le=1024 * MiB)] = Field(
        default=4 * MiB,
        description=(
            "Queued-but-unsent payload bytes per stream at which senders block (they "
            "resume at half); a single larger message still goes through alone."
        ),
    )
    message_buffer_bytes: Annotated[int, Field(ge=1 * KiB, le=64 * 1024 * MiB)] = Field(
        default=64 * MiB,
        description=(
            "Queued received payload bytes per subscriber before the oldest are dropped "
            "(besides message_buffer_size)."
        ),
    )
    send_timeout: PositiveSeconds = Field(
        default=30.0, description="Seconds a send may wait for flow-control credit."
    )
    yamux_window_size: Annotated[int, Field(ge=256 * KiB, le=16 * MiB)] = Field(
        default=256 * KiB, description="Initial yamux receive window per stream (bytes)."
    )
    max_yamux_streams: Annotated[int, Field(ge=1, le=65_536)] = Field(
        default=256, description="Concurrent yamux streams per connection; excess is reset."
    )
    nonce_warning_threshold: Annotated[int, Field(ge=1)] = Field(
        default=2**40, description="Messages per peer after which a nonce-reuse warning fires."
    )

    # -- connection limits ------------------------------------------------------------------
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=2048, description="Established connections the host accepts."
    )
    max_pending_connections: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=128, description="Connections in the security/muxer handshake at once."
    )
    max_connections_per_ip: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=64, description="Concurrent connections from one IP address."
    )
    connection_rate_per_ip: Annotated[float, Field(gt=0, le=100_000)] = Field(
        default=50.0, description="Inbound connection attempts per second per IP (burst 2x)."
    )

    # -- stats ------------------------------------------------------------------------------
    max_tracked_peers: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=10_000, description="Peers whose statistics are kept; the stalest are evicted."
    )
    stats_ttl: PositiveSeconds = Field(
        default=86_400.0, description="Seconds after which a disconnected peer's stats expire."
    )

    # -- health -----------------------------------------------------------------------------
    health_interval: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=1.0, description="Seconds between event-loop lag samples (node.health())."
    )
    repository_probe_interval: PositiveSeconds = Field(
        default=10.0, description="Seconds between repository reachability probes."
    )
    max_event_loop_lag: PositiveSeconds = Field(
        default=0.5, description="Event-loop lag (seconds) above which the node is not ready."
    )

    # -- persistence ------------------------------------------------------------------------
    flush_interval: PositiveSeconds = Field(
        default=5.0, description="Seconds between flushes of hot data (last seen, counters)."
    )

    @field_validator("listen_addrs")
    @classmethod
    def _check_listen_addrs(cls, value: list[str]) -> list[str]:
        from multiaddr import Multiaddr

        for text in value:
            try:
                Multiaddr(text)
            except Exception as exc:  # the multiaddr package raises several types
                raise ValueError(f"invalid listen multiaddr {text!r}: {exc}") from None
        return value

    @field_validator("default_streams")
    @classmethod
    def _check_stream_names(cls, value: list[str]) -> list[str]:
        from engine.stream_name import check_stream_name_text

        for name in value:
            check_stream_name_text(name, 128)
        return value

    @model_validator(mode="after")
    def _check_relations(self) -> Self:
        if self.low_watermark >= self.high_watermark:
            raise ValueError(
                f"low_watermark ({self.low_watermark}) must be below "
                f"high_watermark ({self.high_watermark})"
            )
        if self.reconnect_base_delay > self.reconnect_max_delay:
            raise ValueError(
                f"reconnect_base_delay ({self.reconnect_base_delay}) must not exceed "
                f"reconnect_max_delay ({self.reconnect_max_delay})"
            )
        if self.keepalive_interval >= self.keepalive_timeout:
            raise ValueError(
                f"keepalive_interval ({self.keepalive_interval}) must be below "
                f"keepalive_timeout ({self.keepalive_timeout})"
            )
        for name in self.default_streams:
            if len(name) > self.max_stream_name_length:
                raise ValueError(
                    f"default stream {name!r} is longer than max_stream_name_length "
                    f"({self.max_stream_name_length})"
                )
        return self

    @property
    def key_path(self) -> Path:
        """Full path of the identity key file."""
        return self.data_dir / self.key_file
