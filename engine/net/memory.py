"""An in-memory :class:`~engine.net.interface.P2PHost`: many hosts on one fake network.

It honours the same contract as the real libp2p host (:mod:`engine.net.host`): gates are
consulted on both sides (address first, then peer id), one connection per peer pair,
notifees hear ``connected`` / ``disconnected`` on both sides and ``refused`` for every
gate refusal, inbound streams run their
handler in a task the host owns, streams follow trio's contract (``b""`` only at end of
stream, ``aclose`` idempotent, Closed / Broken / Reset / Busy errors) and apply
backpressure with a per-stream window; a reset discards buffered data (as yamux does).
An optional ``max_connections`` refuses connections over the limit like the real host's
limiter (``refused`` notification, ``ResourceLimitError`` for our dials). ``close()``
leaves no task behind.

Addresses look like real ones (``/ip4/127.0.0.<n>/tcp/<port>``) so address gates and
CIDR bans behave as they would on sockets. Use :class:`MemoryNetwork` to build hosts::

    net = MemoryNetwork()
    a = net.create_host(identity_a.peer_id)
    b = net.create_host(identity_b.peer_id, ip="127.0.0.2")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from multiaddr import Multiaddr

from engine.crypto.identity import PeerId
from engine.errors import (
    ConnectionGatedError,
    DialError,
    DialTimeoutError,
    NegotiationError,
    NotConnectedError,
    PeerIdMismatchError,
    ResourceLimitError,
    StreamBusyError,
    StreamClosedError,
    StreamResetError,
)
from engine.net.interface import (
    ConnectionGate,
    ConnectionInfo,
    Direction,
    HostNotifee,
    HostRefusal,
    P2PStream,
    StreamHandler,
)
from engine.net.protocols import ProtocolMatch, ProtocolTable

__all__ = ["MemoryHost", "MemoryNetwork", "MemoryStream"]

_log = logging.getLogger(__name__)

DEFAULT_WINDOW = 256 * 1024
"""Bytes a stream buffers for its reader before writers wait (like a yamux window)."""


def _call_quietly(func: Callable[..., None], *args: object) -> None:
    try:
        func(*args)
    except Exception:
        _log.exception("host notifee raised")


class _Pipe:
    """One direction of a stream: bytes written by one end, read by the other."""

    __slots__ = ("buf", "eof", "readable", "window", "writable")

    def __init__(self, window: int) -> None:
        self.buf = bytearray()
        self.eof = False
        self.window = window
        self.readable = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()


class MemoryStream:
    """One end of an in-memory stream (implements :class:`~engine.net.interface.P2PStream`)."""

    def __init__(
        self,
        protocol_id: str,
        remote_peer: PeerId,
        direction: Direction,
        incoming: _Pipe,
        outgoing: _Pipe,
    ) -> None:
        self._protocol_id = protocol_id
        self._remote_peer = remote_peer
        self._direction = direction
        self._in = incoming
        self._out = outgoing
        self._other: MemoryStream | None = None
        self._closed = False  # we called aclose()
        self._write_closed = False
        self._reset = False
        self._reading = False
        self._writing = False
        self._on_close: list[MemoryStream] = []
        self._conn: _Connection | None = None

    @property
    def protocol_id(self) -> str:
        """The negotiated protocol."""
        return self._protocol_id

    @property
    def remote_peer(self) -> PeerId:
        """The peer at the other end."""
        return self._remote_peer

    @property
    def direction(self) -> Direction:
        """Who opened the stream."""
        return self._direction

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Read up to ``max_bytes``; ``b""`` once the peer closed its write side.

        Raises:
            StreamClosedError: we closed the stream.
            StreamResetError: the stream was reset (by either side or a lost connection).
            StreamBusyError: another task is reading.
        """
        if self._reading:
            raise StreamBusyError("another task is reading this stream")
        self._reading = True
        try:
            pipe = self._in
            while True:
                if self._reset:
                    raise StreamResetError("stream reset")
                if self._closed:
                    raise StreamClosedError("stream closed")
                if pipe.buf:
                    n = min(max_bytes, len(pipe.buf))
                    data = bytes(pipe.buf[:n])
                    del pipe.buf[:n]
                    if len(pipe.buf) < pipe.window:
                        pipe.writable.set()
                    if not pipe.buf:
                        pipe.readable.clear()
                    return data
                if pipe.eof:
                    return b""
                pipe.readable.clear()
                await pipe.readable.wait()
        finally:
            self._reading = False

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``, waiting while the reader's window is full.

        Raises:
            StreamClosedError: we closed the stream or its write side.
            StreamResetError: the stream was reset.
            StreamBusyError: another task is writing.
        """
        if self._writing:
            raise StreamBusyError("another task is writing this stream")
        self._writing = True
        try:
            pipe = self._out
            view = memoryview(data).cast("B")
            offset = 0
            while True:
                if self._reset:
                    raise StreamResetError("stream reset")
                if self._closed or self._write_closed:
                    raise StreamClosedError("stream closed for writing")
                if offset >= len(view):
                    return
                room = pipe.window - len(pipe.buf)
                if room <= 0:
                    pipe.writable.clear()
                    await pipe.writable.wait()
                    continue
                chunk = view[offset : offset + room]
                other = self._other
                if other is None or not other._closed:
                    pipe.buf += chunk
                    pipe.readable.set()
                offset += len(chunk)
        finally:
            self._writing = False

    async def close_write(self) -> None:
        """Half-close: the peer reads ``b""`` after the buffered data."""
        if not self._write_closed and not self._reset:
            self._write_closed = True
            self._out.eof = True
            self._out.readable.set()

    async def aclose(self) -> None:
        """Close both directions. Idempotent; never raises."""
        if self._closed:
            return
        await self.close_write()
        self._closed = True
        self._in.buf.clear()
        self._in.readable.set()
        self._in.writable.set()
        self._detach()

    async def reset(self) -> None:
        """Abort both directions; the peer's reads and writes fail with a reset."""
        self.reset_now()

    def reset_now(self) -> None:
        """Synchronous reset (used when the connection goes away)."""
        for end in (self, self._other):
            if end is None or end._reset:
                continue
            end._reset = True
            # As yamux: a reset discards what was buffered, in both directions.
            end._in.buf.clear()
            end._out.buf.clear()
            end._in.readable.set()
            end._in.writable.set()
            end._out.readable.set()
            end._out.writable.set()
            end._detach()

    def _detach(self) -> None:
        if self._conn is not None:
            self._conn.streams.discard(self)


