"""Request and response schemas of the REST API (separate from engine records and ORM rows).

Naming follows the template: ``XCreate`` / ``XUpdate`` for request bodies, ``XPublic`` for
what the API returns. Binary payloads travel as base64 (``data``); for curl users a
UTF-8 ``text`` field is accepted on input and offered on output when the bytes decode.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.auth import Scope

__all__ = [
    "BanCreate",
    "BanOptions",
    "BanPublic",
    "BanResult",
    "ConnectRequest",
    "ConnectionList",
    "ConnectionStatus",
    "EventPage",
    "EventPublic",
    "HandshakeMessageCreate",
    "HandshakePrepare",
    "HealthStatus",
    "MessageCreate",
    "MessagePage",
    "MessagePublic",
    "NodeInfo",
    "OperationResult",
    "Page",
    "PeerCreate",
    "PeerPublic",
    "PeerResult",
    "PeerStatsPublic",
    "PeerUpdate",
    "ReadinessPublic",
    "SendResult",
    "StatsPublic",
    "TicketCreate",
    "TicketPublic",
]

T = TypeVar("T")

PEER_ID_EXAMPLE = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
ADDR_EXAMPLE = "/ip4/127.0.0.1/tcp/4001"

# Example objects of the resources; a schema that embeds a resource embeds its example.
_CONNECTION_EXAMPLE: dict[str, Any] = {
    "state": "established",
    "reconnect_attempts": 0,
    "next_retry_at": None,
    "is_outbound": True,
    "connected_since": 1764100000.0,
    "cooldown_until": None,
}
_PEER_EXAMPLE: dict[str, Any] = {
    "peer_id": PEER_ID_EXAMPLE,
    "addrs": [ADDR_EXAMPLE],
    "metadata": {"name": "alice"},
    "public_key": None,
    "first_seen": 1764100000.0,
    "last_seen": 1764100100.0,
    "connect_count": 1,
    "created_at": 1764100000.0,
    "updated_at": 1764100000.0,
    "blacklisted": False,
    "connection": _CONNECTION_EXAMPLE,
}
_BAN_EXAMPLE: dict[str, Any] = {
    "target": "10.0.0.0/8",
    "kind": "cidr",
    "reason": "abuse",
    "created_at": 1764100000.0,
    "expires_at": 1764103600.0,
}
_PEER_STATS_EXAMPLE: dict[str, Any] = {
    "peer_id": PEER_ID_EXAMPLE,
    "stats": {
        "streams": {
            "messages": {
                "messages_in": 3,
                "messages_out": 2,
                "bytes_in": 15,
                "bytes_out": 10,
            }
        },
        "messages_in": 3,
        "messages_out": 2,
        "bytes_in": 15,
        "bytes_out": 10,
        "connected": True,
        "connect_count": 1,
        "ping_rtt": 0.0004,
        "decryption_errors": 0,
    },
}
_EVENT_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "peer_id": PEER_ID_EXAMPLE,
    "state": "established",
    "previous_state": "connected",
    "timestamp": 1764100000.0,
    "error_code": None,
    "error_message": None,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int = Field(description="Items in the whole list.")
    offset: int = Field(description="Index of the first item of this page.")
    limit: int = Field(description="Page size asked for.")


class OperationResult(BaseModel):
    """Outcome of an operation with nothing else to return."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ok": True, "persisted": True}]})

    ok: bool = True
    persisted: bool = Field(
        default=False, description="True when the change was written to the database."
    )


# -- node -----------------------------------------------------------------------------------


class NodeInfo(BaseModel):
    """The local node."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "peer_id": PEER_ID_EXAMPLE,
                    "public_key": "RrG1zALvr1yOZGnoIXfgRgZSLnV8RFi9WRycBUGdVEk=",
                    "addrs": [f"{ADDR_EXAMPLE}/p2p/{PEER_ID_EXAMPLE}"],
                    "version": "0.1.0",
                    "capabilities": ["wire-v1"],
                    "running": True,
                    "handshake_mode": "auto",
                }
            ]
        }
    )

    peer_id: str
    public_key: str = Field(description="Raw Ed25519 public key, base64.")
    addrs: list[str] = Field(description="Listening multiaddrs with the /p2p/ suffix.")
    version: str
    capabilities: list[str]
    running: bool
    handshake_mode: str


# -- peers ----------------------------------------------------------------------------------


class ConnectionStatus(BaseModel):
    """A peer's connection state machine, as seen now."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CONNECTION_EXAMPLE]})

    state: str = Field(
        description="disconnected, connecting, connected, established, reconnecting, cooldown",
        examples=["established"],
    )
    reconnect_attempts: int = 0
    next_retry_at: float | None = Field(default=None, description="Epoch seconds, or null.")
    is_outbound: bool | None = None
    connected_since: float | None = None
    cooldown_until: float | None = None


