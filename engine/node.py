"""The Glueberry node: the engine's public object (see docs/engine-api.md).

A :class:`Node` ties together the libp2p host, the connection manager (per-peer state
machines, dialing, reconnection, cooldown, handshake timeout), the blacklist gate, the
handshake (built-in ``auto`` mode or application-driven ``app`` mode), the stream manager
(encrypted named streams, flow control, write coalescing), the event and message hubs and
the statistics tracker. Everything runs on the caller's asyncio loop; ``stop()`` cancels
and awaits every task the node started.

Handshake I/O (the sans-IO core is :mod:`engine.handshake`): the side that dialed opens
``/glueberry/handshake/1.0.0`` as soon as the connection is up; the other side accepts it.
Every handshake stream of a peer is read; a peer's handshake messages are sent on the
first stream it has (in ``app`` mode a send before any stream exists opens one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from multiaddr import Multiaddr
from opentelemetry import context as otel_context
from opentelemetry.trace import TracerProvider

from engine.blacklist import Blacklist
from engine.config import Config, HandshakeMode
from engine.connection_manager import ConnectionManager
from engine.connection_state import ConnectionState, Emit, PeerStatus
from engine.crypto.identity import Identity, PeerId
from engine.crypto.keys import derive_stream_key
from engine.errors import (
    DecryptionError,
    FrameError,
    GlueberryError,
    InvalidPeerIdError,
    NodeNotRunningError,
    NodeStateError,
    NotConnectedError,
    PeerIdMismatchError,
    PeerNotFoundError,
    StreamError,
    TransportError,
)
from engine.events import (
    ConnectionEvent,
    ConnectionEventHub,
    EventFilter,
    EventHub,
    Subscription,
    run_cursor_base,
)
from engine.flow import FlowController
from engine.framing import FrameDecoder, encode_frame
from engine.handshake import (
    HANDSHAKE_PROTOCOL,
    MAX_HANDSHAKE_MESSAGE_SIZE,
    WIRE_V1_CAPABILITY,
    AutoHandshake,
    Failed,
    Finalize,
    HandshakePhase,
    Prepare,
)
from engine.net.interface import ConnectionInfo, Direction, HostRefusal, P2PHost, P2PStream
from engine.observability import (
    SPAN_BLACKLIST,
    ConnectionTracer,
    CountingMetrics,
    DropReason,
    Metrics,
    RefusalReason,
)
from engine.repository import BanRecord, MemoryRepository, PeerRecord, Repository
from engine.stats import PeerStats, StatsTracker
from engine.streams import StreamManager

__all__ = ["DecryptionErrorCallback", "HandshakeMessage", "IncomingMessage", "Node"]

_log = logging.getLogger(__name__)

# Host refusals (HostNotifee.refused) -> our reasons. The gate's refusals are our own
# gate's, already reported by _ObservedGate (with the peer id): not counted twice.
_HOST_REFUSALS: dict[HostRefusal, RefusalReason | None] = {
    HostRefusal.GATE_ADDR: None,
    HostRefusal.GATE_PEER: None,
    HostRefusal.MAX_PENDING: RefusalReason.MAX_PENDING,
    HostRefusal.MAX_CONNECTIONS: RefusalReason.MAX_CONNECTIONS,
    HostRefusal.MAX_PER_IP: RefusalReason.MAX_PER_IP,
    HostRefusal.RATE_LIMITED: RefusalReason.RATE_LIMITED,
    HostRefusal.UPGRADE_FAILED: RefusalReason.UPGRADE_FAILED,
}

# Event-loop lag samples whose maximum decides the event_loop readiness check.
_LAG_WINDOW = 10

DecryptionErrorCallback = Callable[[PeerId, str, DecryptionError], None]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message received on a named stream.

    Attributes:
        peer_id: the sender.
        stream: the stream name.
        data: the decrypted payload.
        received_at: epoch seconds.
        seq: node-wide, strictly increasing receive sequence number.
    """

    peer_id: PeerId
    stream: str
    data: bytes
    received_at: float
    seq: int


@dataclass(frozen=True, slots=True)
class HandshakeMessage:
    """A handshake message from a peer (``app`` mode).

    Attributes:
        peer_id: the sender.
        data: the frame payload, as the peer's application sent it.
        received_at: epoch seconds.
    """

    peer_id: PeerId
    data: bytes
    received_at: float


@dataclass(eq=False)
class _HandshakeSession:
    """Handshake I/O state of one connection."""

    peer_id: PeerId
    core: AutoHandshake | None
    streams: list[P2PStream] = field(default_factory=list)
    send_stream: P2PStream | None = None
    opening: asyncio.Future[None] | None = None
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    closed: bool = False


def _peer_id(value: PeerId | str) -> PeerId:
    if isinstance(value, PeerId):
        return value
    if isinstance(value, str):
        return PeerId.from_string(value)
    raise InvalidPeerIdError("peer id must be a PeerId or its text form")