@dataclass(eq=False)
class _Connection:
    """A connection between two hosts; both hosts index it under the other's peer id."""

    a: MemoryHost
    b: MemoryHost
    a_addr: Multiaddr  # how b sees a
    b_addr: Multiaddr  # how a sees b
    dialer: MemoryHost
    streams: set[MemoryStream] = field(default_factory=set)
    closed: bool = False

    def other(self, host: MemoryHost) -> MemoryHost:
        return self.b if host is self.a else self.a

    def info_for(self, host: MemoryHost) -> ConnectionInfo:
        other = self.other(host)
        remote = self.b_addr if host is self.a else self.a_addr
        direction = Direction.OUTBOUND if host is self.dialer else Direction.INBOUND
        return ConnectionInfo(
            peer_id=other.peer_id,
            remote_addr=remote,
            direction=direction,
            agent_version="glueberry-memory",
            protocols=tuple(other._handlers.listed()),
        )


class MemoryNetwork:
    """A registry of listening :class:`MemoryHost` objects keyed by (ip, port)."""

    def __init__(self, *, window: int = DEFAULT_WINDOW, latency: float = 0.0) -> None:
        self.window = window
        self.latency = latency
        self._listeners: dict[tuple[str, int], MemoryHost] = {}
        self._next_port = 40_000

    def create_host(
        self, peer_id: PeerId, *, ip: str = "127.0.0.1", max_connections: int | None = None
    ) -> MemoryHost:
        """A new, not yet listening host for ``peer_id`` whose connections come from ``ip``.

        Args:
            peer_id: the host's peer id.
            ip: the address its connections come from (and it listens on).
            max_connections: established connections allowed (None: no limit), refused
                as on the real host (inbound: closed; outbound: ResourceLimitError).
        """
        return MemoryHost(self, peer_id, ip, max_connections=max_connections)

    def _allocate_port(self) -> int:
        self._next_port += 1
        return self._next_port

    def _bind(self, host: MemoryHost, ip: str, port: int) -> Multiaddr:
        if port == 0:
            port = self._allocate_port()
            while (ip, port) in self._listeners:
                port = self._allocate_port()
        elif (ip, port) in self._listeners:
            raise DialError(f"address in use: {ip}:{port}")
        self._listeners[(ip, port)] = host
        return Multiaddr(f"/ip4/{ip}/tcp/{port}")

    def _unbind(self, host: MemoryHost) -> None:
        for key in [k for k, v in self._listeners.items() if v is host]:
            del self._listeners[key]

    def _lookup(self, addr: Multiaddr) -> MemoryHost | None:
        try:
            ip = addr.value_for_protocol("ip4")
            port = int(addr.value_for_protocol("tcp"))
        except Exception:  # the multiaddr package raises several types
            return None
        return self._listeners.get((str(ip), port))


