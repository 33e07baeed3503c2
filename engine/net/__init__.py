"""Our asyncio libp2p connection layer (TCP, multistream-select, Noise, yamux, identify, ping).

The node is written against :class:`P2PHost` / :class:`P2PStream`; :class:`Host` is the
real implementation (``Host(identity, config)``). Protocol ids: ``/multistream/1.0.0``,
``/noise``, ``/yamux/1.0.0``, ``/ipfs/id/1.0.0``, ``/ipfs/ping/1.0.0``.
"""

from engine.net.gate import CidrGate, ConnectionLimiter
from engine.net.host import Host, HostStream
from engine.net.identify import IDENTIFY_PROTOCOL_ID, IdentifyInfo
from engine.net.interface import (
    ConnectionGate,
    ConnectionInfo,
    Direction,
    HostNotifee,
    HostRefusal,
    P2PHost,
    P2PStream,
    StreamHandler,
)
from engine.net.multistream import MULTISTREAM_PROTOCOL_ID
from engine.net.noise import NOISE_PROTOCOL_ID
from engine.net.ping import PING_PROTOCOL_ID
from engine.net.protocols import ProtocolMatch, ProtocolTable
from engine.net.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID

__all__ = [
    "IDENTIFY_PROTOCOL_ID",
    "MULTISTREAM_PROTOCOL_ID",
    "NOISE_PROTOCOL_ID",
    "PING_PROTOCOL_ID",
    "YAMUX_PROTOCOL_ID",
    "CidrGate",
    "ConnectionGate",
    "ConnectionInfo",
    "ConnectionLimiter",
    "Direction",
    "Host",
    "HostNotifee",
    "HostRefusal",
    "HostStream",
    "IdentifyInfo",
    "P2PHost",
    "P2PStream",
    "ProtocolMatch",
    "ProtocolTable",
    "StreamHandler",
]
