"""Glueberry engine: the embeddable P2P messaging library (no FastAPI, no SQLAlchemy).

The public API (docs/engine-api.md) is importable from here::

    from engine import Config, Identity, MemoryRepository, Node
"""

from engine.config import Config, HandshakeMode
from engine.connection_state import ConnectionState, PeerStatus
from engine.crypto.identity import Identity, PeerId
from engine.errors import GlueberryError
from engine.events import ConnectionEvent, EventFilter, Subscription
from engine.net.interface import P2PHost, P2PStream
from engine.node import DecryptionErrorCallback, HandshakeMessage, IncomingMessage, Node
from engine.repository import AuditEntry, BanRecord, MemoryRepository, PeerRecord, Repository
from engine.stats import PeerStats

__all__ = [
    "AuditEntry",
    "BanRecord",
    "Config",
    "ConnectionEvent",
    "ConnectionState",
    "DecryptionErrorCallback",
    "EventFilter",
    "GlueberryError",
    "HandshakeMessage",
    "HandshakeMode",
    "Identity",
    "IncomingMessage",
    "MemoryRepository",
    "Node",
    "P2PHost",
    "P2PStream",
    "PeerId",
    "PeerRecord",
    "PeerStats",
    "PeerStatus",
    "Repository",
    "Subscription",
]
