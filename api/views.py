"""Engine objects to response schemas (one function per kind, no I/O)."""

from __future__ import annotations

import base64
import dataclasses
import enum
from typing import Any

from api.retention import RetainedMessage
from api.schemas import (
    BanPublic,
    ConnectionStatus,
    EventPublic,
    MessagePublic,
    PeerPublic,
)

__all__ = [
    "b64",
    "ban_public",
    "connection_status",
    "event_public",
    "jsonable",
    "message_public",
    "peer_public",
]


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of engine values (dataclasses, enums, peer ids, bytes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return b64(bytes(value))
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "_asdict"):
        return jsonable(value._asdict())
    return str(value)


def _state_text(state: Any) -> str:
    return str(state.value) if isinstance(state, enum.Enum) else str(state)


def connection_status(node: Any, peer_id: Any) -> ConnectionStatus:
    """The live connection status of ``peer_id``."""
    status = node.peer_status(peer_id)
    return ConnectionStatus(
        state=_state_text(status.state),
        reconnect_attempts=int(getattr(status, "reconnect_attempts", 0) or 0),
        next_retry_at=getattr(status, "next_retry_at", None),
        is_outbound=getattr(status, "is_outbound", None),
        connected_since=getattr(status, "connected_since", None),
        cooldown_until=getattr(status, "cooldown_until", None),
    )


def peer_public(node: Any, record: Any) -> PeerPublic:
    """An address-book record with its live connection status."""
    return PeerPublic(
        peer_id=str(record.peer_id),
        addrs=[str(a) for a in record.addrs],
        metadata=dict(record.metadata or {}),
        public_key=b64(record.public_key) if record.public_key else None,
        first_seen=record.first_seen,
        last_seen=record.last_seen,
        connect_count=int(record.connect_count or 0),
        created_at=record.created_at,
        updated_at=record.updated_at,
        blacklisted=bool(node.is_blacklisted(record.peer_id)),
        connection=connection_status(node, record.peer_id),
    )


def ban_public(record: Any) -> BanPublic:
    """A blacklist entry."""
    return BanPublic(
        target=str(record.target),
        kind=record.kind,
        reason=str(record.reason),
        created_at=float(record.created_at),
        expires_at=record.expires_at,
    )


def message_public(message: RetainedMessage) -> MessagePublic:
    """A retained received message."""
    try:
        text: str | None = message.data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return MessagePublic(
        seq=message.seq,
        peer_id=message.peer_id,
        stream=message.stream,
        data=b64(message.data),
        text=text,
        received_at=message.received_at,
    )


def event_public(event: Any) -> EventPublic:
    """A connection event."""
    previous = getattr(event, "previous_state", None)
    return EventPublic(
        id=int(event.id),
        peer_id=str(event.peer_id),
        state=_state_text(event.state),
        previous_state=None if previous is None else _state_text(previous),
        timestamp=float(event.timestamp),
        error_code=getattr(event, "error_code", None),
        error_message=getattr(event, "error_message", None),
    )
