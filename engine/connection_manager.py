"""The connection manager: feeds each peer's state machine and performs its actions.

The rules live in :mod:`engine.connection_state` (one transition table, sans-IO). This
module is the thin I/O layer around it: it turns host notifications, user calls, dial
outcomes and timer firings into machine inputs, and performs the actions each transition
returns (dial, arm/disarm timers, close, emit), in order, *after* the synchronous decision.

Invariants, each a bug of the Go original (IMPROVEMENT_PLAN.md):

- *Handshake timer armed race-free (plan 1.3).* ``StartHandshakeTimer`` is an action of
  the very transition that enters ``connected``; it is armed (``loop.call_later``) in the
  same synchronous step, and the timer feeds ``handshake_timeout(epoch=...)``, which the
  machine ignores as stale once anything else happened to the peer.
- *connect() leaks no task (plan 2.2).* ``connect`` performs its dial in the caller's own
  task under ``asyncio.timeout`` and then waits on a private future that is removed
  whatever happens. Background work is limited to: one dial task per reconnect attempt,
  timer handles, and one short disconnect task per ``Close``; all are tracked and
  cancelled by :meth:`ConnectionManager.aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from multiaddr import Multiaddr

from engine.config import Config
from engine.connection_state import (
    CancelCooldown,
    CancelDial,
    CancelHandshakeTimer,
    CancelReconnect,
    Close,
    ConnectionState,
    Dial,
    Emit,
    EnterCooldown,
    PeerConnectionMachine,
    PeerStatus,
    ScheduleReconnect,
    StartHandshakeTimer,
    Transition,
)
from engine.crypto.identity import PeerId
from engine.errors import (
    ConnectionClosedError,
    ConnectionGatedError,
    DialError,
    DialTimeoutError,
    GlueberryError,
    NodeNotRunningError,
    PeerBlacklistedError,
    PeerInCooldownError,
)
from engine.net.interface import ConnectionInfo, Direction, P2PHost
from engine.observability import RefusalReason

__all__ = ["ConnectionManager", "EmitCallback", "RefusedCallback"]

_log = logging.getLogger(__name__)

EmitCallback = Callable[[PeerId, Emit], None]
#: ``(peer_id, reason, direction)``: a connection or a dial was refused by the manager.
RefusedCallback = Callable[[PeerId, RefusalReason, str], None]

_CONNECTED = frozenset({ConnectionState.CONNECTED, ConnectionState.ESTABLISHED})
_DOWN = frozenset(
    {ConnectionState.DISCONNECTED, ConnectionState.RECONNECTING, ConnectionState.COOLDOWN}
)


@dataclass(eq=False)
class _Peer:
    """What the manager holds for one peer besides its machine."""

    peer_id: PeerId
    machine: PeerConnectionMachine
    addrs: list[Multiaddr] = field(default_factory=list)
    handshake_timer: asyncio.TimerHandle | None = None
    reconnect_timer: asyncio.TimerHandle | None = None
    cooldown_timer: asyncio.TimerHandle | None = None
    dial_epoch: int | None = None  # epoch of the Dial in flight
    dial_task: asyncio.Task[None] | None = None  # background dial (reconnects)
    inline_dial: bool = False  # the Dial is run by a connect() caller
    keep_transport: bool = False  # a Close must not close the (new) transport connection
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    last_error: GlueberryError | None = None


class ConnectionManager:
    """Connection lifecycle of every known peer.

    Args:
        config: engine settings (timeouts, backoff, cooldown).
        host: the libp2p host.
        emit: called for every state change with the machine's :class:`Emit` action.
        on_connected: called (sync) when the peer enters ``connected``: start the
            handshake.
        on_close: called (sync) when the peer's connection must be torn down (streams,
            handshake); the manager then closes the transport connection itself.
        is_blacklisted: the blacklist decision for a peer id.
        filter_addrs: drops addresses we may not dial (banned networks).
        clock: epoch-seconds clock fed to the machines.
        on_refused: told about every connection the manager refuses (a banned peer that
            got past the gate, an inbound connection during cooldown) and every
            ``connect`` refused (blacklisted, cooldown); for metrics and logs.
    """

    def __init__(
        self,
        config: Config,
        host: P2PHost,
        *,
        emit: EmitCallback,
        on_connected: Callable[[PeerId, ConnectionInfo], None],
        on_close: Callable[[PeerId], None],
        is_blacklisted: Callable[[PeerId], bool],
        filter_addrs: Callable[[Sequence[Multiaddr]], list[Multiaddr]] = list,
        clock: Callable[[], float] = time.time,
        on_refused: RefusedCallback | None = None,
    ) -> None:
        self._config = config
        self._host = host
        self._emit = emit
        self._on_connected = on_connected
        self._on_close = on_close
        self._is_blacklisted = is_blacklisted
        self._filter_addrs = filter_addrs
        self._clock = clock
        self._on_refused = on_refused
        self._peers: dict[PeerId, _Peer] = {}
        self._bg: set[asyncio.Task[None]] = set()
        self._running = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Accept notifications and dial requests."""
        self._running = True

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`aclose` was not."""
        return self._running

    async def aclose(self) -> None:
        """Stop: disarm every timer, cancel background dials, fail waiters, await tasks."""
        self._running = False
        for peer in self._peers.values():
            for handle in (peer.handshake_timer, peer.reconnect_timer, peer.cooldown_timer):
                if handle is not None:
                    handle.cancel()
            peer.handshake_timer = peer.reconnect_timer = peer.cooldown_timer = None
            self._fail_waiters(peer, NodeNotRunningError("node stopped"))
        tasks = list(self._bg)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- peers and queries ---------------------------------------------------------------------

    def _peer(self, peer_id: PeerId) -> _Peer:
        peer = self._peers.get(peer_id)
        if peer is None:
            machine = PeerConnectionMachine.from_config(peer_id, self._config, auto_reconnect=False)
            peer = _Peer(peer_id, machine)
            self._peers[peer_id] = peer
        return peer

    def state(self, peer_id: PeerId) -> ConnectionState:
        """The peer's state (``disconnected`` for unknown peers)."""
        peer = self._peers.get(peer_id)
        return peer.machine.state if peer is not None else ConnectionState.DISCONNECTED

    def status(self, peer_id: PeerId) -> PeerStatus:
        """A snapshot of the peer's connection."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return PeerStatus(ConnectionState.DISCONNECTED, 0, None, False, None, None)
        return peer.machine.status()

    def is_outbound(self, peer_id: PeerId) -> bool:
        """Whether the live connection to the peer was dialed by us."""
        peer = self._peers.get(peer_id)
        return peer is not None and peer.machine.is_outbound

    def peers_in(self, *states: ConnectionState) -> list[PeerId]:
        """Peers currently in one of ``states``."""
        return [p.peer_id for p in self._peers.values() if p.machine.state in states]

    def known_peers(self) -> list[PeerId]:
        """Every peer the manager tracks."""
        return list(self._peers)

    def set_addrs(self, peer_id: PeerId, addrs: Sequence[Multiaddr], *, auto: bool) -> None:
        """Record where the peer can be dialed and whether to keep it connected."""
        peer = self._peer(peer_id)
        peer.addrs = list(addrs)
        peer.machine.auto_reconnect = auto and self._config.reconnect_max_attempts > 0

    def forget(self, peer_id: PeerId) -> None:
        """Stop reconnecting to a peer removed from the address book."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        peer.machine.auto_reconnect = False
        peer.addrs = []
        self._feed(peer, peer.machine.cancel_reconnect(self._clock()))
        if peer.machine.state is ConnectionState.DISCONNECTED and not peer.waiters:
            del self._peers[peer_id]

    # -- feeding the machine --------------------------------------------------------------------

    def _feed(self, peer: _Peer, tr: Transition, error: GlueberryError | None = None) -> None:
        """Perform a transition's actions in order, then settle waiters."""
        for action in tr.actions:
            self._perform(peer, action)
        if not tr.changed:
            return
        if tr.state is ConnectionState.ESTABLISHED:
            self._resolve_waiters(peer)
        elif tr.state in _DOWN:
            if error is not None:
                peer.last_error = error
            self._fail_waiters(
                peer,
                error
                or peer.last_error
                or ConnectionClosedError(f"connection to {peer.peer_id} went {tr.state.value}"),
            )
            if tr.state is ConnectionState.DISCONNECTED:
                self._drop_if_idle(peer)

    def _drop_if_idle(self, peer: _Peer) -> None:
        # Peer ids are free to mint: state is kept only for peers we may dial (address
        # book) or that have something pending. A peer that connected to us and left
        # needs none; it gets a fresh machine if it comes back. (Cooldown keeps its
        # entry until it expires: the cooldown is the state.)
        if (
            peer.addrs
            or peer.waiters
            or peer.keep_transport  # replaced(): the same peer comes right back up
            or peer.inline_dial
            or peer.dial_task is not None
            or peer.dial_epoch is not None
            or peer.handshake_timer is not None
            or peer.reconnect_timer is not None
            or peer.cooldown_timer is not None
        ):
            return
        if self._peers.get(peer.peer_id) is peer:
            del self._peers[peer.peer_id]

    def _perform(self, peer: _Peer, action: Any) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(action, Emit):
            self._emit(peer.peer_id, action)
        elif isinstance(action, StartHandshakeTimer):
            if peer.handshake_timer is not None:
                peer.handshake_timer.cancel()
            peer.handshake_timer = loop.call_later(
                action.delay, self._handshake_timer_fired, peer, action.epoch
            )
        elif isinstance(action, CancelHandshakeTimer):
            if peer.handshake_timer is not None:
                peer.handshake_timer.cancel()
                peer.handshake_timer = None
        elif isinstance(action, ScheduleReconnect):
            if peer.reconnect_timer is not None:
                peer.reconnect_timer.cancel()
            if self._running:
                peer.reconnect_timer = loop.call_later(
                    action.delay, self._reconnect_timer_fired, peer, action.epoch
                )
        elif isinstance(action, CancelReconnect):
            if peer.reconnect_timer is not None:
                peer.reconnect_timer.cancel()
                peer.reconnect_timer = None
        elif isinstance(action, EnterCooldown):
            if peer.cooldown_timer is not None:
                peer.cooldown_timer.cancel()
            peer.cooldown_timer = loop.call_later(
                action.delay, self._cooldown_timer_fired, peer, action.epoch
            )
        elif isinstance(action, CancelCooldown):
            if peer.cooldown_timer is not None:
                peer.cooldown_timer.cancel()
                peer.cooldown_timer = None
        elif isinstance(action, Dial):
            peer.dial_epoch = action.epoch
            if not peer.inline_dial:
                peer.dial_task = self._spawn(self._background_dial(peer, action.epoch))
        elif isinstance(action, CancelDial):
            peer.dial_epoch = None
            if peer.dial_task is not None:
                peer.dial_task.cancel()
                peer.dial_task = None
        elif isinstance(action, Close):
            self._on_close(peer.peer_id)
            if self._host.is_connected(peer.peer_id) and not peer.keep_transport:
                self._spawn(self._disconnect_quietly(peer.peer_id))

    def _refused(self, peer_id: PeerId, reason: RefusalReason, direction: str) -> None:
        if self._on_refused is not None:
            try:
                self._on_refused(peer_id, reason, direction)
            except Exception:
                _log.exception("on_refused callback raised")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name="gb-conn")
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    async def _disconnect_quietly(self, peer_id: PeerId) -> None:
        with contextlib.suppress(GlueberryError, OSError):
            await self._host.disconnect(peer_id)

    def _resolve_waiters(self, peer: _Peer) -> None:
        for fut in peer.waiters:
            if not fut.done():
                fut.set_result(None)
        peer.waiters.clear()

    def _fail_waiters(self, peer: _Peer, error: GlueberryError) -> None:
        for fut in peer.waiters:
            if not fut.done():
                fut.set_exception(error)
        peer.waiters.clear()

    # -- timers --------------------------------------------------------------------------------

    def _handshake_timer_fired(self, peer: _Peer, epoch: int) -> None:
        peer.handshake_timer = None
        if not self._running:
            return
        from engine.errors import HandshakeTimeoutError

        error = HandshakeTimeoutError(
            f"handshake not completed within {peer.machine.handshake_seconds} s"
        )
        tr = peer.machine.handshake_timeout(self._clock(), epoch=epoch)
        self._feed(peer, tr, error)

    def _reconnect_timer_fired(self, peer: _Peer, epoch: int) -> None:
        peer.reconnect_timer = None
        if not self._running:
            return
        if self._is_blacklisted(peer.peer_id):
            self._feed(peer, peer.machine.blacklisted(self._clock()))
            return
        self._feed(peer, peer.machine.reconnect_due(self._clock(), epoch=epoch))

    def _cooldown_timer_fired(self, peer: _Peer, epoch: int) -> None:
        peer.cooldown_timer = None
        if not self._running:
            return
        self._feed(peer, peer.machine.cooldown_expired(self._clock(), epoch=epoch))

    # -- dialing -------------------------------------------------------------------------------

    def _dialable(self, peer: _Peer) -> list[Multiaddr]:
        addrs = self._filter_addrs(peer.addrs)
        if not addrs:
            raise DialError(f"no dialable address for {peer.peer_id}")
        return addrs

    async def _background_dial(self, peer: _Peer, epoch: int) -> None:
        try:
            await self._host.dial(
                peer.peer_id, self._dialable(peer), timeout=self._config.dial_timeout
            )
        except GlueberryError as exc:
            _log.debug("dial to %s failed: %s", peer.peer_id, exc)
            self._dial_done(peer, epoch, exc)
        else:
            self._dial_done(peer, epoch, None)
        finally:
            if peer.dial_task is asyncio.current_task():
                peer.dial_task = None

    def _dial_done(self, peer: _Peer, epoch: int, error: GlueberryError | None) -> None:
        current = peer.dial_epoch == epoch and peer.machine.epoch == epoch
        if peer.dial_epoch == epoch:
            peer.dial_epoch = None
        now = self._clock()
        info = self._host.connection_info(peer.peer_id)
        if current and info is not None and info.direction is Direction.INBOUND:
            # Simultaneous dials: the host kept the peer's connection, not ours (or our
            # dial failed because of it). Take the connection that exists.
            self._connection_up(peer, peer.machine.inbound_connected(now), info)
        elif error is None:
            tr = peer.machine.dial_succeeded(now, epoch=epoch)
            if tr.ignored is None and info is not None:
                self._connection_up(peer, tr, info)
            elif tr.ignored is None:
                lost = ConnectionClosedError("the connection closed right after the dial")
                self._feed(peer, tr)
                self._feed(peer, peer.machine.disconnected(now, error=lost), lost)
        else:
            self._feed(peer, peer.machine.dial_failed(now, epoch=epoch, error=error), error)

    def _connection_up(self, peer: _Peer, tr: Transition, info: ConnectionInfo) -> None:
        self._feed(peer, tr)
        if tr.changed and tr.state is ConnectionState.CONNECTED:
            self._on_connected(peer.peer_id, info)

    def auto_connect(self, peer_id: PeerId) -> None:
        """Start connecting in the background (address-book peers on start)."""
        peer = self._peer(peer_id)
        if peer.machine.state is not ConnectionState.DISCONNECTED or not self._running:
            return
        if self._is_blacklisted(peer_id) or not self._filter_addrs(peer.addrs):
            return
        self._feed(peer, peer.machine.dial_started(self._clock()))

    async def connect(self, peer_id: PeerId, timeout: float | None) -> None:  # noqa: ASYNC109
        """Connect and wait until the handshake is finalized (``established``).

        The dial runs in the caller's task; no helper task is created, and cancellation
        or the timeout leaves nothing behind.

        Raises:
            NodeNotRunningError: the manager is not running.
            PeerBlacklistedError: the peer is blacklisted.
            PeerInCooldownError: the peer failed a handshake recently.
            DialError, DialTimeoutError: the dial failed (no address, refused, ...).
            HandshakeError, HandshakeTimeoutError: the handshake failed.
            ConnectionClosedError: the connection went away before the handshake ended.
            DialTimeoutError: ``timeout`` expired.
        """
        if not self._running:
            raise NodeNotRunningError("node is not running")
        if self._is_blacklisted(peer_id):
            self._refused(peer_id, RefusalReason.BLACKLISTED_PEER, "outbound")
            raise PeerBlacklistedError(f"peer {peer_id} is blacklisted")
        peer = self._peer(peer_id)
        if peer.machine.state is ConnectionState.ESTABLISHED:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        peer.waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                if peer.machine.state in (
                    ConnectionState.DISCONNECTED,
                    ConnectionState.RECONNECTING,
                    ConnectionState.COOLDOWN,
                ):
                    await self._inline_dial(peer)
                await fut
        except TimeoutError:
            raise DialTimeoutError(
                f"connect to {peer_id} did not complete within {timeout} s",
                details={"timeout": timeout},
            ) from None
        finally:
            peer.waiters.discard(fut)
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # retrieved: never logged as "never retrieved"

    async def _inline_dial(self, peer: _Peer) -> None:
        addrs = self._dialable(peer)
        peer.inline_dial = True
        try:
            tr = peer.machine.dial_started(self._clock())  # PeerInCooldownError
            self._feed(peer, tr)
        except PeerInCooldownError:
            self._refused(peer.peer_id, RefusalReason.COOLDOWN, "outbound")
            raise
        finally:
            peer.inline_dial = False
        epoch = peer.dial_epoch
        if epoch is None:
            return  # a dial was already in flight: its outcome settles our waiter
        try:
            await self._host.dial(peer.peer_id, addrs, timeout=self._config.dial_timeout)
        except ConnectionGatedError as exc:
            self._dial_done(peer, epoch, exc)
            raise PeerBlacklistedError(str(exc)) from exc
        except GlueberryError as exc:
            self._dial_done(peer, epoch, exc)
            raise
        except BaseException:
            # Cancelled or timed out mid-dial: the machine must not stay CONNECTING.
            if peer.dial_epoch == epoch and peer.machine.state is ConnectionState.CONNECTING:
                peer.dial_epoch = None
                self._feed(peer, peer.machine.disconnect_requested(self._clock()))
            raise
        self._dial_done(peer, epoch, None)

    def cancel_reconnection(self, peer_id: PeerId) -> bool:
        """Stop reconnecting to the peer.

        Returns:
            Whether a reconnection was pending.
        """
        peer = self._peers.get(peer_id)
        if peer is None:
            return False
        tr = peer.machine.cancel_reconnect(self._clock())
        self._feed(peer, tr)
        return tr.changed

    async def disconnect(self, peer_id: PeerId) -> None:
        """Close the connection; no reconnection follows."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._feed(peer, peer.machine.disconnect_requested(self._clock()))
        with contextlib.suppress(GlueberryError, OSError):
            await self._host.disconnect(peer_id)

    def blacklisted(self, peer_id: PeerId) -> None:
        """The peer was banned: drop it now, cancel everything."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._feed(
                peer,
                peer.machine.blacklisted(self._clock()),
                PeerBlacklistedError(f"peer {peer_id} is blacklisted"),
            )
        if self._host.is_connected(peer_id):
            self._spawn(self._disconnect_quietly(peer_id))

    # -- handshake outcome ---------------------------------------------------------------------

    def handshake_succeeded(self, peer_id: PeerId) -> bool:
        """The handshake finalized. Returns whether the peer became established."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.machine.state is not ConnectionState.CONNECTED:
            return False
        tr = peer.machine.handshake_done(self._clock())
        self._feed(peer, tr)
        return tr.state is ConnectionState.ESTABLISHED

    def handshake_failed(self, peer_id: PeerId, error: GlueberryError) -> None:
        """The handshake failed: cooldown and close."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        self._feed(peer, peer.machine.handshake_failed(self._clock(), error=error), error)

    # -- host notifications (HostNotifee) ------------------------------------------------------

    def connected(self, info: ConnectionInfo) -> None:
        """Host notification: a connection is up (secured and muxed)."""
        if not self._running:
            return
        if self._is_blacklisted(info.peer_id):
            self._refused(info.peer_id, RefusalReason.BLACKLISTED_PEER, info.direction.value)
            self._spawn(self._disconnect_quietly(info.peer_id))
            return
        peer = self._peer(info.peer_id)
        now = self._clock()
        state = peer.machine.state
        if state in _CONNECTED:
            return
        if state is ConnectionState.CONNECTING and peer.dial_epoch is not None:
            if info.direction is Direction.INBOUND:
                # Our own dial is in flight, so both sides are dialing: the host keeps one
                # of the two connections, and both sides must agree on its direction (the
                # dialer opens the handshake stream). The dial's outcome tells which one
                # survived (see _dial_done); until then this notice is not acted on.
                return
            epoch = peer.dial_epoch
            peer.dial_epoch = None
            tr = peer.machine.dial_succeeded(now, epoch=epoch)
        else:
            tr = peer.machine.inbound_connected(now)
            if not tr.changed and any(isinstance(a, Close) for a in tr.actions):
                self._refused(info.peer_id, RefusalReason.COOLDOWN, info.direction.value)
        self._connection_up(peer, tr, info)

    def replaced(self, info: ConnectionInfo) -> None:
        """The peer's connection was replaced by a new one without a notification.

        The host swaps connections silently when the same side dials again (a peer that
        restarted before we noticed its old connection die). The old session is over:
        tear it down (keeping the new transport connection) and start again on the new
        one, as if it had just come up.
        """
        peer = self._peers.get(info.peer_id)
        if peer is None or peer.machine.state not in _CONNECTED or not self._running:
            return
        now = self._clock()
        lost = ConnectionClosedError("the peer replaced its connection (it restarted)")
        peer.keep_transport = True
        try:
            self._feed(peer, peer.machine.disconnected(now, error=lost), lost)
        finally:
            peer.keep_transport = False
        self._connection_up(peer, peer.machine.inbound_connected(now), info)

    def disconnected(self, peer_id: PeerId, reason: BaseException | None) -> None:
        """Host notification: the connection is gone."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.machine.state not in _CONNECTED:
            return
        error = None
        if reason is not None:
            error = ConnectionClosedError(f"connection lost: {type(reason).__name__}")
        tr = peer.machine.disconnected(self._clock(), error=error)
        self._feed(peer, tr, error)