class Node:
    """A Glueberry node.

    Args:
        config: engine settings.
        identity: our Ed25519 identity; default ``Identity.load_or_create(config.key_path)``.
        repository: address book / blacklist / audit store; default an in-memory one
            (owned and closed by the node).
        host: the libp2p host; default :class:`engine.net.host.Host`. The node owns it
            (listens on start, closes it on stop).
        on_decryption_error: called ``(peer_id, stream, error)`` for every frame that
            fails to decrypt (the frame is dropped, the stream stays open).
        metrics: receives metric callbacks (:class:`~engine.observability.Metrics`);
            default none. Its methods run on the event loop and must be cheap.
        tracer_provider: OpenTelemetry tracer provider for the connection spans;
            default the global one (a no-op unless the application installed an SDK).
    """

    def __init__(
        self,
        config: Config,
        *,
        identity: Identity | None = None,
        repository: Repository | None = None,
        host: P2PHost | None = None,
        on_decryption_error: DecryptionErrorCallback | None = None,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._config = config
        self._identity = (
            identity if identity is not None else Identity.load_or_create(config.key_path)
        )
        self._owns_repository = repository is None
        self._repo: Repository = (
            repository if repository is not None else MemoryRepository(config.max_metadata_size)
        )
        if host is None:
            from engine.net.host import Host

            host = Host(self._identity, config)
        self._host: P2PHost = host
        self._on_decryption_error = on_decryption_error
        # Rare events go to our own counters (node.counters()) and to the caller's
        # metrics; the per-message ones only to the caller's (None: skipped).
        self._counters = CountingMetrics()
        self._user_metrics: Metrics | None = metrics
        self._metrics: Metrics = _Fanout(self._counters, metrics)
        self._tracer = ConnectionTracer(
            self._metrics, tracer_provider, handshake_mode=config.handshake_mode.value
        )
        self._connect_parents: dict[PeerId, otel_context.Context] = {}
        self._loop_lag = 0.0
        self._loop_lag_max = 0.0
        self._loop_lag_samples = 0
        self._repo_status: dict[str, Any] = {"ok": False, "checked_at": None, "error": None}
        self._capabilities: tuple[str, ...] = (WIRE_V1_CAPABILITY,)
        self._running = False
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = 0

        self._blacklist = Blacklist()
        self._events = ConnectionEventHub(
            config.event_buffer_size,
            retention=config.event_retention,
            first_id=run_cursor_base(),
        )
        self._messages: EventHub[IncomingMessage] = EventHub(
            config.message_buffer_size,
            on_drop=self._message_dropped_by_subscriber,
            weigh=_weigh_message,
            max_bytes=config.message_buffer_bytes,
        )
        self._handshakes: EventHub[HandshakeMessage] = EventHub(
            buffer_size=config.event_buffer_size,
            on_drop=self._handshake_dropped_by_subscriber,
            weigh=_weigh_handshake,
            max_bytes=config.message_buffer_bytes,
        )
        self._stats = StatsTracker(
            config.max_tracked_peers,
            config.stats_ttl,
            max_streams_per_peer=config.max_streams_per_peer,
        )
        self._streams = StreamManager(
            self._host,
            self,
            flow_factory=lambda: FlowController(
                config.high_watermark, config.low_watermark, high_bytes=config.send_buffer_bytes
            ),
            max_message_size=config.max_message_size,
            max_streams_per_peer=config.max_streams_per_peer,
            max_stream_name_length=config.max_stream_name_length,
            open_timeout=config.dial_timeout,
            nonce_warning_threshold=config.nonce_warning_threshold,
        )
        self._sessions: dict[PeerId, _HandshakeSession] = {}
        self._cm = ConnectionManager(
            config,
            self._host,
            emit=self._emit,
            on_connected=self._on_connected,
            on_close=self._on_close,
            is_blacklisted=self.is_blacklisted,
            filter_addrs=self._blacklist.usable_addrs,
            on_refused=self._connection_refused,
        )

    # -- properties ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the node is started and not stopped."""
        return self._running

    @property
    def peer_id(self) -> PeerId:
        """Our peer id."""
        return self._identity.peer_id

    @property
    def public_key(self) -> bytes:
        """Our raw 32-byte Ed25519 public key."""
        return self._identity.public_key

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Capabilities announced in the built-in handshake."""
        return self._capabilities

    @property
    def config(self) -> Config:
        """The node's settings."""
        return self._config

    @property
    def host(self) -> P2PHost:
        """The libp2p host (for diagnostics and tests)."""
        return self._host

    def listen_addrs(self) -> list[Multiaddr]:
        """Our listen addresses, each with the ``/p2p/<peer id>`` suffix."""
        suffix = Multiaddr(f"/p2p/{self.peer_id}")
        return [a.encapsulate(suffix) for a in self._host.listen_addrs()]

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, load the blacklist and the address book, auto-connect.

        Raises:
            NodeStateError: already started, or stopped (a node is started once).
            TransportError: a listen address cannot be bound.
            StorageError: the repository cannot be read.
        """
        if self._running or self._stopping:
            raise NodeStateError("node already started")
        self._running = True
        try:
            await self._repo.start()
            self._blacklist.load(await self._repo.list_bans())
            self._repo_status = {"ok": True, "checked_at": time.time(), "error": None}
            self._host.set_gate(_ObservedGate(self._blacklist, self))
            self._host.add_notifee(self._cm)
            self._host.add_notifee(_RefusalObserver(self))
            self._host.set_stream_handler(HANDSHAKE_PROTOCOL, self._handle_handshake_stream)
            await self._host.listen([Multiaddr(a) for a in self._config.listen_addrs])
            self._cm.start()
            self._spawn(self._housekeeping(), "gb-housekeeping")
            self._spawn(self._health_loop(), "gb-health")
            offset = 0
            while True:
                page, total = await self._repo.list_peers(offset=offset, limit=1000)
                for record in page:
                    self._cm.set_addrs(
                        record.peer_id, _maddrs(record.addrs), auto=self._config.auto_connect
                    )
                    if self._config.auto_connect:
                        self._cm.auto_connect(record.peer_id)
                offset += len(page)
                if not page or offset >= total:
                    break
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop: close every connection, cancel and await every task, flush the repository.

        Idempotent. Subscriptions end (their iterators finish).
        """
        if self._stopping:
            return
        self._stopping = True
        self._running = False
        await self._cm.aclose()
        tasks: list[asyncio.Task[None]] = []
        for session in list(self._sessions.values()):
            tasks += self._close_session(session)
        self._sessions.clear()
        tasks += self._tasks  # after closing the sessions: includes their reset tasks
        for task in tasks:
            task.cancel()
        await self._streams.aclose()
        with contextlib.suppress(Exception):
            await self._host.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._cm.aclose()  # disconnect tasks spawned while closing
        try:
            await self._repo.flush()
            if self._owns_repository:
                await self._repo.close()
        finally:
            self._tracer.close()
            self._events.close()
            self._messages.close()
            self._handshakes.close()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_running(self) -> None:
        if not self._running:
            raise NodeNotRunningError("node is not running")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- address book --------------------------------------------------------------------------

    async def add_peer(
        self,
        peer_id: PeerId | str,
        addrs: list[str],
        metadata: dict[str, str] | None = None,
    ) -> PeerRecord:
        """Add a peer to the address book (persisted before returning).

        Raises:
            PeerExistsError: already in the address book.
            InvalidPeerIdError, InvalidMultiaddrError, MetadataTooLargeError: bad input.
        """
        record = await self._repo.add_peer(peer_id, addrs, metadata=metadata)
        self._cm.set_addrs(record.peer_id, _maddrs(record.addrs), auto=True)
        return record

    async def update_peer(
        self,
        peer_id: PeerId | str,
        addrs: list[str] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PeerRecord:
        """Change a peer's addresses and/or metadata.

        Raises:
            PeerNotFoundError: not in the address book.
            InvalidMultiaddrError, MetadataTooLargeError: bad input.
        """
        record = await self._repo.update_peer(peer_id, addrs=addrs, metadata=metadata)
        self._cm.set_addrs(record.peer_id, _maddrs(record.addrs), auto=True)
        return record

    async def remove_peer(self, peer_id: PeerId | str) -> None:
        """Remove a peer from the address book (its reconnection stops).

        Raises:
            PeerNotFoundError: not in the address book.
        """
        pid = _peer_id(peer_id)
        await self._repo.remove_peer(pid)
        self._cm.forget(pid)

    async def get_peer(self, peer_id: PeerId | str) -> PeerRecord:
        """The peer's address-book record.

        Raises:
            PeerNotFoundError: not in the address book.
        """
        record = await self._repo.get_peer(peer_id)
        if record is None:
            raise PeerNotFoundError(f"peer {peer_id} is not in the address book")
        return record

    async def list_peers(self, offset: int = 0, limit: int = 100) -> tuple[list[PeerRecord], int]:
        """One page of the address book and the total count."""
        return await self._repo.list_peers(offset=offset, limit=limit)

    # -- connections ---------------------------------------------------------------------------

    async def connect(self, peer_id: PeerId | str, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Connect to an address-book peer and wait until it is established.

        No task is left behind whatever happens (timeout, cancellation, failure).

        Args:
            peer_id: the peer (its addresses come from the address book).
            timeout: overall seconds (dial + handshake); ``None`` = the handshake and
                dial timeouts only.

        Raises:
            NodeNotRunningError: the node is not running.
            PeerNotFoundError: the peer is not in the address book and not connected.
            PeerBlacklistedError: the peer is blacklisted.
            PeerInCooldownError: the peer failed a handshake recently.
            DialError, DialTimeoutError: the dial failed or ``timeout`` expired.
            HandshakeError, HandshakeTimeoutError: the handshake failed.
        """
        self._check_running()
        pid = _peer_id(peer_id)
        record = await self._repo.get_peer(pid)
        if record is not None:
            self._cm.set_addrs(pid, _maddrs(record.addrs), auto=True)
        elif not self._host.is_connected(pid):
            raise PeerNotFoundError(f"peer {pid} is not in the address book")
        # The connect span of the dial this call starts is a child of the caller's span
        # (e.g. the gateway's request); consumed synchronously when the dial starts.
        self._connect_parents[pid] = otel_context.get_current()
        try:
            await self._cm.connect(pid, timeout)
        finally:
            self._connect_parents.pop(pid, None)

    async def disconnect(self, peer_id: PeerId | str) -> None:
        """Close the connection to a peer; it is not reconnected."""
        await self._cm.disconnect(_peer_id(peer_id))

    def cancel_reconnection(self, peer_id: PeerId | str) -> bool:
        """Stop a pending reconnection. Returns whether one was pending."""
        return self._cm.cancel_reconnection(_peer_id(peer_id))

    def connection_state(self, peer_id: PeerId | str) -> ConnectionState:
        """The peer's connection state."""
        return self._cm.state(_peer_id(peer_id))

    def peer_status(self, peer_id: PeerId | str) -> PeerStatus:
        """State, reconnect attempts, next retry, direction, connected since, cooldown."""
        return self._cm.status(_peer_id(peer_id))

    def is_outbound(self, peer_id: PeerId | str) -> bool:
        """Whether the live connection to the peer was dialed by us."""
        return self._cm.is_outbound(_peer_id(peer_id))

    def connected_peers(self) -> list[PeerId]:
        """Peers in ``connected`` or ``established``."""
        return self._cm.peers_in(ConnectionState.CONNECTED, ConnectionState.ESTABLISHED)

    def peer_states(self) -> dict[PeerId, ConnectionState]:
        """The state of every peer the connection manager tracks (synchronous).

        That is every address-book peer with addresses, and every other peer with
        something in progress: connected, dialing, reconnecting, or in cooldown
        (including inbound peers). Untracked peers are ``disconnected``. Read in one
        synchronous step, so it is consistent with :attr:`last_event_id` read in the
        same step.

        Returns:
            peer id -> current state.
        """
        return {peer_id: self._cm.state(peer_id) for peer_id in self._cm.known_peers()}

    async def ping(self, peer_id: PeerId | str, timeout: float = 10.0) -> float:  # noqa: ASYNC109
        """Round-trip time to a connected peer in seconds (recorded in its stats).

        Raises:
            NotConnectedError: not connected.
        """
        pid = _peer_id(peer_id)
        rtt = await self._host.ping(pid, timeout=timeout)
        self._stats.record_ping(pid, rtt)
        return rtt

    # -- blacklist -----------------------------------------------------------------------------

    async def blacklist_peer(
        self, peer_id: PeerId | str, reason: str = "", expires_at: float | None = None
    ) -> BanRecord:
        """Ban a peer id: persisted, refused both directions, dropped at once if connected."""
        pid = _peer_id(peer_id)
        with self._tracer.tracer.start_as_current_span(SPAN_BLACKLIST) as span:
            span.set_attributes(
                {"glueberry.ban.target": pid.to_string(), "glueberry.ban.kind": "peer"}
            )
            record = await self._repo.add_ban(pid.to_string(), reason=reason, expires_at=expires_at)
            self._blacklist.add(record)
            await self._audit("ban_added", pid.to_string(), {"reason": reason})
            dropped = 0
            if record.active(time.time()):
                dropped = int(self._cm.state(pid) is not ConnectionState.DISCONNECTED)
                self._cm.blacklisted(pid)
            span.set_attribute("glueberry.ban.dropped_peers", dropped)
            _log.debug("banned peer %s (%d connection dropped)", pid, dropped)
        return record

    async def blacklist_cidr(
        self, cidr: str, reason: str = "", expires_at: float | None = None
    ) -> BanRecord:
        """Ban an IP network: connected peers inside it are dropped at once."""
        with self._tracer.tracer.start_as_current_span(SPAN_BLACKLIST) as span:
            record = await self._repo.add_ban(cidr, reason=reason, expires_at=expires_at)
            span.set_attributes(
                {"glueberry.ban.target": record.target, "glueberry.ban.kind": record.kind}
            )
            if record.kind != "cidr":
                # A peer id given to blacklist_cidr: still a valid ban, apply it as such.
                self._blacklist.add(record)
                self._cm.blacklisted(PeerId.from_string(record.target))
                return record
            self._blacklist.add(record)
            await self._audit("ban_added", None, {"cidr": record.target, "reason": reason})
            dropped = 0
            for pid in self._host.connected_peers():
                if self.is_blacklisted(pid):
                    dropped += 1
                    self._cm.blacklisted(pid)
            span.set_attribute("glueberry.ban.dropped_peers", dropped)
            _log.debug("banned network %s (%d connections dropped)", record.target, dropped)
        return record

    async def unblacklist(self, target: PeerId | str) -> None:
        """Lift a ban (peer id or CIDR text).

        Raises:
            BanNotFoundError: not banned.
        """
        from engine.peer_validation import check_ban_target

        text = str(target)
        normalised, _ = check_ban_target(text)
        await self._repo.remove_ban(normalised)
        self._blacklist.remove(normalised)
        await self._audit("ban_removed", None, {"target": normalised})

    async def list_blacklist(self) -> list[BanRecord]:
        """Active bans."""
        return await self._repo.list_bans()

    def is_blacklisted(self, peer_id: PeerId | str) -> bool:
        """Whether the peer id, or the address of its live connection, is banned."""
        pid = _peer_id(peer_id)
        if self._blacklist.is_peer_banned(pid):
            return True
        info = self._host.connection_info(pid)
        return info is not None and self._blacklist.is_addr_banned(info.remote_addr)

    async def _audit(self, kind: str, peer: str | None, detail: dict[str, Any]) -> None:
        try:
            await self._repo.audit(kind, peer_id=peer, detail=detail)
        except GlueberryError as exc:  # auditing never breaks the operation
            _log.warning("audit %s failed: %s", kind, exc)

    # -- events, messages, stats ---------------------------------------------------------------

    def subscribe(self, filter: EventFilter | None = None) -> Subscription[ConnectionEvent]:
        """Subscribe to connection events (optionally filtered by peers / states)."""
        return self._events.subscribe(filter)

    def events_since(self, event_id: int) -> tuple[list[ConnectionEvent], bool]:
        """Retained events with ``id > event_id``; the bool says the cursor is retained."""
        return self._events.events_since(event_id)

    def subscribe_from(
        self, event_id: int, filter: EventFilter | None = None
    ) -> tuple[list[ConnectionEvent], bool, Subscription[ConnectionEvent]]:
        """The retained backlog after ``event_id`` and a live subscription, atomically.

        Returns:
            ``(backlog, complete, subscription)``: every event is in exactly one of the
            backlog and the subscription; ``complete`` as in :meth:`events_since`.
        """
        return self._events.subscribe_from(event_id, filter)

    @property
    def last_event_id(self) -> int:
        """Id of the latest event (``first_event_id - 1`` before any)."""
        return self._events.last_id

    @property
    def first_event_id(self) -> int:
        """Id of this run's first event: ids restart above every earlier run's."""
        return self._events.first_id

    def messages(
        self,
        stream: str | None = None,
        peer: PeerId | str | None = None,
        *,
        buffer_size: int | None = None,
        buffer_bytes: int | None = None,
    ) -> Subscription[IncomingMessage]:
        """Subscribe to received messages, optionally of one stream and/or one peer.

        Args:
            stream: only this stream.
            peer: only this peer.
            buffer_size: queued messages before the oldest are dropped (default
                ``message_buffer_size``); drops are counted on the subscription and in
                the peer's stats (``subscriber_buffer_full``).
            buffer_bytes: queued payload bytes before the oldest are dropped (default
                ``message_buffer_bytes``); a single larger message is kept alone.

        Raises:
            ValueError: ``buffer_size`` or ``buffer_bytes`` < 1.
        """
        pid = _peer_id(peer) if peer is not None else None

        def match(msg: IncomingMessage) -> bool:
            return (stream is None or msg.stream == stream) and (pid is None or msg.peer_id == pid)

        return self._messages.subscribe_where(
            None if stream is None and pid is None else match, buffer_size, max_bytes=buffer_bytes
        )

    def handshake_messages(self) -> Subscription[HandshakeMessage]:
        """Subscribe to handshake messages (``app`` mode)."""
        return self._handshakes.subscribe_where(None)

    def messages_sent(self, peer_id: PeerId | str) -> int:
        """Messages sent to the peer under its current stream key."""
        return self._streams.messages_sent(_peer_id(peer_id))

    def peer_stats(self, peer_id: PeerId | str) -> PeerStats | None:
        """The peer's statistics, if tracked."""
        return self._stats.get(_peer_id(peer_id))

    def all_stats(self) -> dict[PeerId, PeerStats]:
        """Statistics of every tracked peer."""
        return self._stats.all()

    def health(self) -> dict[str, Any]:
        """A health snapshot with readiness checks (shape: docs/engine-api.md).

        Cheap and synchronous: the event-loop lag is sampled every ``health_interval``
        and the repository probed every ``repository_probe_interval`` in the background;
        this reports the latest results.

        Returns:
            ``ready`` (bool: running and every check ok), ``checks`` (``listening``,
            ``event_loop``, ``peers``, ``repository``; each a dict with ``ok``),
            ``connections`` (pending upgrades, refusals by reason, attempts in flight),
            and the summary keys ``running``, ``listening``, ``peers`` (count per
            state), ``tasks``, ``handshake_sessions``, ``blacklist``.
        """
        cfg = self._config
        listening = [str(a) for a in self.listen_addrs()] if self._running else []
        by_state = {state.value: len(self._cm.peers_in(state)) for state in ConnectionState}
        # The worst of the last samples, so one stall is visible for a few intervals.
        lag_ok = self._loop_lag_max <= cfg.max_event_loop_lag
        checks: dict[str, dict[str, Any]] = {
            "listening": {"ok": self._running and bool(listening), "addrs": listening},
            "event_loop": {
                "ok": lag_ok,
                "lag_ms": round(self._loop_lag * 1000, 3),
                "max_lag_ms": round(self._loop_lag_max * 1000, 3),
                "limit_ms": round(cfg.max_event_loop_lag * 1000, 3),
                "samples": self._loop_lag_samples,
            },
            "peers": {
                "ok": True,
                "connected": by_state["connected"] + by_state["established"],
                "established": by_state["established"],
                "max_connections": cfg.max_connections,
            },
            "repository": dict(self._repo_status),
        }
        pending = getattr(self._host, "pending_connections", None)
        return {
            "ready": self._running and all(c["ok"] for c in checks.values()),
            "checks": checks,
            "connections": {
                "pending": pending if isinstance(pending, int) else None,
                "attempts_in_flight": self._tracer.in_flight,
                "refused": dict(self._counters.refused),
            },
            "running": self._running,
            "listening": listening,
            "peers": by_state,
            "tasks": len(self._tasks),
            "handshake_sessions": len(self._sessions),
            "blacklist": len(self._blacklist.records()),
        }

    def counters(self) -> dict[str, Any]:
        """Node-wide counters of the rare events, for metrics collectors (sync, cheap).

        Returns:
            ``connections_opened`` (by direction), ``connections_closed`` (by error
            code, ``none`` when clean), ``handshakes`` (``ok`` or the error code),
            ``handshake_seconds_total``, ``dropped`` (by drop reason), ``refused`` (by
            refusal reason), ``decryption_errors``, ``reconnect_attempts``. All are
            monotonic since the node was created.
        """
        return self._counters.snapshot()

    async def check_repository(self, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """Probe the repository now (a one-row read) and record the result for health().

        Args:
            timeout: seconds the probe may take.

        Returns:
            Whether the repository answered.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._repo.list_peers(offset=0, limit=1)
        except (Exception, TimeoutError) as exc:  # any failure means "not reachable"
            self._repo_status = {
                "ok": False,
                "checked_at": time.time(),
                "error": getattr(exc, "code", None) or type(exc).__name__,
            }
            _log.debug("repository probe failed: %r", exc)
            return False
        self._repo_status = {"ok": True, "checked_at": time.time(), "error": None}
        return True

    async def _health_loop(self) -> None:
        # Event-loop lag: how late a timer fires. One wake-up per interval, no thread.
        loop = asyncio.get_running_loop()
        interval = self._config.health_interval
        recent: deque[float] = deque(maxlen=_LAG_WINDOW)
        next_probe = loop.time() + self._config.repository_probe_interval
        while self._running:
            started = loop.time()
            await asyncio.sleep(interval)
            now = loop.time()
            self._loop_lag = max(0.0, now - started - interval)
            recent.append(self._loop_lag)
            self._loop_lag_max = max(recent)
            self._loop_lag_samples += 1
            if now >= next_probe:
                next_probe = now + self._config.repository_probe_interval
                await self.check_repository()

    def _host_refused(
        self, reason: HostRefusal, direction: Direction, remote: Multiaddr | None
    ) -> None:
        # The host's limits and failed inbound upgrades (HostNotifee.refused, call_soon).
        ours = _HOST_REFUSALS.get(reason, RefusalReason.UPGRADE_FAILED)
        if ours is not None:
            self._connection_refused(
                None, ours, direction.value, str(remote) if remote is not None else None
            )

    def _connection_refused(
        self,
        peer_id: PeerId | None,
        reason: RefusalReason,
        direction: str,
        remote_addr: str | None = None,
    ) -> None:
        _log.debug(
            "refused %s connection (peer %s, address %s): %s",
            direction,
            peer_id,
            remote_addr,
            reason,
        )
        self._metrics.connection_refused(peer_id, reason, direction)

    def _emit(self, peer_id: PeerId, action: Emit) -> None:
        state = action.state
        parent = (
            self._connect_parents.pop(peer_id, None)
            if state is ConnectionState.CONNECTING
            else None
        )
        status = self._cm.status(peer_id)
        self._tracer.transition(
            peer_id,
            action.previous_state,
            state,
            error_code=action.error_code,
            direction="outbound" if status.is_outbound else "inbound",
            attempt=status.reconnect_attempts,
            parent=parent,
        )
        self._events.emit_action(peer_id, action)
        if action.state is ConnectionState.ESTABLISHED:
            self._stats.record_connect(peer_id)
            self._repo.touch_peer(peer_id, seen_at=action.timestamp, connected=True)
            if self._running:
                self._spawn(self._ping_once(peer_id), "gb-ping")
        elif action.state is ConnectionState.COOLDOWN and self._running:
            self._spawn(
                self._audit(
                    "handshake_failed",
                    peer_id.to_string(),
                    {"code": action.error_code or "handshake_failed"},
                ),
                "gb-audit",
            )

    async def _housekeeping(self) -> None:
        # Stale statistics of disconnected peers expire (plan 2.3); the tracker is also
        # bounded by max_tracked_peers on every insertion.
        interval = min(60.0, self._config.stats_ttl / 10)
        while self._running:
            await asyncio.sleep(interval)
            self._stats.sweep()

    async def _ping_once(self, peer_id: PeerId) -> None:
        with contextlib.suppress(GlueberryError, OSError, TimeoutError):
            await self.ping(peer_id, timeout=self._config.keepalive_timeout)

    # StreamEvents (called by the stream manager) ------------------------------------------

    def message_received(self, peer_id: PeerId, stream: str, data: bytes) -> None:
        """Stream manager callback: deliver a message."""
        self._seq += 1
        now = time.time()
        self._stats.record_in(peer_id, stream, len(data), now)
        if self._user_metrics is not None:
            self._user_metrics.message_received(peer_id, stream, len(data))
        self._messages.publish(IncomingMessage(peer_id, stream, data, now, self._seq))

    def _message_dropped_by_subscriber(
        self, sub: Subscription[IncomingMessage], msg: IncomingMessage, reason: str
    ) -> None:
        self._stats.record_drop(msg.peer_id, f"subscriber_{reason}")
        _log.debug(
            "dropped message %d from %s on %s: subscriber buffer full (%d queued, %d bytes)",
            msg.seq,
            msg.peer_id,
            msg.stream,
            sub.pending,
            sub.pending_bytes,
        )
        self._metrics.message_dropped(msg.peer_id, msg.stream, DropReason.BUFFER_FULL)

    def _handshake_dropped_by_subscriber(
        self, sub: Subscription[HandshakeMessage], msg: HandshakeMessage, reason: str
    ) -> None:
        # App mode: the application's handshake subscription is full. Counted under the
        # handshake protocol id, which no stream name can collide with.
        self._stats.record_drop(msg.peer_id, f"subscriber_{reason}")
        _log.debug("dropped handshake message from %s: subscriber buffer full", msg.peer_id)
        self._metrics.message_dropped(msg.peer_id, HANDSHAKE_PROTOCOL, DropReason.BUFFER_FULL)

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        """Stream manager callback: a message was queued."""
        self._stats.record_out(peer_id, stream, size)
        if self._user_metrics is not None:
            self._user_metrics.message_sent(peer_id, stream, size)

    def message_dropped(self, peer_id: PeerId, stream: str, reason: DropReason) -> None:
        """Stream manager callback: a message was dropped."""
        self._stats.record_drop(peer_id, str(reason))
        _log.debug("dropped message of %s on %s: %s", peer_id, stream, reason)
        self._metrics.message_dropped(peer_id, stream, reason)

    def decryption_failed(self, peer_id: PeerId, stream: str, error: DecryptionError) -> None:
        """Stream manager callback: a frame failed to decrypt."""
        self._stats.record_decryption_error(peer_id)
        self._metrics.decryption_error(peer_id, stream)
        callback = self._on_decryption_error
        if callback is not None:
            try:
                callback(peer_id, stream, error)
            except Exception:
                _log.exception("on_decryption_error callback raised")

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        peer_id: PeerId | str,
        stream: str,
        data: bytes,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Send one message on a named stream (opened lazily).

        Returns once the message is encrypted and queued for the transport; the
        per-stream flow control makes senders wait when the peer does not keep up.

        Args:
            peer_id: an established peer.
            stream: a prepared stream name.
            data: the message (at most ``max_message_size`` bytes).
            timeout: seconds to wait for flow-control credit (default ``send_timeout``).

        Raises:
            NodeNotRunningError: the node is not running.
            NotEstablishedError: the handshake is not finalized.
            InvalidStreamNameError: the stream is not prepared for the peer.
            MessageTooLargeError: ``data`` is too large.
            SendTimeoutError: no credit within ``timeout``.
            StreamError: the stream could not be opened.
        """
        self._check_running()
        await self._streams.send(
            _peer_id(peer_id),
            stream,
            data,
            self._config.send_timeout if timeout is None else timeout,
        )

    # -- handshake: application API -----------------------------------------------------------

    async def send_handshake_message(self, peer_id: PeerId | str, data: bytes) -> None:
        """Send one handshake message (``app`` mode).

        Raises:
            NotConnectedError: the peer is not connected.
            MessageTooLargeError: ``data`` is larger than 64 KiB.
        """
        self._check_running()
        pid = _peer_id(peer_id)
        session = self._sessions.get(pid)
        if session is None or session.closed:
            raise NotConnectedError(f"peer {pid} is not connected")
        await self._write_handshake(session, bytes(data))

    async def prepare_streams(
        self,
        peer_id: PeerId | str,
        peer_public_key: bytes,
        stream_names: Sequence[str],
        *,
        unencrypted: Sequence[str] = (),
    ) -> None:
        """Phase one: derive the stream key and become ready to receive.

        Args:
            peer_id: a connected peer.
            peer_public_key: its raw 32-byte Ed25519 key (must match ``peer_id``).
            stream_names: encrypted stream names to accept and send on.
            unencrypted: stream names whose payloads travel in clear.

        Raises:
            NotConnectedError: the peer is not connected.
            PeerIdMismatchError: the key is not the peer's.
            InvalidPublicKeyError, WeakSharedSecretError: unusable key.
            InvalidStreamNameError: a bad name or too many names.
        """
        self._check_running()
        pid = _peer_id(peer_id)
        if self._cm.state(pid) not in (ConnectionState.CONNECTED, ConnectionState.ESTABLISHED):
            raise NotConnectedError(f"peer {pid} is not connected")
        self._prepare(pid, bytes(peer_public_key), list(stream_names), list(unencrypted))

    def _prepare(
        self, pid: PeerId, key: bytes, names: Sequence[str], unencrypted: Sequence[str]
    ) -> None:
        if len(key) != 32 or PeerId.from_public_key(key) != pid:
            raise PeerIdMismatchError("the public key does not belong to this peer")
        secret = derive_stream_key(self._identity, key) if names else None
        try:
            self._streams.prepare(pid, secret, names, unencrypted)
        finally:
            if secret is not None:
                secret.close()

    async def finalize_handshake(self, peer_id: PeerId | str) -> None:
        """Phase two: enable sending; the peer becomes ``established``.

        Raises:
            NotEstablishedError: :meth:`prepare_streams` was not called for the peer.
            NotConnectedError: the peer is not connected.
        """
        self._check_running()
        pid = _peer_id(peer_id)
        self._finalize(pid)

    def _finalize(self, pid: PeerId) -> None:
        if self._cm.state(pid) not in (ConnectionState.CONNECTED, ConnectionState.ESTABLISHED):
            raise NotConnectedError(f"peer {pid} is not connected")
        self._streams.finalize(pid)
        self._cm.handshake_succeeded(pid)

    async def complete_handshake(
        self, peer_id: PeerId | str, peer_public_key: bytes, stream_names: Sequence[str]
    ) -> None:
        """Deprecated one-shot handshake: ``prepare_streams`` then ``finalize_handshake``.

        Prefer the two-phase API: finalizing before the peer has prepared can lose the
        first messages.
        """
        warnings.warn(
            "complete_handshake is deprecated; call prepare_streams() and, once the peer "
            "is ready, finalize_handshake()",
            DeprecationWarning,
            stacklevel=2,
        )
        await self.prepare_streams(peer_id, peer_public_key, stream_names)
        await self.finalize_handshake(peer_id)

    # -- handshake I/O ---------------------------------------------------------------------------

    def _on_connected(self, peer_id: PeerId, info: ConnectionInfo) -> None:
        old = self._sessions.pop(peer_id, None)
        if old is not None:
            for task in self._close_session(old):
                task.cancel()
        core = None
        if self._config.handshake_mode is HandshakeMode.AUTO:
            core = AutoHandshake(
                local_public_key=self._identity.public_key,
                peer_id=peer_id,
                streams=self._config.default_streams,
                capabilities=self._capabilities,
                max_streams=self._config.max_streams_per_peer,
                max_stream_name_length=self._config.max_stream_name_length,
            )
        session = _HandshakeSession(peer_id, core)
        self._sessions[peer_id] = session
        if core is not None and info.direction is Direction.OUTBOUND:
            self._session_spawn(session, self._open_and_run(session), "gb-hs-open")

    def _session_spawn(
        self, session: _HandshakeSession, coro: Coroutine[Any, Any, None], name: str
    ) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    def _on_close(self, peer_id: PeerId) -> None:
        session = self._sessions.pop(peer_id, None)
        if session is not None:
            self._close_session(session)
        for task in self._streams.close_peer(peer_id):
            task.cancel()
        self._stats.record_disconnect(peer_id)

    def _close_session(self, session: _HandshakeSession) -> list[asyncio.Task[None]]:
        session.closed = True
        tasks = list(session.tasks)
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        for stream in session.streams:
            self._spawn(_quiet_reset(stream), "gb-hs-reset")
        session.streams.clear()
        session.send_stream = None
        return tasks

    async def _open_handshake_stream(self, session: _HandshakeSession) -> None:
        # Lazy open without a lock: the first caller opens, the others wait on its future.
        while session.send_stream is None:
            if session.closed:
                raise NotConnectedError(f"peer {session.peer_id} is not connected")
            if session.opening is not None:
                await asyncio.shield(session.opening)
                continue
            opening: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            session.opening = opening
            try:
                stream = await self._host.new_stream(
                    session.peer_id, [HANDSHAKE_PROTOCOL], timeout=self._config.dial_timeout
                )
            finally:
                session.opening = None
                opening.set_result(None)
            if session.closed:
                await _quiet_reset(stream)
                raise NotConnectedError(f"peer {session.peer_id} is not connected")
            session.streams.append(stream)
            if session.send_stream is None:
                session.send_stream = stream
            self._session_spawn(
                session, self._run_handshake_stream(session, stream, start=False), "gb-hs-read"
            )

    async def _open_and_run(self, session: _HandshakeSession) -> None:
        try:
            await self._open_handshake_stream(session)
            await self._start_core(session)
        except GlueberryError as exc:
            self._handshake_failed(session, exc)

    async def _start_core(self, session: _HandshakeSession) -> None:
        core = session.core
        if core is not None and core.phase is HandshakePhase.IDLE:
            await self._write_handshake(session, core.start())

    async def _write_handshake(self, session: _HandshakeSession, payload: bytes) -> None:
        if len(payload) > MAX_HANDSHAKE_MESSAGE_SIZE:
            from engine.errors import MessageTooLargeError

            raise MessageTooLargeError(
                f"handshake message of {len(payload)} bytes exceeds {MAX_HANDSHAKE_MESSAGE_SIZE}"
            )
        if session.send_stream is None:
            await self._open_handshake_stream(session)
        stream = session.send_stream
        if stream is None:
            raise NotConnectedError(f"peer {session.peer_id} is not connected")
        # Serialises writes on this one stream (frames must not interleave); held only by
        # handshake writers of this peer, never by anything else.
        async with session.write_lock:
            await stream.write(encode_frame(payload))

    async def _handle_handshake_stream(self, stream: P2PStream) -> None:
        """Host handler for inbound ``/glueberry/handshake/1.0.0`` streams."""
        session = self._sessions.get(stream.remote_peer)
        if (
            session is not None
            and session.core is not None
            and session.core.phase is HandshakePhase.DONE
            and self._running
        ):
            # A new handshake from a peer we consider established: it restarted and its
            # new connection silently replaced the old one. Start over on the new one.
            info = self._host.connection_info(stream.remote_peer)
            if info is not None:
                self._cm.replaced(info)
                session = self._sessions.get(stream.remote_peer)
        if session is None and self._running:
            # The stream may overtake the host's "connected" notification (delivered via
            # call_soon): act on the connection now; the late notification is a no-op.
            info = self._host.connection_info(stream.remote_peer)
            if info is not None:
                self._cm.connected(info)
                session = self._sessions.get(stream.remote_peer)
        if session is None or session.closed:
            await _quiet_reset(stream)
            return
        session.streams.append(stream)
        if session.send_stream is None:
            session.send_stream = stream
        # This task belongs to the host; closing the session resets the stream, which
        # ends the read below (the task is never cancelled by us).
        await self._run_handshake_stream(session, stream, start=True)

    async def _run_handshake_stream(
        self, session: _HandshakeSession, stream: P2PStream, *, start: bool
    ) -> None:
        try:
            if start:
                await self._start_core(session)
            await self._read_handshake(session, stream)
        except GlueberryError as exc:
            self._handshake_failed(session, exc)

    async def _read_handshake(self, session: _HandshakeSession, stream: P2PStream) -> None:
        decoder = FrameDecoder(MAX_HANDSHAKE_MESSAGE_SIZE)
        peer_id = session.peer_id
        try:
            while not session.closed:
                try:
                    chunk = await stream.read(65536)
                except StreamError:
                    return
                if not chunk:
                    return
                try:
                    payloads = decoder.feed(chunk)
                except FrameError as exc:
                    self._handshake_failed(session, exc)
                    return
                for payload in payloads:
                    if session.core is None:
                        self._handshakes.publish(HandshakeMessage(peer_id, payload, time.time()))
                    else:
                        await self._auto_step(session, stream, payload)
                    if session.closed:
                        return
        finally:
            if stream in session.streams:
                session.streams.remove(stream)
            if session.send_stream is stream:
                session.send_stream = None

    async def _auto_step(
        self, session: _HandshakeSession, stream: P2PStream, payload: bytes
    ) -> None:
        core = session.core
        assert core is not None  # only called in auto mode
        for action in core.receive(payload):
            if isinstance(action, Prepare):
                try:
                    self._prepare(session.peer_id, action.public_key, action.streams, ())
                except GlueberryError as exc:
                    abort = core.fail(exc)
                    with contextlib.suppress(GlueberryError):
                        await self._write_handshake(session, abort)
                    self._handshake_failed(session, exc)
                    return
                await self._write_handshake(session, core.prepared())
            elif isinstance(action, Finalize):
                self._finalize(session.peer_id)
                # Our "complete" went out before theirs arrived: nothing more to say.
                with contextlib.suppress(GlueberryError):
                    await stream.close_write()
            elif isinstance(action, Failed):
                if action.abort is not None:
                    with contextlib.suppress(GlueberryError):
                        await self._write_handshake(session, action.abort)
                self._handshake_failed(session, action.error)
                return

    def _handshake_failed(self, session: _HandshakeSession, error: GlueberryError) -> None:
        if session.closed:
            return
        if isinstance(
            error, StreamError | NotConnectedError | TransportError
        ) and not self._host.is_connected(session.peer_id):
            # The connection died under the handshake: not the peer failing the handshake
            # but a network loss, which the host's disconnect notice turns into a
            # reconnect. Counting it as a failed handshake would put the peer in cooldown.
            _log.debug("handshake with %s lost its connection: %s", session.peer_id, error)
            return
        _log.info("handshake with %s failed: %s", session.peer_id, error)
        self._cm.handshake_failed(session.peer_id, error)


class _Fanout:
    """:class:`Metrics` to our counters and, guarded, to the caller's metrics."""

    __slots__ = ("_counters", "_user")

    def __init__(self, counters: CountingMetrics, user: Metrics | None) -> None:
        self._counters = counters
        self._user = user

    def _call(self, name: str, *args: Any) -> None:
        getattr(self._counters, name)(*args)
        if self._user is not None:
            try:
                getattr(self._user, name)(*args)
            except Exception:
                _log.exception("metrics callback %s raised", name)

    def connection_opened(self, peer_id: PeerId, direction: str) -> None:
        self._call("connection_opened", peer_id, direction)

    def connection_closed(self, peer_id: PeerId, error_code: str | None) -> None:
        self._call("connection_closed", peer_id, error_code)

    def handshake_completed(
        self, peer_id: PeerId, ok: bool, duration: float, error_code: str | None
    ) -> None:
        self._call("handshake_completed", peer_id, ok, duration, error_code)

    def message_sent(self, peer_id: PeerId, stream: str, size: int) -> None:
        self._call("message_sent", peer_id, stream, size)

    def message_received(self, peer_id: PeerId, stream: str, size: int) -> None:
        self._call("message_received", peer_id, stream, size)

    def message_dropped(self, peer_id: PeerId, stream: str, reason: DropReason) -> None:
        self._call("message_dropped", peer_id, stream, reason)

    def decryption_error(self, peer_id: PeerId, stream: str) -> None:
        self._call("decryption_error", peer_id, stream)

    def reconnect_attempt(self, peer_id: PeerId, attempt: int) -> None:
        self._call("reconnect_attempt", peer_id, attempt)

    def connection_refused(
        self, peer_id: PeerId | None, reason: RefusalReason, direction: str, count: int = 1
    ) -> None:
        self._call("connection_refused", peer_id, reason, direction, count)


class _RefusalObserver:
    """Host notifee that reports the host's refusals to the node (connections: the CM)."""

    __slots__ = ("_node",)

    def __init__(self, node: Node) -> None:
        self._node = node

    def connected(self, info: ConnectionInfo) -> None:
        """Ignored (the connection manager is notified too)."""

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        """Ignored (the connection manager is notified too)."""

    def refused(self, reason: HostRefusal, direction: Direction, remote: Multiaddr | None) -> None:
        """Count and log one refusal of the host."""
        self._node._host_refused(reason, direction, remote)


class _ObservedGate:
    """The blacklist as the host's connection gate, with every refusal observed.

    ``allow_peer`` decisions (after the security handshake) are traced as
    ``glueberry.gate`` spans; ``allow_addr`` refusals (before anything is read, so cheap
    to provoke) are counted and logged only.
    """

    __slots__ = ("_inner", "_node")

    def __init__(self, inner: Blacklist, node: Node) -> None:
        self._inner = inner
        self._node = node

    def allow_addr(self, remote: Multiaddr, direction: Direction) -> bool:
        ok = self._inner.allow_addr(remote, direction)
        if not ok:
            self._node._connection_refused(
                None, RefusalReason.BLACKLISTED_ADDR, direction.value, str(remote)
            )
        return ok

    def allow_peer(self, peer_id: PeerId, direction: Direction) -> bool:
        ok = self._inner.allow_peer(peer_id, direction)
        reason = None if ok else RefusalReason.BLACKLISTED_PEER
        self._node._tracer.gate_decision(
            peer_id=peer_id, remote_addr=None, direction=direction.value, allowed=ok, reason=reason
        )
        if reason is not None:
            self._node._connection_refused(peer_id, reason, direction.value)
        return ok


def _weigh_message(msg: IncomingMessage) -> int:
    return len(msg.data)


def _weigh_handshake(msg: HandshakeMessage) -> int:
    return len(msg.data)


async def _quiet_reset(stream: P2PStream) -> None:
    with contextlib.suppress(Exception):
        await stream.reset()


def _maddrs(addrs: Sequence[str]) -> list[Multiaddr]:
    out: list[Multiaddr] = []
    for text in addrs:
        with contextlib.suppress(Exception):
            out.append(Multiaddr(text))
    return out