class MemoryHost:
    """An in-memory libp2p host (implements :class:`~engine.net.interface.P2PHost`)."""

    def __init__(
        self,
        network: MemoryNetwork,
        peer_id: PeerId,
        ip: str,
        *,
        max_connections: int | None = None,
    ) -> None:
        self._net = network
        self._max_connections = max_connections
        self._peer_id = peer_id
        self._ip = ip
        self._addrs: list[Multiaddr] = []
        self._handlers = ProtocolTable()
        self._notifees: list[HostNotifee] = []
        self._gate: ConnectionGate | None = None
        self._conns: dict[PeerId, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ephemeral = 50_000
        self._refused: dict[Direction, dict[HostRefusal, int]] = {d: {} for d in Direction}

    # -- identity and listening -----------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        """Our peer id."""
        return self._peer_id

    def listen_addrs(self) -> list[Multiaddr]:
        """The addresses we listen on."""
        return list(self._addrs)

    async def listen(self, addrs: Sequence[Multiaddr]) -> None:
        """Listen on ``addrs`` (the IP is replaced by this host's IP; port 0 = any)."""
        for addr in addrs:
            try:
                port = int(addr.value_for_protocol("tcp"))
            except Exception:
                port = 0
            self._addrs.append(self._net._bind(self, self._ip, port))

    # -- configuration -----------------------------------------------------------------

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Accept (and announce) inbound streams of ``protocol_id`` with ``handler``.

        Raises:
            ValueError: an empty id or one containing a newline.
        """
        self._handlers.set(protocol_id, handler)

    def remove_stream_handler(self, protocol_id: str) -> None:
        """Stop accepting ``protocol_id``."""
        self._handlers.remove(protocol_id)

    def set_stream_handler_match(
        self, family: str, match: ProtocolMatch, handler: StreamHandler
    ) -> None:
        """Accept every protocol id ``match`` accepts, unannounced (as on the real host).

        Raises:
            ValueError: an empty family key.
        """
        self._handlers.set_match(family, match, handler)

    def remove_stream_handler_match(self, family: str) -> None:
        """Stop accepting the family registered as ``family``."""
        self._handlers.remove_match(family)

    def add_notifee(self, notifee: HostNotifee) -> None:
        """Register for connect/disconnect notifications."""
        self._notifees.append(notifee)

    def set_gate(self, gate: ConnectionGate | None) -> None:
        """Install the connection gate."""
        self._gate = gate

    # -- connections -------------------------------------------------------------------

    def is_connected(self, peer_id: PeerId) -> bool:
        """Whether a connection to ``peer_id`` is up."""
        return peer_id in self._conns

    def connection_info(self, peer_id: PeerId) -> ConnectionInfo | None:
        """The live connection to ``peer_id``."""
        conn = self._conns.get(peer_id)
        return conn.info_for(self) if conn is not None else None

    def connected_peers(self) -> list[PeerId]:
        """Peers with a live connection."""
        return list(self._conns)

    def _source_addr(self) -> Multiaddr:
        self._ephemeral += 1
        return Multiaddr(f"/ip4/{self._ip}/tcp/{self._ephemeral}")

    async def dial(
        self,
        peer_id: PeerId,
        addrs: Sequence[Multiaddr],
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ConnectionInfo:
        """Connect to ``peer_id`` at one of ``addrs`` (or return the live connection).

        Raises:
            DialError: no listener at any address, or the remote side refused us.
            DialTimeoutError: ``timeout`` is not positive.
            PeerIdMismatchError: the listener has another peer id.
            ConnectionGatedError: our own gate refused the address or the peer.
            ResourceLimitError: our ``max_connections`` is reached.
        """
        if self._closed:
            raise DialError("host is closed")
        if timeout <= 0:
            raise DialTimeoutError("dial timeout must be positive")
        if self._net.latency:
            await asyncio.sleep(self._net.latency)
        else:
            await asyncio.sleep(0)
        existing = self._conns.get(peer_id)
        if existing is not None:
            return existing.info_for(self)
        if peer_id == self._peer_id:
            raise DialError("cannot dial ourselves")
        last: Exception = DialError(f"no address to dial for {peer_id}")
        for addr in addrs:
            if self._gate is not None and not self._gate.allow_addr(addr, Direction.OUTBOUND):
                self._refuse(HostRefusal.GATE_ADDR, Direction.OUTBOUND, addr)
                last = ConnectionGatedError(f"address {addr} refused by our gate")
                continue
            if self._at_limit(peer_id):
                self._refuse(HostRefusal.MAX_CONNECTIONS, Direction.OUTBOUND, addr)
                raise ResourceLimitError(
                    "connection limit reached",
                    details={"limit": self._max_connections, "what": "connections"},
                )
            remote = self._net._lookup(addr)
            if remote is None or remote._closed:
                last = DialError(f"connection refused: {addr}")
                continue
            if remote.peer_id != peer_id:
                last = PeerIdMismatchError(f"dialed {peer_id} at {addr} but found {remote.peer_id}")
                continue
            src = self._source_addr()
            rgate = remote._gate
            if rgate is not None and not rgate.allow_addr(src, Direction.INBOUND):
                remote._refuse(HostRefusal.GATE_ADDR, Direction.INBOUND, src)
                last = DialError(f"connection to {addr} closed by the remote side")
                continue
            if remote._at_limit(self._peer_id):
                remote._refuse(HostRefusal.MAX_CONNECTIONS, Direction.INBOUND, src)
                last = DialError(f"connection to {addr} closed by the remote side")
                continue
            if self._gate is not None and not self._gate.allow_peer(peer_id, Direction.OUTBOUND):
                self._refuse(HostRefusal.GATE_PEER, Direction.OUTBOUND, addr)
                raise ConnectionGatedError(f"peer {peer_id} refused by our gate")
            if rgate is not None and not rgate.allow_peer(self._peer_id, Direction.INBOUND):
                remote._refuse(HostRefusal.GATE_PEER, Direction.INBOUND, src)
                last = DialError(f"connection to {addr} closed by the remote side")
                continue
            existing = self._conns.get(peer_id)  # a simultaneous dial may have won
            if existing is not None:
                return existing.info_for(self)
            conn = _Connection(a=self, b=remote, a_addr=src, b_addr=addr, dialer=self)
            self._conns[peer_id] = conn
            stale = remote._conns.get(self._peer_id)
            remote._conns[self._peer_id] = conn
            if stale is not None and stale.dialer.peer_id == self._peer_id:
                # As on the real host: a newer connection dialed by the same side replaces
                # the old one silently (no notification on the remote side).
                stale.closed = True
                for stream in list(stale.streams):
                    stream.reset_now()
            else:
                remote._notify_connected(conn)
            self._notify_connected(conn)
            return conn.info_for(self)
        raise last

    # Notifications go through loop.call_soon, as on the real host: a notifee never runs
    # inside the network path, and a dial may return before its notification arrives.

    def _notify_connected(self, conn: _Connection) -> None:
        info = conn.info_for(self)
        loop = asyncio.get_running_loop()
        for notifee in list(self._notifees):
            loop.call_soon(_call_quietly, notifee.connected, info)

    def _notify_disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        loop = asyncio.get_running_loop()
        for notifee in list(self._notifees):
            loop.call_soon(_call_quietly, notifee.disconnected, peer_id, reason)

    def _at_limit(self, peer_id: PeerId) -> bool:
        # A connection replacing one with the same peer does not add to the count.
        limit = self._max_connections
        return limit is not None and peer_id not in self._conns and len(self._conns) >= limit

    def _refuse(self, reason: HostRefusal, direction: Direction, remote: Multiaddr | None) -> None:
        counts = self._refused[direction]
        counts[reason] = counts.get(reason, 0) + 1
        loop = asyncio.get_running_loop()
        for notifee in list(self._notifees):
            method = getattr(notifee, "refused", None)
            if method is not None:
                loop.call_soon(_call_quietly, method, reason, direction, remote)

    def refusal_counts(self) -> dict[str, dict[str, int]]:
        """Refused connections by direction and :class:`HostRefusal` value (as on the
        real host)."""
        return {d.value: {str(r): n for r, n in c.items()} for d, c in self._refused.items()}

    def _drop(self, conn: _Connection, reason: BaseException | None) -> None:
        if conn.closed:
            return
        conn.closed = True
        for stream in list(conn.streams):
            stream.reset_now()
        conn.streams.clear()
        for host in (conn.a, conn.b):
            other = conn.other(host)
            if host._conns.get(other.peer_id) is conn:
                del host._conns[other.peer_id]
                host._notify_disconnected(other.peer_id, reason)

    async def disconnect(self, peer_id: PeerId) -> None:
        """Close the connection to ``peer_id`` (no-op when not connected)."""
        conn = self._conns.get(peer_id)
        if conn is not None:
            self._drop(conn, None)
        await asyncio.sleep(0)

    # -- streams -----------------------------------------------------------------------

    async def new_stream(
        self,
        peer_id: PeerId,
        protocols: Sequence[str],
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> P2PStream:
        """Open a stream to ``peer_id`` negotiating the first protocol it supports.

        Raises:
            NotConnectedError: no connection to ``peer_id``.
            NegotiationError: the peer supports none of ``protocols``.
        """
        if self._net.latency:
            await asyncio.sleep(self._net.latency)
        conn = self._conns.get(peer_id)
        if conn is None or conn.closed:
            raise NotConnectedError(f"not connected to {peer_id}")
        remote = conn.other(self)
        for proto in protocols:
            handler = remote._handlers.lookup(proto)
            if handler is not None:
                break
        else:
            raise NegotiationError(f"peer supports none of {list(protocols)}")
        a_to_b = _Pipe(self._net.window)
        b_to_a = _Pipe(self._net.window)
        ours = MemoryStream(proto, remote.peer_id, Direction.OUTBOUND, b_to_a, a_to_b)
        theirs = MemoryStream(proto, self._peer_id, Direction.INBOUND, a_to_b, b_to_a)
        ours._other, theirs._other = theirs, ours
        ours._conn = theirs._conn = conn
        conn.streams.add(ours)
        conn.streams.add(theirs)
        remote._spawn_handler(handler, theirs)
        return ours

    def _spawn_handler(self, handler: StreamHandler, stream: MemoryStream) -> None:
        async def run() -> None:
            try:
                await handler(stream)
            except asyncio.CancelledError:
                await stream.reset()
                raise
            except Exception:
                _log.exception("stream handler for %s raised", stream.protocol_id)
                await stream.reset()

        task = asyncio.get_running_loop().create_task(run(), name=f"mem-handler-{self._ip}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ping(self, peer_id: PeerId, *, timeout: float) -> float:  # noqa: ASYNC109
        """Round-trip time to ``peer_id`` (a loop turn, on this network).

        Raises:
            NotConnectedError: no connection to ``peer_id``.
        """
        if peer_id not in self._conns:
            raise NotConnectedError(f"not connected to {peer_id}")
        start = time.perf_counter()
        await asyncio.sleep(self._net.latency * 2)
        return time.perf_counter() - start

    async def close(self) -> None:
        """Stop listening, drop every connection, cancel and await handler tasks."""
        self._closed = True
        self._net._unbind(self)
        for conn in list(self._conns.values()):
            self._drop(conn, None)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)

    def vanish(self) -> None:
        """Disappear without the peers noticing (power loss, partition; tests).

        Local state is dropped and nothing is sent: the peers keep a connection that
        leads nowhere until a newer one from the same peer replaces it.
        """
        self._closed = True
        self._net._unbind(self)
        self._conns.clear()
        for task in list(self._tasks):
            task.cancel()

    def crash(self) -> None:
        """Vanish without a clean close (tests): peers see a disconnect with a reason."""
        self._closed = True
        self._net._unbind(self)
        for conn in list(self._conns.values()):
            self._drop(conn, ConnectionResetError("peer vanished"))
        for task in list(self._tasks):
            task.cancel()
