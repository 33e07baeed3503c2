"""Connection states and the per-peer connection state machine (sans-IO).

Every rule that moves a peer between :class:`ConnectionState` values lives in this module,
in one table, :data:`TRANSITIONS` (the h11 ``_state.py`` way). The machine does no I/O and
reads no clock: the node feeds it *inputs* (``dial_succeeded``, ``handshake_timeout``, ...)
with the current wall-clock time (epoch seconds) and gets back a :class:`Transition`: the
new state plus the *actions* to perform (arm a timer, dial, close, emit an event). The
node performs them, outside any lock, in the order given.

Lifecycle (the table has every detail; "retry" means RECONNECTING when
``auto_reconnect`` is set and the backoff has an attempt left, else DISCONNECTED)::

    DISCONNECTED  --dial_started-->                  CONNECTING
    CONNECTING    --dial_succeeded-->                CONNECTED   (handshake timer armed)
    DISCONNECTED, CONNECTING, RECONNECTING
                  --inbound_connected-->             CONNECTED   (handshake timer armed)
    CONNECTED     --handshake_done-->                ESTABLISHED
    CONNECTED     --handshake_failed/_timeout-->     COOLDOWN    (retry if cooldown == 0)
    CONNECTING    --dial_failed-->                   retry
    CONNECTED, ESTABLISHED --disconnected-->         retry
    RECONNECTING  --reconnect_due / dial_started-->  CONNECTING
    COOLDOWN      --cooldown_expired-->              retry
    COOLDOWN      --dial_started / inbound_connected--> refused until cooldown_until
    RECONNECTING  --cancel_reconnect-->              DISCONNECTED
    CONNECTING, CONNECTED, ESTABLISHED, RECONNECTING
                  --disconnect_requested-->          DISCONNECTED
    every state but DISCONNECTED --blacklisted-->    DISCONNECTED

Epochs (why the handshake timer race of the Go original cannot happen here):
``machine.epoch`` increases by one on *every* state change. Every action that starts
something asynchronous (:class:`Dial`, :class:`StartHandshakeTimer`,
:class:`ScheduleReconnect`, :class:`EnterCooldown`) carries the epoch it was issued in, and
the input reporting its outcome (``dial_succeeded/failed``, ``handshake_timeout``,
``reconnect_due``, ``cooldown_expired``) must pass that epoch back. An input whose epoch
is not the current one is *stale* and is ignored (``Transition.ignored`` says why). So a
handshake timer that fires after ``handshake_done``, after a disconnect, or after a
reconnect has produced a new connection is a no-op by construction, whatever the timing,
and the timer is armed as part of the very transition that enters ``CONNECTED``.
A transport disconnect notice may be tagged with ``machine.connection_epoch`` (the epoch
in which that connection came up, unchanged by ``handshake_done``) so that the notice of
an old connection cannot tear down a newer one.

Inputs that the table does not allow in the current state raise
:class:`~engine.errors.InvalidStateTransitionError` and put the machine in an error state
(``machine.failed``): every later input raises too, until :meth:`PeerConnectionMachine.reset`
returns it to ``DISCONNECTED``. Inputs that races make expected (a late disconnect
notification, a second inbound connection, ``handshake_done`` twice, ...) are documented
no-ops in the table instead.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias

from engine.backoff import Backoff
from engine.errors import GlueberryError, InvalidStateTransitionError, PeerInCooldownError

if TYPE_CHECKING:
    from engine.config import Config
    from engine.crypto.identity import PeerId

__all__ = [
    "TRANSITIONS",
    "Action",
    "CancelCooldown",
    "CancelDial",
    "CancelHandshakeTimer",
    "CancelReconnect",
    "Close",
    "ConnectionState",
    "Dial",
    "Emit",
    "EnterCooldown",
    "Input",
    "PeerConnectionMachine",
    "PeerStatus",
    "Rule",
    "ScheduleReconnect",
    "StartHandshakeTimer",
    "Transition",
]


class ConnectionState(enum.StrEnum):
    """Where a peer is in the connection lifecycle (public; string values are stable)."""

    DISCONNECTED = "disconnected"  # no connection, nothing scheduled
    CONNECTING = "connecting"  # an outbound dial is in flight
    CONNECTED = "connected"  # transport up, Glueberry handshake in progress (timer armed)
    ESTABLISHED = "established"  # handshake finalized, encrypted streams usable
    RECONNECTING = "reconnecting"  # waiting for the backoff delay before the next dial
    COOLDOWN = "cooldown"  # handshake failed; not dialed and refused until cooldown_until


class Input(enum.StrEnum):
    """What can happen to a peer connection (fed to :meth:`PeerConnectionMachine.handle`)."""

    DIAL_STARTED = "dial_started"  # connect() asked for a dial (user or auto-connect)
    DIAL_SUCCEEDED = "dial_succeeded"  # epoch of the Dial action required
    DIAL_FAILED = "dial_failed"  # epoch of the Dial action required
    INBOUND_CONNECTED = "inbound_connected"  # the peer connected to us
    HANDSHAKE_DONE = "handshake_done"  # finalize_handshake: streams active
    HANDSHAKE_FAILED = "handshake_failed"  # epoch optional (stale reports ignored)
    HANDSHAKE_TIMEOUT = "handshake_timeout"  # epoch of StartHandshakeTimer required
    DISCONNECTED = "disconnected"  # transport notice: the connection is gone; epoch optional
    DISCONNECT_REQUESTED = "disconnect_requested"  # node.disconnect()
    CANCEL_RECONNECT = "cancel_reconnect"  # node.cancel_reconnection()
    RECONNECT_DUE = "reconnect_due"  # epoch of ScheduleReconnect required
    COOLDOWN_EXPIRED = "cooldown_expired"  # epoch of EnterCooldown required
    BLACKLISTED = "blacklisted"  # the peer was banned: drop everything
    RESET = "reset"  # leave the error state (or any state): see PeerConnectionMachine.reset


# Inputs that report the outcome of an asynchronous action: the epoch is mandatory.
_EPOCH_REQUIRED: Final = frozenset(
    {
        Input.DIAL_SUCCEEDED,
        Input.DIAL_FAILED,
        Input.HANDSHAKE_TIMEOUT,
        Input.RECONNECT_DUE,
        Input.COOLDOWN_EXPIRED,
    }
)
# Inputs that may carry an epoch (when given and stale, the input is ignored).
# DISCONNECTED is compared with ``connection_epoch`` (the connection it is about), every
# other tagged input with ``epoch``.
_EPOCH_OPTIONAL: Final = frozenset({Input.HANDSHAKE_FAILED, Input.DISCONNECTED})
_EPOCH_TAGGED: Final = _EPOCH_REQUIRED | _EPOCH_OPTIONAL

# Error code put on the emitted event when the input carries no error of its own.
_DEFAULT_ERROR_CODE: Final[Mapping[Input, str]] = {
    Input.DIAL_FAILED: "dial_failed",
    Input.HANDSHAKE_FAILED: "handshake_failed",
    Input.HANDSHAKE_TIMEOUT: "handshake_timeout",
    Input.DISCONNECTED: "connection_closed",
    Input.BLACKLISTED: "peer_blacklisted",
}


# -- actions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dial:
    """Dial the peer now; report ``dial_succeeded``/``dial_failed`` with this ``epoch``.

    ``attempt`` is 0 for a first dial and the reconnect attempt number otherwise.
    """

    epoch: int
    attempt: int


@dataclass(frozen=True, slots=True)
class CancelDial:
    """Abandon the dial in flight (its outcome, if it still arrives, is stale)."""


@dataclass(frozen=True, slots=True)
class StartHandshakeTimer:
    """Arm the handshake timer: after ``delay`` s feed ``handshake_timeout(epoch=epoch)``."""

    delay: float
    epoch: int


@dataclass(frozen=True, slots=True)
class CancelHandshakeTimer:
    """Disarm the handshake timer (a late firing would be stale anyway)."""


@dataclass(frozen=True, slots=True)
class ScheduleReconnect:
    """After ``delay`` s (at epoch time ``at``) feed ``reconnect_due(epoch=epoch)``."""

    delay: float
    attempt: int
    at: float
    epoch: int


@dataclass(frozen=True, slots=True)
class CancelReconnect:
    """Disarm the reconnect timer."""


@dataclass(frozen=True, slots=True)
class EnterCooldown:
    """After ``delay`` s (at epoch time ``until``) feed ``cooldown_expired(epoch=epoch)``."""

    until: float
    delay: float
    epoch: int


@dataclass(frozen=True, slots=True)
class CancelCooldown:
    """Disarm the cooldown timer."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection to the peer and tear down its streams (idempotent for the node).

    Issued on every exit from ``CONNECTED``/``ESTABLISHED`` (also when the transport is
    already gone) and when an inbound connection is refused during cooldown.
    """

    error_code: str | None


@dataclass(frozen=True, slots=True)
class Emit:
    """Publish a connection event (the event hub assigns its id)."""

    previous_state: ConnectionState
    state: ConnectionState
    timestamp: float
    error_code: str | None = None
    error_message: str | None = None


Action: TypeAlias = (
    Dial
    | CancelDial
    | StartHandshakeTimer
    | CancelHandshakeTimer
    | ScheduleReconnect
    | CancelReconnect
    | EnterCooldown
    | CancelCooldown
    | Close
    | Emit
)


@dataclass(frozen=True, slots=True)
class Transition:
    """The result of feeding one input: the new state and what to do, in order.

    Attributes:
        input: the input that was fed.
        previous: the state before the input.
        state: the state after the input (== previous for a no-op).
        actions: actions to perform, in order (cancellations first, :class:`Emit` last).
        epoch: the machine's epoch after the input.
        ignored: ``None`` when the input was applied, else why it was a no-op
            (``"stale"`` for an outdated epoch, or the table's reason).
    """

    input: Input
    previous: ConnectionState
    state: ConnectionState
    actions: tuple[Action, ...]
    epoch: int
    ignored: str | None = None

    @property
    def changed(self) -> bool:
        """True when the state changed."""
        return self.state is not self.previous


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A snapshot of one peer's connection status (``node.peer_status``).

    Times are wall-clock epoch seconds, as fed to the machine.
    """

    state: ConnectionState
    reconnect_attempts: int
    next_retry_at: float | None
    is_outbound: bool
    connected_since: float | None
    cooldown_until: float | None
    last_error_code: str | None = None


# -- the transition table --------------------------------------------------------------


class _Do(enum.Enum):
    """Action kinds in the table; the machine fills in their parameters."""

    DIAL = enum.auto()
    CANCEL_DIAL = enum.auto()
    START_HANDSHAKE_TIMER = enum.auto()
    CANCEL_HANDSHAKE_TIMER = enum.auto()
    CANCEL_RECONNECT = enum.auto()
    CANCEL_COOLDOWN = enum.auto()
    CLOSE = enum.auto()


class _Guard(enum.Enum):
    """Targets decided at run time by one rule each (see ``_resolve``)."""

    # RECONNECTING (+ ScheduleReconnect) when auto_reconnect and the backoff has a retry
    # left, else DISCONNECTED.
    RETRY = enum.auto()
    # COOLDOWN (+ EnterCooldown) when the cooldown is > 0, else RETRY.
    COOLDOWN = enum.auto()
    # In COOLDOWN: when the cooldown is over, the rule's `then` state (+ CancelCooldown);
    # else a dial is refused with PeerInCooldownError and an inbound connection is closed.
    IF_COOLED = enum.auto()


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of :data:`TRANSITIONS`.

    Attributes:
        target: the next state, a run-time guard, or ``None`` for a documented no-op.
        actions: action kinds performed before the guard's own actions and the event.
        note: why a no-op is expected (races), or what a guard does.
        then: for ``IF_COOLED``, the state entered once the cooldown is over.
    """

    target: ConnectionState | _Guard | None
    actions: tuple[_Do, ...] = ()
    note: str = ""
    then: ConnectionState | None = None


def _go(target: ConnectionState | _Guard, *actions: _Do) -> Rule:
    return Rule(target, actions)


def _noop(note: str) -> Rule:
    return Rule(None, (), note)


S = ConnectionState
I = Input  # noqa: E741 - short alias keeps the table readable
D = _Do

#: THE table: (state, input) -> rule. A pair that is missing is an illegal transition.
#: Epoch-tagged inputs never reach a state other than the one they were issued in (any
#: state change bumps the epoch), so their cells exist only where they were issued.
TRANSITIONS: Final[Mapping[tuple[ConnectionState, Input], Rule]] = {
    # DISCONNECTED ---------------------------------------------------------------------
    (S.DISCONNECTED, I.DIAL_STARTED): _go(S.CONNECTING, D.DIAL),
    (S.DISCONNECTED, I.INBOUND_CONNECTED): _go(S.CONNECTED, D.START_HANDSHAKE_TIMER),
    (S.DISCONNECTED, I.HANDSHAKE_FAILED): _noop("late report of a finished handshake"),
    (S.DISCONNECTED, I.DISCONNECTED): _noop("late transport notice"),
    (S.DISCONNECTED, I.DISCONNECT_REQUESTED): _noop("already disconnected"),
    (S.DISCONNECTED, I.CANCEL_RECONNECT): _noop("no reconnection scheduled"),
    (S.DISCONNECTED, I.BLACKLISTED): _noop("nothing to drop"),
    # CONNECTING -----------------------------------------------------------------------
    (S.CONNECTING, I.DIAL_STARTED): _noop("a dial is already in flight"),
    (S.CONNECTING, I.DIAL_SUCCEEDED): _go(S.CONNECTED, D.START_HANDSHAKE_TIMER),
    (S.CONNECTING, I.DIAL_FAILED): _go(_Guard.RETRY),
    (S.CONNECTING, I.INBOUND_CONNECTED): _go(S.CONNECTED, D.CANCEL_DIAL, D.START_HANDSHAKE_TIMER),
    (S.CONNECTING, I.HANDSHAKE_FAILED): _noop("late report of a finished handshake"),
    (S.CONNECTING, I.DISCONNECTED): _noop("notice about an older connection; the dial decides"),
    (S.CONNECTING, I.DISCONNECT_REQUESTED): _go(S.DISCONNECTED, D.CANCEL_DIAL),
    (S.CONNECTING, I.CANCEL_RECONNECT): _noop("the dial in flight decides"),
    (S.CONNECTING, I.BLACKLISTED): _go(S.DISCONNECTED, D.CANCEL_DIAL),
    # CONNECTED (handshake in progress) ---------------------------------------------------
    (S.CONNECTED, I.DIAL_STARTED): _noop("already connected"),
    (S.CONNECTED, I.INBOUND_CONNECTED): _noop("second connection of a connected peer"),
    (S.CONNECTED, I.HANDSHAKE_DONE): _go(S.ESTABLISHED, D.CANCEL_HANDSHAKE_TIMER),
    (S.CONNECTED, I.HANDSHAKE_FAILED): _go(_Guard.COOLDOWN, D.CANCEL_HANDSHAKE_TIMER, D.CLOSE),
    (S.CONNECTED, I.HANDSHAKE_TIMEOUT): _go(_Guard.COOLDOWN, D.CLOSE),
    (S.CONNECTED, I.DISCONNECTED): _go(_Guard.RETRY, D.CANCEL_HANDSHAKE_TIMER, D.CLOSE),
    (S.CONNECTED, I.DISCONNECT_REQUESTED): _go(S.DISCONNECTED, D.CANCEL_HANDSHAKE_TIMER, D.CLOSE),
    (S.CONNECTED, I.CANCEL_RECONNECT): _noop("no reconnection scheduled"),
    (S.CONNECTED, I.BLACKLISTED): _go(S.DISCONNECTED, D.CANCEL_HANDSHAKE_TIMER, D.CLOSE),
    # ESTABLISHED -------------------------------------------------------------------------
    (S.ESTABLISHED, I.DIAL_STARTED): _noop("already established"),
    (S.ESTABLISHED, I.INBOUND_CONNECTED): _noop("second connection of a connected peer"),
    (S.ESTABLISHED, I.HANDSHAKE_DONE): _noop("already finalized"),
    (S.ESTABLISHED, I.HANDSHAKE_FAILED): _noop("late report of a finished handshake"),
    (S.ESTABLISHED, I.DISCONNECTED): _go(_Guard.RETRY, D.CLOSE),
    (S.ESTABLISHED, I.DISCONNECT_REQUESTED): _go(S.DISCONNECTED, D.CLOSE),
    (S.ESTABLISHED, I.CANCEL_RECONNECT): _noop("no reconnection scheduled"),
    (S.ESTABLISHED, I.BLACKLISTED): _go(S.DISCONNECTED, D.CLOSE),
    # RECONNECTING (backoff timer armed) ----------------------------------------------------
    (S.RECONNECTING, I.DIAL_STARTED): _go(S.CONNECTING, D.CANCEL_RECONNECT, D.DIAL),
    (S.RECONNECTING, I.RECONNECT_DUE): _go(S.CONNECTING, D.DIAL),
    (S.RECONNECTING, I.INBOUND_CONNECTED): _go(
        S.CONNECTED, D.CANCEL_RECONNECT, D.START_HANDSHAKE_TIMER
    ),
    (S.RECONNECTING, I.HANDSHAKE_FAILED): _noop("late report of a finished handshake"),
    (S.RECONNECTING, I.DISCONNECTED): _noop("late transport notice"),
    (S.RECONNECTING, I.DISCONNECT_REQUESTED): _go(S.DISCONNECTED, D.CANCEL_RECONNECT),
    (S.RECONNECTING, I.CANCEL_RECONNECT): _go(S.DISCONNECTED, D.CANCEL_RECONNECT),
    (S.RECONNECTING, I.BLACKLISTED): _go(S.DISCONNECTED, D.CANCEL_RECONNECT),
    # COOLDOWN (cooldown timer armed) ---------------------------------------------------------
    (S.COOLDOWN, I.DIAL_STARTED): Rule(
        _Guard.IF_COOLED,
        (D.DIAL,),
        "refused (PeerInCooldownError) until cooldown_until",
        then=S.CONNECTING,
    ),
    (S.COOLDOWN, I.INBOUND_CONNECTED): Rule(
        _Guard.IF_COOLED,
        (D.START_HANDSHAKE_TIMER,),
        "closed until cooldown_until",
        then=S.CONNECTED,
    ),
    (S.COOLDOWN, I.COOLDOWN_EXPIRED): _go(_Guard.RETRY),
    (S.COOLDOWN, I.HANDSHAKE_FAILED): _noop("late report of a finished handshake"),
    (S.COOLDOWN, I.DISCONNECTED): _noop("late transport notice"),
    (S.COOLDOWN, I.DISCONNECT_REQUESTED): _noop("already closed; the cooldown runs on"),
    (S.COOLDOWN, I.CANCEL_RECONNECT): _noop("no reconnection scheduled"),
    (S.COOLDOWN, I.BLACKLISTED): _go(S.DISCONNECTED, D.CANCEL_COOLDOWN),
}

del S, I, D

_CONNECTED_STATES: Final = frozenset({ConnectionState.CONNECTED, ConnectionState.ESTABLISHED})


# -- the machine -----------------------------------------------------------------------


class PeerConnectionMachine:
    """The connection state of one peer, driven by inputs; no I/O, no clock.

    Args:
        peer_id: the peer (used in error messages only).
        backoff: the reconnect backoff (owned by the machine from now on).
        handshake_timeout: seconds a connected peer has to finish the handshake (> 0);
            kept as the attribute ``handshake_seconds``.
        cooldown: seconds a peer is refused after a failed handshake (>= 0; 0 = none).
        auto_reconnect: whether a lost connection or failed dial schedules a reconnect.
            A plain attribute; the node may change it at any time (it is read when a
            retry is decided).

    Raises:
        ValueError: a duration is out of range.
    """

    __slots__ = (
        "_backoff",
        "_connected_since",
        "_connection_epoch",
        "_cooldown_until",
        "_epoch",
        "_failed",
        "_is_outbound",
        "_last_error_code",
        "_next_retry_at",
        "_state",
        "auto_reconnect",
        "cooldown",
        "handshake_seconds",
        "peer_id",
    )

    def __init__(
        self,
        peer_id: PeerId | None,
        *,
        backoff: Backoff,
        handshake_timeout: float,
        cooldown: float,
        auto_reconnect: bool = True,
    ) -> None:
        if not handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0, got {handshake_timeout!r}")
        if not cooldown >= 0:
            raise ValueError(f"cooldown must be >= 0, got {cooldown!r}")
        self.peer_id = peer_id
        self.handshake_seconds = float(handshake_timeout)
        self.cooldown = float(cooldown)
        self.auto_reconnect = auto_reconnect
        self._backoff = backoff
        self._state = ConnectionState.DISCONNECTED
        self._epoch = 0
        self._failed: InvalidStateTransitionError | None = None
        self._is_outbound = False
        self._connected_since: float | None = None
        self._connection_epoch: int | None = None
        self._next_retry_at: float | None = None
        self._cooldown_until: float | None = None
        self._last_error_code: str | None = None

    @classmethod
    def from_config(
        cls,
        peer_id: PeerId | None,
        config: Config,
        *,
        auto_reconnect: bool = True,
        random: Callable[[], float] | None = None,
    ) -> PeerConnectionMachine:
        """A machine using ``config``'s handshake timeout, cooldown and reconnect backoff.

        Args:
            peer_id: the peer.
            config: the engine configuration.
            auto_reconnect: see the class docstring.
            random: random source for the backoff jitter (tests).

        Returns:
            A machine in ``DISCONNECTED``.
        """
        return cls(
            peer_id,
            backoff=Backoff.from_config(config, random=random),
            handshake_timeout=config.handshake_timeout,
            cooldown=config.failed_handshake_cooldown,
            auto_reconnect=auto_reconnect,
        )

    # -- read-only view ------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current state."""
        return self._state

    @property
    def epoch(self) -> int:
        """Incremented on every state change; tags asynchronous actions (module docstring)."""
        return self._epoch

    @property
    def connection_epoch(self) -> int | None:
        """The epoch in which the current connection came up (``CONNECTED`` entry).

        Tag a connection's disconnect notice with it: ``disconnected(now, epoch=...)`` is
        ignored as stale unless it is about the current connection. ``None`` when not
        ``CONNECTED``/``ESTABLISHED``.
        """
        return self._connection_epoch

    @property
    def failed(self) -> bool:
        """True after an illegal transition, until :meth:`reset`."""
        return self._failed is not None

    @property
    def is_outbound(self) -> bool:
        """True when the current connection was dialed by us (False when not connected)."""
        return self._is_outbound

    @property
    def connected_since(self) -> float | None:
        """When the current connection came up (``CONNECTED``/``ESTABLISHED`` only)."""
        return self._connected_since

    @property
    def next_retry_at(self) -> float | None:
        """When the next reconnect dial is due (``RECONNECTING`` only)."""
        return self._next_retry_at

    @property
    def cooldown_until(self) -> float | None:
        """When the cooldown ends (``COOLDOWN`` only)."""
        return self._cooldown_until

    @property
    def reconnect_attempts(self) -> int:
        """Reconnect delays handed out since the last success (or fresh dial)."""
        return self._backoff.attempts

    @property
    def backoff(self) -> Backoff:
        """The reconnect backoff."""
        return self._backoff

    def status(self) -> PeerStatus:
        """A snapshot for ``node.peer_status``."""
        return PeerStatus(
            state=self._state,
            reconnect_attempts=self._backoff.attempts,
            next_retry_at=self._next_retry_at,
            is_outbound=self._is_outbound,
            connected_since=self._connected_since,
            cooldown_until=self._cooldown_until,
            last_error_code=self._last_error_code,
        )

    def can(self, inp: Input) -> bool:
        """Whether ``inp`` is applied or a documented no-op in the current state.

        Use it to refuse a user request before feeding it (e.g. ``handshake_done`` when
        not ``CONNECTED``). Cooldown refusals and staleness are not considered.
        """
        return self._failed is None and (self._state, inp) in TRANSITIONS

    # -- inputs ----------------------------------------------------------------------------

    def dial_started(self, now: float) -> Transition:
        """A dial is wanted (``connect()`` or auto-connect); returns a :class:`Dial`.

        Raises:
            PeerInCooldownError: in ``COOLDOWN`` before ``cooldown_until`` (the machine
                stays usable).
            InvalidStateTransitionError: the machine is failed.
        """
        return self.handle(Input.DIAL_STARTED, now)

    def dial_succeeded(self, now: float, *, epoch: int) -> Transition:
        """The dial of :class:`Dial` ``epoch`` produced a connection."""
        return self.handle(Input.DIAL_SUCCEEDED, now, epoch=epoch)

    def dial_failed(
        self, now: float, *, epoch: int, error: BaseException | None = None
    ) -> Transition:
        """The dial of :class:`Dial` ``epoch`` failed with ``error``."""
        return self.handle(Input.DIAL_FAILED, now, epoch=epoch, error=error)

    def inbound_connected(self, now: float) -> Transition:
        """The peer connected to us (refused with a :class:`Close` during cooldown)."""
        return self.handle(Input.INBOUND_CONNECTED, now)

    def handshake_done(self, now: float) -> Transition:
        """The handshake was finalized: ``CONNECTED`` -> ``ESTABLISHED``."""
        return self.handle(Input.HANDSHAKE_DONE, now)

    finalized = handshake_done

    def handshake_failed(
        self, now: float, *, error: BaseException | None = None, epoch: int | None = None
    ) -> Transition:
        """The handshake failed (bad message, key mismatch, ...): cooldown."""
        return self.handle(Input.HANDSHAKE_FAILED, now, epoch=epoch, error=error)

    def handshake_timeout(self, now: float, *, epoch: int) -> Transition:
        """The timer of :class:`StartHandshakeTimer` ``epoch`` fired."""
        return self.handle(Input.HANDSHAKE_TIMEOUT, now, epoch=epoch)

    def disconnected(
        self, now: float, *, error: BaseException | None = None, epoch: int | None = None
    ) -> Transition:
        """The transport reports the connection gone (reconnect if allowed)."""
        return self.handle(Input.DISCONNECTED, now, epoch=epoch, error=error)

    def disconnect_requested(self, now: float) -> Transition:
        """The application asked to disconnect: no reconnection is scheduled."""
        return self.handle(Input.DISCONNECT_REQUESTED, now)

    def cancel_reconnect(self, now: float) -> Transition:
        """Stop a scheduled reconnection (``Transition.changed`` says whether one was)."""
        return self.handle(Input.CANCEL_RECONNECT, now)

    def reconnect_due(self, now: float, *, epoch: int) -> Transition:
        """The timer of :class:`ScheduleReconnect` ``epoch`` fired: dial again."""
        return self.handle(Input.RECONNECT_DUE, now, epoch=epoch)

    def cooldown_expired(self, now: float, *, epoch: int) -> Transition:
        """The timer of :class:`EnterCooldown` ``epoch`` fired."""
        return self.handle(Input.COOLDOWN_EXPIRED, now, epoch=epoch)

    def blacklisted(self, now: float) -> Transition:
        """The peer was blacklisted: close, cancel everything, ``DISCONNECTED``."""
        return self.handle(Input.BLACKLISTED, now)

    def reset(self, now: float) -> Transition:
        """Leave the error state (or any state): cancel everything and close.

        Returns:
            A transition to ``DISCONNECTED`` whose actions cancel every timer and dial,
            close the connection and (when the state changed) emit an event with
            ``error_code`` ``invalid_state_transition`` if the machine had failed.
        """
        previous = self._state
        code = InvalidStateTransitionError.code if self._failed is not None else None
        message = str(self._failed) if self._failed is not None else None
        self._failed = None
        actions: list[Action] = [
            CancelDial(),
            CancelHandshakeTimer(),
            CancelReconnect(),
            CancelCooldown(),
            Close(code),
        ]
        self._enter(ConnectionState.DISCONNECTED, now)
        if self._state is not previous:
            actions.append(Emit(previous, self._state, now, code, message))
        return Transition(Input.RESET, previous, self._state, tuple(actions), self._epoch)

    def handle(
        self,
        inp: Input,
        now: float,
        *,
        epoch: int | None = None,
        error: BaseException | None = None,
    ) -> Transition:
        """Feed one input (the named methods above are shortcuts for this).

        Args:
            inp: what happened.
            now: wall-clock time in epoch seconds.
            epoch: the epoch of the action this input reports on (required for
                epoch-tagged inputs, optional for ``handshake_failed`` and
                ``disconnected``, ignored otherwise).
            error: the cause, for inputs that report a failure.

        Returns:
            The transition (``ignored`` set for stale inputs and documented no-ops).

        Raises:
            InvalidStateTransitionError: the table does not allow ``inp`` now, or the
                machine is failed; the machine is failed afterwards.
            PeerInCooldownError: a dial during an active cooldown (machine unchanged).
            ValueError: an epoch-tagged input without an epoch (a caller bug; the
                machine is unchanged).
        """
        if inp is Input.RESET:
            return self.reset(now)
        if self._failed is not None:
            raise InvalidStateTransitionError(
                f"connection state machine failed earlier ({self._failed}); reset it",
                details={"state": self._state.value, "input": inp.value},
            )
        previous = self._state
        if inp in _EPOCH_REQUIRED and epoch is None:
            raise ValueError(f"input {inp.value} requires the epoch of its action")
        if epoch is not None and inp in _EPOCH_TAGGED and epoch != self._current_epoch(inp):
            return Transition(inp, previous, previous, (), self._epoch, "stale")
        rule = TRANSITIONS.get((previous, inp))
        if rule is None:
            self._failed = InvalidStateTransitionError(
                f"input {inp.value} is not allowed in state {previous.value}",
                details={"state": previous.value, "input": inp.value},
            )
            raise self._failed
        if rule.target is None:
            return Transition(inp, previous, previous, (), self._epoch, rule.note)

        error_code, error_message = _describe(inp, error)
        actions: list[Action] = []
        target: ConnectionState
        retry_delay: float | None = None
        if isinstance(rule.target, ConnectionState):
            target = rule.target
        elif rule.target is _Guard.IF_COOLED:
            assert rule.then is not None  # table invariant
            if self._cooldown_until is not None and now < self._cooldown_until:
                if inp is Input.DIAL_STARTED:
                    raise PeerInCooldownError(
                        "peer is in cooldown after a failed handshake",
                        details={"cooldown_until": self._cooldown_until},
                    )
                # An inbound connection during cooldown: refuse it, stay.
                return Transition(
                    inp,
                    previous,
                    previous,
                    (Close(PeerInCooldownError.code),),
                    self._epoch,
                    rule.note,
                )
            target = rule.then
            actions.append(CancelCooldown())
        else:
            target, retry_delay = self._decide(rule.target)

        # Leaving a state: forget its facts; entering one: record them. The epoch bump in
        # _enter happens before any epoch-tagged action below is built.
        self._enter(target, now)
        if inp is Input.DIAL_STARTED and previous is ConnectionState.DISCONNECTED:
            self._backoff.reset()  # a fresh dial: the backoff starts over
        if target is ConnectionState.ESTABLISHED:
            self._backoff.reset()
        if target is ConnectionState.CONNECTED:
            self._is_outbound = inp is Input.DIAL_SUCCEEDED
            self._connected_since = now
            self._connection_epoch = self._epoch

        for kind in rule.actions:
            actions.append(self._build(kind, error_code))
        if retry_delay is not None:  # target is RECONNECTING
            self._next_retry_at = now + retry_delay
            actions.append(
                ScheduleReconnect(
                    retry_delay, self._backoff.attempts, now + retry_delay, self._epoch
                )
            )
        elif target is ConnectionState.COOLDOWN:
            self._cooldown_until = now + self.cooldown
            actions.append(EnterCooldown(now + self.cooldown, self.cooldown, self._epoch))
        if error_code is not None:
            self._last_error_code = error_code
        if target is not previous:
            actions.append(Emit(previous, target, now, error_code, error_message))
        return Transition(inp, previous, target, tuple(actions), self._epoch)

    # -- internals ----------------------------------------------------------------------

    def _decide(self, guard: _Guard) -> tuple[ConnectionState, float | None]:
        """Resolve COOLDOWN / RETRY; returns the state and, for RECONNECTING, the delay."""
        if guard is _Guard.COOLDOWN and self.cooldown > 0:
            return ConnectionState.COOLDOWN, None
        # RETRY (or COOLDOWN with a zero cooldown, which retries at once).
        if self.auto_reconnect:
            delay = self._backoff.next_delay()
            if delay is not None:
                return ConnectionState.RECONNECTING, delay
        return ConnectionState.DISCONNECTED, None

    def _current_epoch(self, inp: Input) -> int | None:
        return self._connection_epoch if inp is Input.DISCONNECTED else self._epoch

    def _build(self, kind: _Do, error_code: str | None) -> Action:
        if kind is _Do.DIAL:
            return Dial(self._epoch, self._backoff.attempts)
        if kind is _Do.CANCEL_DIAL:
            return CancelDial()
        if kind is _Do.START_HANDSHAKE_TIMER:
            return StartHandshakeTimer(self.handshake_seconds, self._epoch)
        if kind is _Do.CANCEL_HANDSHAKE_TIMER:
            return CancelHandshakeTimer()
        if kind is _Do.CANCEL_RECONNECT:
            return CancelReconnect()
        if kind is _Do.CANCEL_COOLDOWN:
            return CancelCooldown()
        return Close(error_code)

    def _enter(self, target: ConnectionState, now: float) -> None:
        if target is self._state:
            return
        self._epoch += 1
        self._state = target
        if target not in _CONNECTED_STATES:
            self._is_outbound = False
            self._connected_since = None
            self._connection_epoch = None
        if target is not ConnectionState.RECONNECTING:
            self._next_retry_at = None
        if target is not ConnectionState.COOLDOWN:
            self._cooldown_until = None

    def __repr__(self) -> str:
        failed = " failed" if self._failed is not None else ""
        return f"<PeerConnectionMachine {self._state.value} epoch={self._epoch}{failed}>"


def _describe(inp: Input, error: BaseException | None) -> tuple[str | None, str | None]:
    """Error code and message of the event an input produces."""
    default = _DEFAULT_ERROR_CODE.get(inp)
    if error is None:
        return default, None
    if isinstance(error, GlueberryError):
        return error.code, str(error) or None
    return default or "transport_error", str(error) or type(error).__name__