class PeerCreate(_Strict):
    """A new address-book entry."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "peer_id": PEER_ID_EXAMPLE,
                    "addrs": [ADDR_EXAMPLE],
                    "metadata": {"name": "alice"},
                    "connect": True,
                }
            ]
        },
    )

    peer_id: str = Field(min_length=1, max_length=128)
    addrs: list[str] = Field(default_factory=list, max_length=64)
    metadata: dict[str, str] | None = None
    connect: bool = Field(
        default=False, description="Start connecting in the background once saved."
    )


class PeerUpdate(_Strict):
    """Changes to an address-book entry (omitted fields stay as they are)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"addrs": [ADDR_EXAMPLE], "metadata": {"name": "bob"}}]},
    )

    addrs: list[str] | None = Field(default=None, max_length=64)
    metadata: dict[str, str] | None = None


class PeerPublic(BaseModel):
    """An address-book entry with its live connection status."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PEER_EXAMPLE]})

    peer_id: str
    addrs: list[str]
    metadata: dict[str, str]
    public_key: str | None = Field(default=None, description="Base64, when known.")
    first_seen: float | None = None
    last_seen: float | None = None
    connect_count: int = 0
    created_at: float | None = None
    updated_at: float | None = None
    blacklisted: bool = False
    connection: ConnectionStatus


class PeerResult(BaseModel):
    """A changed peer and whether the change is durable."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"peer": _PEER_EXAMPLE, "persisted": True}]}
    )

    peer: PeerPublic
    persisted: bool = Field(description="True: written to the database before answering.")


class ConnectRequest(_Strict):
    """How to connect."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"wait": True}]})

    wait: bool = Field(
        default=True, description="Answer once Established (true) or at once with 202 (false)."
    )
    timeout: float | None = Field(default=None, gt=0, le=300, description="Seconds.")


class ConnectionList(BaseModel):
    """Peers with a live connection."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"items": [{"peer_id": PEER_ID_EXAMPLE, **_CONNECTION_EXAMPLE}], "total": 1}
            ]
        }
    )

    items: list[dict[str, Any]] = Field(
        description="One object per connected peer: peer_id plus its ConnectionStatus fields."
    )
    total: int


# -- blacklist ------------------------------------------------------------------------------


class BanOptions(_Strict):
    """Reason and optional expiry of a ban."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "spam", "ttl": 3600}]}
    )

    reason: str = Field(default="", max_length=1024)
    expires_at: float | None = Field(default=None, description="Epoch seconds; null = never.")
    ttl: float | None = Field(
        default=None, gt=0, le=10 * 365 * 86_400, description="Seconds from now (alternative)."
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> Self:
        if self.expires_at is not None and self.ttl is not None:
            raise ValueError("give expires_at or ttl, not both")
        return self

    def expiry(self, now: float) -> float | None:
        """The ban's end in epoch seconds, or ``None`` for never."""
        return now + self.ttl if self.ttl is not None else self.expires_at


class BanCreate(BanOptions):
    """A ban on a peer id or an IP network."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"target": "10.0.0.0/8", "reason": "abuse", "ttl": 3600},
                {"target": PEER_ID_EXAMPLE, "reason": "spam"},
            ]
        },
    )

    target: str = Field(
        min_length=1, max_length=128, description="A peer id, an IP address or a CIDR network."
    )


class BanPublic(BaseModel):
    """One blacklist entry."""

    model_config = ConfigDict(json_schema_extra={"examples": [_BAN_EXAMPLE]})

    target: str
    kind: Literal["peer", "cidr"]
    reason: str
    created_at: float
    expires_at: float | None


class BanResult(BaseModel):
    """A created ban and whether it is durable."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"ban": _BAN_EXAMPLE, "persisted": True}]}
    )

    ban: BanPublic
    persisted: bool


# -- messages -------------------------------------------------------------------------------


def _decode_payload(text: str | None, data: str | None) -> bytes:
    if (text is None) == (data is None):
        raise ValueError("give exactly one of 'text' (UTF-8) or 'data' (base64)")
    if text is not None:
        return text.encode()
    assert data is not None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("'data' is not valid base64") from None


