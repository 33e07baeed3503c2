"""The libp2p host: TCP + multistream-select + Noise + yamux, identify and ping.

Upgrade of every connection::

    TCP -> multistream (/noise) -> Noise XX -> multistream (/yamux/1.0.0) -> yamux

The connection gate is asked about the remote address before anything is read or
written, and about the authenticated peer id right after the Noise handshake. The
built-in :class:`~engine.net.gate.ConnectionLimiter` applies ``max_pending_connections``,
``max_connections``, ``max_connections_per_ip`` and ``connection_rate_per_ip`` from the
config; a refused inbound connection is simply closed, a refused dial raises. Every
refusal, both directions, is counted under a stable
:class:`~engine.net.interface.HostRefusal` (:meth:`Host.refusal_counts`) and reported to
notifees that define ``refused(reason, direction, remote)`` (through ``call_soon``).

One connection per peer. When both sides dial at once, each ends up with two
connections; both keep the one whose *dialer* has the smaller peer id (bytes of the
multihash) and close the other gracefully, so both sides agree without talking. Two
connections dialed by the same side: the newer wins. A caller of :meth:`Host.dial` gets
the survivor.

Tasks: an accepted connection runs its upgrade in the listener's per-connection task,
which ends once the connection is established; the yamux connection owns one reader task;
each inbound stream runs its handler in one task. Keep-alive is yamux's (a loop timer per
connection: ping after ``keepalive_interval`` of silence, close after
``keepalive_timeout``). ``close()`` cancels and awaits every task. Notifications go
through ``loop.call_soon`` so a notifee never runs inside the network path.

Stream handlers: exact protocol ids (announced by identify and multistream ``ls``) and
unannounced families (:meth:`Host.set_stream_handler_match`, see
:mod:`engine.net.protocols`), so a host can serve ids it does not want to disclose.

Identify data: :meth:`Host.connection_info` (``agent_version`` and ``protocols`` filled in
once known), :meth:`Host.identify_info` / :meth:`Host.wait_identified` for everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from multiaddr import Multiaddr

from engine.config import Config
from engine.crypto.identity import Identity, PeerId
from engine.errors import (
    ConnectionClosedError,
    ConnectionGatedError,
    DialError,
    DialTimeoutError,
    GlueberryError,
    InvalidMultiaddrError,
    NotConnectedError,
    PeerIdMismatchError,
    ResourceLimitError,
    SecurityHandshakeError,
    StreamBrokenError,
    StreamError,
    TransportError,
)
from engine.net.gate import ConnectionLimiter, multiaddr_ip
from engine.net.identify import (
    IDENTIFY_PROTOCOL_ID,
    IdentifyInfo,
    build_identify,
    read_identify,
    write_identify,
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
from engine.net.multistream import dial_select, listen_select
from engine.net.muxer import MuxedStream, YamuxConnection
from engine.net.noise import NOISE_PROTOCOL_ID, NoiseChannel, NoiseStaticKey, noise_handshake
from engine.net.ping import PING_PROTOCOL_ID, handle_ping, ping_once
from engine.net.protocols import ProtocolMatch, ProtocolTable
from engine.net.transport import (
    TcpListener,
    parse_tcp_multiaddr,
    resolve,
    sockaddr_to_multiaddr,
    tcp_dial,
)
from engine.net.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID

__all__ = ["Host", "HostStream"]

_log = logging.getLogger(__name__)


class HostStream:
    """A negotiated stream (:class:`~engine.net.interface.P2PStream`).

    Bytes the negotiation read past the protocol line are returned by the first reads.
    """

    __slots__ = ("_direction", "_inner", "_leftover", "_peer", "_protocol")

    def __init__(
        self,
        inner: MuxedStream,
        protocol_id: str,
        peer: PeerId,
        direction: Direction,
        leftover: bytes = b"",
    ) -> None:
        self._inner = inner
        self._protocol = protocol_id
        self._peer = peer
        self._direction = direction
        self._leftover = leftover

    @property
    def protocol_id(self) -> str:
        """The protocol negotiated with multistream-select."""
        return self._protocol

    @property
    def remote_peer(self) -> PeerId:
        """The authenticated peer at the other end."""
        return self._peer

    @property
    def direction(self) -> Direction:
        """Whether we opened the stream or the peer did."""
        return self._direction

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Read up to ``max_bytes``; ``b""`` only at end of stream."""
        if self._leftover:
            data, self._leftover = (
                self._leftover[:max_bytes],
                self._leftover[max_bytes:],
            )
            return data
        return await self._inner.read(max_bytes)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` (waits for flow-control credit)."""
        await self._inner.write(data)

    async def close_write(self) -> None:
        """Half-close: send end-of-stream."""
        await self._inner.close_write()

    async def aclose(self) -> None:
        """Close both directions; idempotent."""
        await self._inner.aclose()

    async def reset(self) -> None:
        """Abort the stream in both directions."""
        await self._inner.reset()


@dataclasses.dataclass(eq=False)
class _Conn:
    """One established connection (internal)."""

    peer_id: PeerId
    direction: Direction
    remote_addr: Multiaddr
    ip: str | None
    channel: NoiseChannel
    muxer: YamuxConnection
    info: ConnectionInfo
    created: float
    identified: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    identify: IdentifyInfo | None = None
    closed: bool = False

    def dialer(self, local: PeerId) -> PeerId:
        return local if self.direction is Direction.OUTBOUND else self.peer_id


class Host:
    """Our libp2p host (:class:`~engine.net.interface.P2PHost`).

    Args:
        identity: the node's Ed25519 identity.
        config: engine settings (limits, keep-alive, yamux window, agent version).
        gate: an optional connection gate (also settable with :meth:`set_gate`).
    """

    def __init__(
        self, identity: Identity, config: Config, *, gate: ConnectionGate | None = None
    ) -> None:
        self._identity = identity
        self._config = config
        self._gate = gate
        self._static = NoiseStaticKey(identity)
        self._limiter = ConnectionLimiter(
            max_connections=config.max_connections,
            max_pending=config.max_pending_connections,
            max_per_ip=config.max_connections_per_ip,
            rate_per_ip=config.connection_rate_per_ip,
        )
        self._listener = TcpListener(self._on_inbound)
        self._conns: dict[PeerId, _Conn] = {}
        self._all_conns: set[_Conn] = set()
        self._muxers: set[YamuxConnection] = set()
        self._handlers = ProtocolTable()
        self._handlers.set(IDENTIFY_PROTOCOL_ID, self._handle_identify)
        self._handlers.set(PING_PROTOCOL_ID, handle_ping)
        self._notifees: list[HostNotifee] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dials: dict[PeerId, asyncio.Task[ConnectionInfo]] = {}
        self._upgrading: dict[PeerId, int] = {}
        self._conn_waiters: dict[PeerId, list[asyncio.Future[None]]] = {}
        self._closed = False
        self._refused: dict[Direction, dict[HostRefusal, int]] = {d: {} for d in Direction}

    # -- P2PHost ---------------------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        """Our own peer id."""
        return self._identity.peer_id

    def listen_addrs(self) -> list[Multiaddr]:
        """Addresses we listen on (with real ports after :meth:`listen`)."""
        return self._listener.addrs

    async def listen(self, addrs: Sequence[Multiaddr]) -> None:
        """Start listening on ``/ip4`` or ``/ip6`` TCP multiaddrs (port 0: any port).

        Raises:
            InvalidMultiaddrError: not a listenable TCP multiaddr.
            DialError: an address cannot be bound.
        """
        self._check_open()
        for addr in addrs:
            await self._listener.listen(parse_tcp_multiaddr(addr))

    async def dial(
        self,
        peer_id: PeerId,
        addrs: Sequence[Multiaddr],
        *,
        timeout: float,  # noqa: ASYNC109 - the P2PHost interface takes a timeout
    ) -> ConnectionInfo:
        """Connect to ``peer_id`` (or return the live connection).

        Addresses are tried in order within the overall ``timeout``.

        Raises:
            DialError: every address failed (cause attached), or the host is closed.
            DialTimeoutError: not connected within ``timeout``.
            PeerIdMismatchError: the peer at the address has another peer id.
            ConnectionGatedError: the gate refused the address or the peer.
            ResourceLimitError: a connection limit is reached.

        A failed upgrade (Noise, multistream, malformed address) is a DialError whose
        ``__cause__`` is the SecurityHandshakeError / NegotiationError / ... behind it.
        """
        self._check_open()
        conn = self._conns.get(peer_id)
        if conn is not None:
            return conn.info
        if peer_id == self.peer_id:
            raise DialError("cannot dial ourselves")
        task = self._dials.get(peer_id)
        if task is None:
            # The shared dial carries its own deadline: callers stop waiting at their
            # timeout, but a dial into a silent path (no FIN, no RST) must end too, or every
            # later dial to this peer would join the stuck task and never reconnect.
            bound = max(timeout, self._config.dial_timeout)
            task = self._spawn(self._bounded_dial(peer_id, list(addrs), bound))
            self._dials[peer_id] = task
            task.add_done_callback(lambda t: self._dials.pop(peer_id, None))
            # Retrieve the outcome even when every caller gave up already, so a late
            # failure is not reported as "Task exception was never retrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or current.cancelling() == 0):
                # The dial was cancelled by close(), not our caller.
                raise DialError("the host closed during the dial") from None
            raise
        except TimeoutError:
            conn = self._conns.get(peer_id)
            if conn is not None:
                return conn.info
            raise DialTimeoutError(
                f"dial to {peer_id} timed out after {timeout:g} s",
                details={"timeout": timeout, "peer_id": str(peer_id)},
            ) from None

    async def new_stream(
        self,
        peer_id: PeerId,
        protocols: Sequence[str],
        *,
        timeout: float,  # noqa: ASYNC109 - the P2PHost interface takes a timeout
    ) -> P2PStream:
        """Open a stream to a connected peer and negotiate one of ``protocols``.

        Raises:
            NotConnectedError: no live connection.
            NegotiationError: the peer supports none of ``protocols``.
            StreamLimitError: too many streams on the connection.
            StreamBrokenError: the connection failed, or negotiation timed out.
        """
        conn = self._conns.get(peer_id)
        if conn is None or conn.closed:
            raise NotConnectedError(f"not connected to {peer_id}")
        return await self._open_stream(conn, protocols, timeout)

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Run ``handler`` in a new task for every inbound stream of ``protocol_id``.

        The id is announced (identify, multistream ``ls``).

        Raises:
            ValueError: an empty id or one containing a newline.
        """
        self._handlers.set(protocol_id, handler)

    def remove_stream_handler(self, protocol_id: str) -> None:
        """Stop accepting inbound streams of ``protocol_id``."""
        self._handlers.remove(protocol_id)

    def set_stream_handler_match(
        self, family: str, match: ProtocolMatch, handler: StreamHandler
    ) -> None:
        """Run ``handler`` for every inbound stream whose protocol id ``match`` accepts.

        The ids are negotiated but never announced (identify and ``ls`` list exact ids
        only). Exact handlers win over families.

        Args:
            family: key for :meth:`remove_stream_handler_match` (not announced).
            match: cheap predicate over protocol ids (an exception means no match).
            handler: the stream handler.

        Raises:
            ValueError: an empty family key.
        """
        self._handlers.set_match(family, match, handler)

    def remove_stream_handler_match(self, family: str) -> None:
        """Stop accepting the protocol family registered as ``family``."""
        self._handlers.remove_match(family)

    def add_notifee(self, notifee: HostNotifee) -> None:
        """Register for connect/disconnect notifications (delivered with call_soon)."""
        self._notifees.append(notifee)

    def set_gate(self, gate: ConnectionGate | None) -> None:
        """Install (or remove) the connection gate."""
        self._gate = gate

    def is_connected(self, peer_id: PeerId) -> bool:
        """Whether a live connection to ``peer_id`` exists."""
        conn = self._conns.get(peer_id)
        return conn is not None and not conn.closed

    def connection_info(self, peer_id: PeerId) -> ConnectionInfo | None:
        """The live connection to ``peer_id`` (identify fields filled in once known)."""
        conn = self._conns.get(peer_id)
        return conn.info if conn is not None and not conn.closed else None

    def connected_peers(self) -> list[PeerId]:
        """Peers with a live connection."""
        return [p for p, c in self._conns.items() if not c.closed]

    async def disconnect(self, peer_id: PeerId) -> None:
        """Close the connection to ``peer_id`` gracefully (no-op when not connected)."""
        conn = self._conns.get(peer_id)
        if conn is not None:
            await self._close_conn(conn, None, graceful=True)

    async def ping(self, peer_id: PeerId, *, timeout: float) -> float:  # noqa: ASYNC109
        """Round-trip time in seconds over ``/ipfs/ping/1.0.0``.

        Raises:
            NotConnectedError: no live connection.
            StreamBrokenError: no answer within ``timeout`` or the stream failed.
            NegotiationError: the peer does not support ping.
        """
        started = time.monotonic()
        stream = await self.new_stream(peer_id, [PING_PROTOCOL_ID], timeout=timeout)
        try:
            left = max(0.001, timeout - (time.monotonic() - started))
            async with asyncio.timeout(left):
                return await ping_once(stream)
        except TimeoutError:
            await stream.reset()
            raise StreamBrokenError(f"ping to {peer_id} timed out") from None
        finally:
            await stream.aclose()

    async def close(self) -> None:
        """Stop listening, close every connection, cancel and await every task."""
        if self._closed:
            return
        self._closed = True
        await self._listener.close()
        for task in list(self._dials.values()):
            task.cancel()
        conns = list(self._all_conns)
        if conns:
            await asyncio.gather(
                *(self._close_conn(c, None, graceful=True, grace=1.0) for c in conns),
                return_exceptions=True,
            )
        muxers = list(self._muxers)
        if muxers:
            await asyncio.gather(*(m.wait_closed() for m in muxers), return_exceptions=True)
        current = asyncio.current_task()
        for _ in range(10):  # tasks may spawn tasks while they are cancelled; bounded
            tasks = [t for t in self._tasks if t is not current and not t.done()]
            if not tasks:
                break
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # -- extras ----------------------------------------------------------------------------

    def identify_info(self, peer_id: PeerId) -> IdentifyInfo | None:
        """What ``peer_id`` told us through identify, once received."""
        conn = self._conns.get(peer_id)
        return conn.identify if conn is not None else None

    async def wait_identified(
        self,
        peer_id: PeerId,
        *,
        timeout: float,  # noqa: ASYNC109 - same style as the P2PHost methods
    ) -> IdentifyInfo:
        """Wait for the identify exchange with a connected peer.

        Raises:
            NotConnectedError: not connected (or the connection closed meanwhile).
            TimeoutError: no identify data within ``timeout``.
        """
        conn = self._conns.get(peer_id)
        if conn is None:
            raise NotConnectedError(f"not connected to {peer_id}")
        async with asyncio.timeout(timeout):
            await conn.identified.wait()
        if conn.identify is None:
            raise NotConnectedError(f"identify with {peer_id} failed or the connection closed")
        return conn.identify

    @property
    def task_count(self) -> int:
        """Tasks the host owns right now (tests check it returns to baseline)."""
        return sum(1 for t in self._tasks if not t.done())

    def refusal_counts(self) -> dict[str, dict[str, int]]:
        """Connections refused so far: ``{"inbound"|"outbound": {HostRefusal value: n}}``.

        Inbound: closed before or during the upgrade. Outbound: dials refused by our own
        gate or limits (they also raise to the caller). Monotonic; the notifee hook
        ``refused`` reports each one as it happens.
        """
        return {d.value: {str(r): n for r, n in c.items()} for d, c in self._refused.items()}

    @property
    def pending_connections(self) -> int:
        """Connections in the upgrade."""
        return self._limiter.pending

    # -- internals: tasks and notifications ------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise DialError("host is closed")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _notify(self, method: str, *args: Any) -> None:
        loop = asyncio.get_running_loop()
        for notifee in list(self._notifees):
            loop.call_soon(_call_notifee, getattr(notifee, method), args)

    def _refuse(self, reason: HostRefusal, direction: Direction, remote: Multiaddr | None) -> None:
        counts = self._refused[direction]
        counts[reason] = counts.get(reason, 0) + 1
        loop = asyncio.get_running_loop()
        for notifee in list(self._notifees):
            method = getattr(notifee, "refused", None)
            if method is not None:
                loop.call_soon(_call_notifee, method, (reason, direction, remote))

    # -- internals: dialing ----------------------------------------------------------------

    async def _bounded_dial(
        self, peer_id: PeerId, addrs: list[Multiaddr], bound: float
    ) -> ConnectionInfo:
        try:
            async with asyncio.timeout(bound):
                return await self._dial_task(peer_id, addrs)
        except TimeoutError:
            raise DialTimeoutError(
                f"dial to {peer_id} timed out after {bound:g} s",
                details={"timeout": bound, "peer_id": str(peer_id)},
            ) from None

    async def _dial_task(self, peer_id: PeerId, addrs: list[Multiaddr]) -> ConnectionInfo:
        if not addrs:
            raise DialError(f"no address to dial {peer_id}")
        last: BaseException | None = None
        for addr in addrs:
            try:
                return await self._dial_addr(peer_id, addr)
            except (PeerIdMismatchError, ConnectionGatedError, ResourceLimitError):
                raise
            except (GlueberryError, OSError) as exc:
                last = exc
                # Lost a simultaneous-dial race? The inbound connection may be upgrading.
                info = await self._await_inbound(peer_id)
                if info is not None:
                    return info
        if isinstance(last, DialError):
            raise last
        message = last.message if isinstance(last, GlueberryError) else repr(last)
        raise DialError(f"dial to {peer_id} failed: {message}") from last

    async def _await_inbound(self, peer_id: PeerId) -> ConnectionInfo | None:
        conn = self._conns.get(peer_id)
        if conn is not None:
            return conn.info
        if not self._upgrading.get(peer_id):
            return None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conn_waiters.setdefault(peer_id, []).append(fut)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.dial_timeout):
                await fut
        conn = self._conns.get(peer_id)
        return conn.info if conn is not None else None

    async def _dial_addr(self, peer_id: PeerId, addr: Multiaddr) -> ConnectionInfo:
        parsed = parse_tcp_multiaddr(addr)
        if parsed.peer_id is not None and parsed.peer_id != peer_id:
            raise PeerIdMismatchError(
                f"address {addr} names another peer than {peer_id}",
                details={"expected": str(peer_id), "actual": str(parsed.peer_id)},
            )
        gate = self._gate
        if gate is not None and not _safe_gate(gate.allow_addr, addr, Direction.OUTBOUND):
            self._refuse(HostRefusal.GATE_ADDR, Direction.OUTBOUND, addr)
            raise ConnectionGatedError(f"the gate refused address {addr}")
        try:
            self._limiter.admit(None, Direction.OUTBOUND)
        except (ResourceLimitError, ConnectionGatedError) as exc:
            self._refuse(_limit_reason(exc), Direction.OUTBOUND, addr)
            raise
        established = False
        writer: asyncio.StreamWriter | None = None
        try:
            candidates = await resolve(parsed)
            reader, writer = await _connect_any(candidates)
            sock = writer.get_extra_info("peername")
            remote = sockaddr_to_multiaddr(sock) if sock else addr
            conn = await self._upgrade(reader, writer, Direction.OUTBOUND, remote, expected=peer_id)
            established = True
            return self._register(conn)
        finally:
            if not established:
                self._limiter.release(None, Direction.OUTBOUND, established=False)
                if writer is not None:
                    writer.transport.abort()

    # -- internals: accepting ----------------------------------------------------------------

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._closed:
            writer.transport.abort()
            return
        try:
            remote = sockaddr_to_multiaddr(writer.get_extra_info("peername"))
        except InvalidMultiaddrError:
            writer.transport.abort()
            return
        ip = multiaddr_ip(remote)
        gate = self._gate
        if gate is not None and not _safe_gate(gate.allow_addr, remote, Direction.INBOUND):
            self._refuse(HostRefusal.GATE_ADDR, Direction.INBOUND, remote)
            writer.transport.abort()
            return
        try:
            self._limiter.admit(ip, Direction.INBOUND)
        except (ResourceLimitError, ConnectionGatedError) as exc:
            self._refuse(_limit_reason(exc), Direction.INBOUND, remote)
            writer.transport.abort()
            return
        established = False
        try:
            async with asyncio.timeout(self._config.dial_timeout):
                conn = await self._upgrade(reader, writer, Direction.INBOUND, remote, ip=ip)
            established = True
            self._register(conn)
        except (GlueberryError, OSError, TimeoutError) as exc:
            # The peer-id gate and the established limit were counted where they refused.
            if not isinstance(exc, (ConnectionGatedError, ResourceLimitError)):
                self._refuse(HostRefusal.UPGRADE_FAILED, Direction.INBOUND, remote)
            _log.debug("inbound connection from %s failed: %r", remote, exc)
        finally:
            if not established:
                self._limiter.release(ip, Direction.INBOUND, established=False)
                writer.transport.abort()

    # -- internals: the upgrade ------------------------------------------------------------

    async def _upgrade(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: Direction,
        remote: Multiaddr,
        *,
        expected: PeerId | None = None,
        ip: str | None = None,
    ) -> _Conn:
        async def raw_read() -> bytes:
            return await reader.read(65536)

        async def raw_write(data: bytes) -> None:
            writer.write(data)

        outbound = direction is Direction.OUTBOUND
        if outbound:
            _, left = await dial_select(raw_read, raw_write, [NOISE_PROTOCOL_ID])
        else:
            _, left = await listen_select(raw_read, raw_write, {NOISE_PROTOCOL_ID})
        channel = await noise_handshake(
            reader,
            writer,
            self._static,
            initiator=outbound,
            expected_peer=expected,
            initial=left,
        )
        peer = channel.remote_peer
        if peer == self.peer_id:
            raise SecurityHandshakeError("connected to ourselves")
        gate = self._gate
        if gate is not None and not _safe_gate(gate.allow_peer, peer, direction):
            self._refuse(HostRefusal.GATE_PEER, direction, remote)
            raise ConnectionGatedError(f"the gate refused peer {peer}")
        self._upgrading[peer] = self._upgrading.get(peer, 0) + 1
        try:
            if outbound:
                _, left = await dial_select(channel.read, channel.write, [YAMUX_PROTOCOL_ID])
            else:
                _, left = await listen_select(channel.read, channel.write, {YAMUX_PROTOCOL_ID})
            if left:
                channel.unread(left)
            try:
                self._limiter.promote()
            except ResourceLimitError:
                self._refuse(HostRefusal.MAX_CONNECTIONS, direction, remote)
                raise
        finally:
            self._release_upgrading(peer)
        info = ConnectionInfo(peer_id=peer, remote_addr=remote, direction=direction)
        conn = _Conn(
            peer_id=peer,
            direction=direction,
            remote_addr=remote,
            ip=ip,
            channel=channel,
            muxer=None,  # type: ignore[arg-type]  # set right below
            info=info,
            created=time.monotonic(),
        )
        conn.muxer = YamuxConnection(
            channel,
            is_client=outbound,
            window_size=self._config.yamux_window_size,
            max_streams=self._config.max_yamux_streams,
            keepalive_interval=self._config.keepalive_interval,
            keepalive_timeout=self._config.keepalive_timeout,
            on_stream=functools.partial(self._on_stream, conn),
            on_close=functools.partial(self._on_muxer_closed, conn),
        )
        self._all_conns.add(conn)
        conn.muxer.start()
        # Track the muxer until its tasks ended (also when the peer closed it), so close()
        # can wait for them.
        self._muxers.add(conn.muxer)
        muxer = conn.muxer

        def forget_muxer(_: asyncio.Future[BaseException | None]) -> None:
            self._muxers.discard(muxer)

        muxer.closed.add_done_callback(forget_muxer)
        return conn

    def _release_upgrading(self, peer: PeerId) -> None:
        left = self._upgrading.get(peer, 0) - 1
        if left > 0:
            self._upgrading[peer] = left
        else:
            self._upgrading.pop(peer, None)
            # No more upgrades: wake dialers waiting for an inbound connection.
            for fut in self._conn_waiters.pop(peer, []):
                if not fut.done():
                    fut.set_result(None)

    # -- internals: the connection table -----------------------------------------------------

    def _register(self, conn: _Conn) -> ConnectionInfo:
        """Install an established connection, applying the simultaneous-dial tie-break."""
        peer = conn.peer_id
        existing = self._conns.get(peer)
        if existing is not None and not existing.closed:
            winner = self._tie_break(existing, conn)
            loser = conn if winner is existing else existing
            if winner is conn:
                self._conns[peer] = conn
                if existing.identify is not None:
                    conn.identify = existing.identify
                    conn.info = dataclasses.replace(
                        conn.info,
                        agent_version=existing.info.agent_version,
                        protocols=existing.info.protocols,
                    )
                    conn.identified.set()
                else:
                    self._spawn(self._identify(conn))
            self._spawn(self._close_conn(loser, None, graceful=True, notify=False))
            for fut in self._conn_waiters.pop(peer, []):
                if not fut.done():
                    fut.set_result(None)
            return winner.info
        self._conns[peer] = conn
        for fut in self._conn_waiters.pop(peer, []):
            if not fut.done():
                fut.set_result(None)
        self._spawn(self._identify(conn))
        self._notify("connected", conn.info)
        return conn.info

    def _tie_break(self, a: _Conn, b: _Conn) -> _Conn:
        da, db = a.dialer(self.peer_id), b.dialer(self.peer_id)
        if da != db:
            return a if da.multihash < db.multihash else b
        return b if b.created >= a.created else a

    async def _close_conn(
        self,
        conn: _Conn,
        reason: BaseException | None,
        *,
        graceful: bool,
        notify: bool = True,
        grace: float = 2.0,
    ) -> None:
        if not conn.closed:
            self._forget(conn, reason, notify=notify)
        if graceful:
            try:
                async with asyncio.timeout(grace):
                    await conn.muxer.close()
            except (TimeoutError, GlueberryError, OSError):
                conn.channel.abort()
        else:
            conn.channel.abort()
        with contextlib.suppress(Exception):
            await conn.muxer.wait_closed()

    def _forget(self, conn: _Conn, reason: BaseException | None, *, notify: bool = True) -> None:
        """Synchronous bookkeeping when a connection ends (idempotent)."""
        if conn.closed:
            return
        conn.closed = True
        self._all_conns.discard(conn)
        self._limiter.release(conn.ip, conn.direction, established=True)
        conn.identified.set()
        if self._conns.get(conn.peer_id) is conn:
            del self._conns[conn.peer_id]
            if notify:
                self._notify("disconnected", conn.peer_id, reason)

    def _on_muxer_closed(self, conn: _Conn, exc: BaseException | None) -> None:
        self._forget(conn, exc)

    # -- internals: streams ----------------------------------------------------------------

    async def _open_stream(
        self,
        conn: _Conn,
        protocols: Sequence[str],
        timeout: float,  # noqa: ASYNC109
    ) -> HostStream:
        try:
            async with asyncio.timeout(timeout):
                inner = await conn.muxer.open_stream()
                try:
                    proto, left = await dial_select(
                        lambda: inner.read(65536), inner.write, protocols
                    )
                except BaseException:
                    await inner.reset()
                    raise
        except TimeoutError:
            raise StreamBrokenError(
                f"opening a stream to {conn.peer_id} timed out",
                details={"timeout": timeout},
            ) from None
        except ConnectionClosedError as exc:
            raise StreamBrokenError(f"connection to {conn.peer_id} closed") from exc
        return HostStream(inner, proto, conn.peer_id, Direction.OUTBOUND, left)

    def _on_stream(self, conn: _Conn, inner: MuxedStream) -> None:
        if self._closed or conn.closed:
            self._spawn(inner.reset())
            return
        self._spawn(self._serve_stream(conn, inner))

    async def _serve_stream(self, conn: _Conn, inner: MuxedStream) -> None:
        try:
            async with asyncio.timeout(self._config.dial_timeout):
                proto, left = await listen_select(
                    lambda: inner.read(65536), inner.write, self._handlers
                )
        except (GlueberryError, TimeoutError, OSError) as exc:
            _log.debug("inbound stream from %s: negotiation failed: %r", conn.peer_id, exc)
            await inner.reset()
            return
        handler = self._handlers.lookup(proto)
        if handler is None:  # removed meanwhile
            await inner.reset()
            return
        stream = HostStream(inner, proto, conn.peer_id, Direction.INBOUND, left)
        try:
            await handler(stream)
        except asyncio.CancelledError:
            await stream.reset()
            raise
        except (StreamError, TransportError) as exc:
            # The peer went away or reset the stream mid-handler: routine on a P2P network,
            # not a bug in the handler, so it is no reason for an ERROR log with traceback.
            _log.debug("stream handler for %s ended: %r", proto, exc)
            await stream.reset()
        except Exception:
            _log.exception("stream handler for %s failed", proto)
            await stream.reset()

    # -- internals: identify -------------------------------------------------------------------

    async def _handle_identify(self, stream: P2PStream) -> None:
        conn = self._conns.get(stream.remote_peer)
        observed = conn.remote_addr if conn is not None else None
        message = build_identify(
            public_key=self._identity.public_key,
            agent_version=self._config.agent_version,
            listen_addrs=self.listen_addrs(),
            observed_addr=observed,
            protocols=self._handlers.listed(),
        )
        try:
            await write_identify(stream, message)
        finally:
            await stream.aclose()

    async def _identify(self, conn: _Conn) -> None:
        try:
            stream = await self._open_stream(
                conn, [IDENTIFY_PROTOCOL_ID], self._config.dial_timeout
            )
            try:
                async with asyncio.timeout(self._config.dial_timeout):
                    info = await read_identify(stream)
            finally:
                await stream.aclose()
        except (GlueberryError, TimeoutError, OSError) as exc:
            _log.debug("identify with %s failed: %r", conn.peer_id, exc)
            conn.identified.set()
            return
        conn.identify = info
        conn.info = dataclasses.replace(
            conn.info, agent_version=info.agent_version, protocols=info.protocols
        )
        conn.identified.set()


async def _connect_any(
    candidates: Sequence[tuple[str, int]],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    last: DialError | None = None
    for host, port in candidates:
        try:
            return await tcp_dial(host, port)
        except DialError as exc:
            last = exc
    assert last is not None
    raise last


def _safe_gate(check: Callable[[Any, Direction], bool], arg: Any, direction: Direction) -> bool:
    try:
        return bool(check(arg, direction))
    except Exception:
        _log.exception("connection gate raised; refusing the connection")
        return False


_LIMIT_REASONS = {
    "pending_connections": HostRefusal.MAX_PENDING,
    "connections": HostRefusal.MAX_CONNECTIONS,
    "connections_per_ip": HostRefusal.MAX_PER_IP,
}


def _limit_reason(exc: GlueberryError) -> HostRefusal:
    """The refusal reason of a :class:`ConnectionLimiter` error (rate: a gated error)."""
    if isinstance(exc, ResourceLimitError):
        return _LIMIT_REASONS.get(str(exc.details.get("what")), HostRefusal.MAX_CONNECTIONS)
    return HostRefusal.RATE_LIMITED


def _call_notifee(method: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        method(*args)
    except Exception:
        _log.exception("host notifee raised")
