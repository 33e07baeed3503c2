"""Our asyncio libp2p connection layer (TCP, multistream-select, Noise, yamux, identify, ping)."""

from engine.net.interface import (
    ConnectionGate,
    ConnectionInfo,
    Direction,
    HostNotifee,
    P2PHost,
    P2PStream,
    StreamHandler,
)

__all__ = [
    "ConnectionGate",
    "ConnectionInfo",
    "Direction",
    "HostNotifee",
    "P2PHost",
    "P2PStream",
    "StreamHandler",
]