class MessageCreate(_Strict):
    """One message: UTF-8 ``text`` or base64 ``data``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "hello"}, {"data": "aGVsbG8="}]},
    )

    text: str | None = None
    data: str | None = Field(default=None, description="Base64 payload.")
    timeout: float | None = Field(default=None, gt=0, le=300, description="Send timeout (s).")

    def payload(self) -> bytes:
        """The message bytes."""
        return _decode_payload(self.text, self.data)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _decode_payload(self.text, self.data)
        return self


class SendResult(BaseModel):
    """A sent message."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"sent": True, "bytes": 5}]})

    sent: bool = True
    bytes: int = Field(description="Payload size.")


class MessagePublic(BaseModel):
    """One received message."""

    seq: int = Field(description="Gateway-wide cursor of this message.")
    peer_id: str
    stream: str
    data: str = Field(description="Base64 payload.")
    text: str | None = Field(description="The payload as UTF-8, when it decodes.")
    received_at: float


class MessagePage(BaseModel):
    """The answer to a long-poll read."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "messages": [
                        {
                            "seq": 1,
                            "peer_id": PEER_ID_EXAMPLE,
                            "stream": "messages",
                            "data": "aGVsbG8=",
                            "text": "hello",
                            "received_at": 1764100000.0,
                        }
                    ],
                    "next_cursor": 1,
                    "gap": False,
                    "oldest": 1,
                }
            ]
        }
    )

    messages: list[MessagePublic]
    next_cursor: int = Field(description="Pass as `since` on the next call.")
    gap: bool = Field(
        description="True when messages after `since` were evicted before being read."
    )
    oldest: int = Field(description="Cursor of the oldest retained message (0 = none).")


# -- handshake (app mode) -----------------------------------------------------------------


class HandshakePrepare(_Strict):
    """Derive the stream key and get ready to receive."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"streams": ["messages"]}]}
    )

    public_key: str | None = Field(
        default=None,
        description="Peer's raw Ed25519 key, base64; default: the key inside its peer id.",
    )
    streams: list[str] = Field(min_length=1, max_length=256)


class HandshakeMessageCreate(MessageCreate):
    """One handshake message: UTF-8 ``text`` or base64 ``data``."""


# -- stats and events -----------------------------------------------------------------------


class PeerStatsPublic(BaseModel):
    """Statistics of one peer."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PEER_STATS_EXAMPLE]})

    peer_id: str
    stats: dict[str, Any]


class StatsPublic(BaseModel):
    """Statistics of every tracked peer."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"peers": [_PEER_STATS_EXAMPLE], "total": 1}]}
    )

    peers: list[PeerStatsPublic]
    total: int


class EventPublic(BaseModel):
    """One connection event."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_EXAMPLE]})

    id: int
    peer_id: str
    state: str
    previous_state: str | None
    timestamp: float
    error_code: str | None = None
    error_message: str | None = None


class EventPage(BaseModel):
    """Connection events after a cursor."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"events": [_EVENT_EXAMPLE], "next_cursor": 7, "gap": False}]
        }
    )

    events: list[EventPublic]
    next_cursor: int
    gap: bool = Field(description="True when the cursor fell out of the event retention.")


# -- tickets ---------------------------------------------------------------------------------


class TicketCreate(_Strict):
    """Ask for a browser ticket, optionally with fewer scopes than the key."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"scopes": ["monitor"]}]}
    )

    scopes: list[Scope] | None = None


class TicketPublic(BaseModel):
    """A single-use ticket for ``?ticket=`` on WebSocket/EventSource routes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ticket": "gbt_3q2-7wXc...", "expires_at": 1764100030.0, "scopes": ["monitor"]}
            ]
        }
    )

    ticket: str
    expires_at: float
    scopes: list[Scope]


# -- health ----------------------------------------------------------------------------------


class HealthStatus(BaseModel):
    """Liveness."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class ReadinessPublic(BaseModel):
    """Readiness with one entry per component."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": True,
                    "components": {
                        "database": {"ok": True, "latency_ms": 0.8},
                        "p2p": {"ok": True, "running": True, "listening": True},
                        "event_loop": {"ok": True, "lag_ms": 0.4, "max_lag_ms": 500},
                        "peers": {"ok": True, "connected": 1},
                    },
                }
            ]
        }
    )

    ready: bool
    components: dict[str, dict[str, Any]]
