"""The small host/stream interface the Glueberry node is written against.

The real implementation is our asyncio libp2p stack (:mod:`engine.net.host`); tests may
also use an in-memory pair. The node never touches sockets, Noise or yamux directly.

Stream contract (trio's): ``read`` returns ``b""`` only at end of stream; ``aclose``
always closes; errors distinguish :class:`~engine.errors.StreamClosedError` (we closed
it), :class:`~engine.errors.StreamBrokenError` / ``StreamResetError`` (the peer or the
network failed it, cause attached) and :class:`~engine.errors.StreamBusyError` (two tasks
read, or two tasks wrote, at once).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from multiaddr import Multiaddr

from engine.crypto.identity import PeerId

__all__ = [
    "ConnectionGate",
    "ConnectionInfo",
    "Direction",
    "HostNotifee",
    "HostRefusal",
    "P2PHost",
    "P2PStream",
    "StreamHandler",
]


class Direction(enum.Enum):
    """Who opened a connection or stream."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class HostRefusal(enum.StrEnum):
    """Why a host refused a connection (stable values: metrics keys, log fields)."""

    #: The connection gate refused the remote address (before anything is read).
    GATE_ADDR = "gate_addr"
    #: The connection gate refused the authenticated peer id (after the security handshake).
    GATE_PEER = "gate_peer"
    #: ``max_pending_connections`` upgrades already running.
    MAX_PENDING = "max_pending"
    #: ``max_connections`` reached (established, plus pending when admitting).
    MAX_CONNECTIONS = "max_connections"
    #: ``max_connections_per_ip`` inbound connections from the remote IP.
    MAX_PER_IP = "max_per_ip"
    #: ``connection_rate_per_ip`` exceeded by the remote IP.
    RATE_LIMITED = "rate_limited"
    #: An inbound connection failed or timed out in its security/muxer upgrade.
    UPGRADE_FAILED = "upgrade_failed"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Facts about an established (secured and muxed) connection."""

    peer_id: PeerId
    remote_addr: Multiaddr
    direction: Direction
    # Protocols and agent the peer announced through identify (filled in when known).
    agent_version: str | None = None
    protocols: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class P2PStream(Protocol):
    """One multiplexed, negotiated stream to a peer."""

    @property
    def protocol_id(self) -> str:
        """The protocol negotiated with multistream-select."""
        ...

    @property
    def remote_peer(self) -> PeerId:
        """The authenticated peer at the other end."""
        ...

    @property
    def direction(self) -> Direction:
        """Whether we opened the stream (outbound) or the peer did (inbound)."""
        ...

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Read up to ``max_bytes``; ``b""`` only once the peer closed its write side."""
        ...

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``, waiting for flow-control credit (backpressure)."""
        ...

    async def close_write(self) -> None:
        """Half-close: send end-of-stream; reading stays possible."""
        ...

    async def aclose(self) -> None:
        """Close both directions. Idempotent, never raises for an already-broken stream."""
        ...

    async def reset(self) -> None:
        """Abort the stream in both directions; the peer sees a reset."""
        ...


StreamHandler = Callable[[P2PStream], Awaitable[None]]


class ConnectionGate(Protocol):
    """Called by the host before the security handshake and right after it."""

    def allow_addr(self, remote: Multiaddr, direction: Direction) -> bool:
        """Decide on the remote address (IP/CIDR bans, rate limits) before any crypto."""
        ...

    def allow_peer(self, peer_id: PeerId, direction: Direction) -> bool:
        """Decide on the authenticated peer id right after the security handshake."""
        ...


class HostNotifee(Protocol):
    """Connection notifications, delivered with ``loop.call_soon`` (never inside the
    network path); a notifee must not block, and what it raises is logged and dropped.

    A notifee may also define ``refused(reason, direction, remote)`` (optional, looked up
    with ``getattr``): ``reason`` a :class:`HostRefusal`, ``direction`` the
    :class:`Direction` of the refused connection (``OUTBOUND``: one of our dials), and
    ``remote`` the remote :class:`~multiaddr.Multiaddr` (``None`` when unknown). Every
    refusal the host counts is reported, inbound and outbound.
    """

    def connected(self, info: ConnectionInfo) -> None:
        """A connection to ``info.peer_id`` is up (secured and muxed)."""
        ...

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        """The connection to ``peer_id`` is gone; ``reason`` is None for a clean close."""
        ...


class P2PHost(Protocol):
    """A libp2p host: listens, dials, keeps one connection per peer, opens streams."""

    @property
    def peer_id(self) -> PeerId:
        """Our own peer id."""
        ...

    def listen_addrs(self) -> list[Multiaddr]:
        """Addresses we listen on (with real ports after ``listen``)."""
        ...

    async def listen(self, addrs: Sequence[Multiaddr]) -> None:
        """Start listening on the given multiaddrs (port 0 picks a free port)."""
        ...

    async def dial(
        self,
        peer_id: PeerId,
        addrs: Sequence[Multiaddr],
        *,
        timeout: float,  # noqa: ASYNC109 - a dial is bounded per call, by contract
    ) -> ConnectionInfo:
        """Connect to a peer (or return the existing connection).

        Raises:
            DialError, DialTimeoutError, PeerIdMismatchError, ConnectionGatedError.
        """
        ...

    async def new_stream(
        self,
        peer_id: PeerId,
        protocols: Sequence[str],
        *,
        timeout: float,  # noqa: ASYNC109 - negotiation is bounded per call, by contract
    ) -> P2PStream:
        """Open a stream on the existing connection and negotiate one of ``protocols``.

        Raises:
            NotConnectedError, NegotiationError, StreamLimitError, StreamBrokenError.
        """
        ...

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Run ``handler`` in a new task for every inbound stream of ``protocol_id``."""
        ...

    def remove_stream_handler(self, protocol_id: str) -> None:
        """Stop accepting inbound streams of ``protocol_id``."""
        ...

    def set_stream_handler_match(
        self, family: str, match: Callable[[str], bool], handler: StreamHandler
    ) -> None:
        """Run ``handler`` for inbound streams of every protocol id ``match`` accepts.

        go-libp2p's ``SetStreamHandlerMatch``: multistream-select accepts the ids, but
        identify and ``ls`` never list them (only ``set_stream_handler`` ids are
        announced). Exact handlers win over families. ``family`` is the key for
        :meth:`remove_stream_handler_match` and is not announced either.
        """
        ...

    def remove_stream_handler_match(self, family: str) -> None:
        """Stop accepting the protocol family registered as ``family``."""
        ...

    def add_notifee(self, notifee: HostNotifee) -> None:
        """Register for connect/disconnect notifications."""
        ...

    def set_gate(self, gate: ConnectionGate | None) -> None:
        """Install the connection gate."""
        ...

    def is_connected(self, peer_id: PeerId) -> bool:
        """Whether a live connection to ``peer_id`` exists."""
        ...

    def connection_info(self, peer_id: PeerId) -> ConnectionInfo | None:
        """The live connection to ``peer_id``, if any."""
        ...

    def connected_peers(self) -> list[PeerId]:
        """Peers with a live connection."""
        ...

    async def disconnect(self, peer_id: PeerId) -> None:
        """Close the connection to ``peer_id`` (no-op when not connected)."""
        ...

    async def ping(
        self,
        peer_id: PeerId,
        *,
        timeout: float,  # noqa: ASYNC109 - a ping is bounded per call, by contract
    ) -> float:
        """Round-trip time in seconds over ``/ipfs/ping/1.0.0``."""
        ...

    async def close(self) -> None:
        """Stop listening and close every connection; leaves no task behind."""
        ...
