"""Table-driven tests of every (state, input) cell of engine.connection_state."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.backoff import Backoff
from engine.config import Config
from engine.connection_state import (
    TRANSITIONS,
    CancelCooldown,
    CancelDial,
    CancelHandshakeTimer,
    CancelReconnect,
    Close,
    ConnectionState,
    Dial,
    Emit,
    EnterCooldown,
    Input,
    PeerConnectionMachine,
    ScheduleReconnect,
    StartHandshakeTimer,
    Transition,
)
from engine.errors import (
    DialTimeoutError,
    InvalidStateTransitionError,
    PeerInCooldownError,
)

S = ConnectionState
T0 = 1_000_000.0
HS = 30.0
COOL = 60.0


def make(
    *, max_attempts: int | None = 10, cooldown: float = COOL, auto_reconnect: bool = True
) -> PeerConnectionMachine:
    return PeerConnectionMachine(
        None,
        backoff=Backoff(1.0, 8.0, max_attempts, 0.0),
        handshake_timeout=HS,
        cooldown=cooldown,
        auto_reconnect=auto_reconnect,
    )


def reach(state: ConnectionState) -> PeerConnectionMachine:
    """A machine driven to ``state`` through legal inputs only."""
    m = make()
    if state is S.DISCONNECTED:
        return m
    if state is S.COOLDOWN:
        m.inbound_connected(T0)
        m.handshake_failed(T0)
        assert m.state is S.COOLDOWN
        return m
    m.dial_started(T0)
    if state is S.CONNECTING:
        return m
    if state is S.RECONNECTING:
        m.dial_failed(T0, epoch=m.epoch)
        assert m.state is S.RECONNECTING
        return m
    m.dial_succeeded(T0, epoch=m.epoch)
    if state is S.CONNECTED:
        return m
    m.handshake_done(T0)
    assert m.state is S.ESTABLISHED
    return m


def feed(m: PeerConnectionMachine, inp: Input, now: float) -> Transition:
    """Feed ``inp`` with the current epoch where one is needed."""
    epoch = m.connection_epoch if inp is Input.DISCONNECTED else m.epoch
    needs = {
        Input.DIAL_SUCCEEDED,
        Input.DIAL_FAILED,
        Input.HANDSHAKE_TIMEOUT,
        Input.RECONNECT_DUE,
        Input.COOLDOWN_EXPIRED,
    }
    if inp in needs:
        return m.handle(inp, now, epoch=epoch)
    return m.handle(inp, now)


ILLEGAL = "illegal"
NOOP = "noop"
A = list[type]

# Expected outcome of every cell: target state + action types (Emit last), NOOP or ILLEGAL.
# Written out independently of the implementation's table on purpose.
EXPECTED: dict[tuple[ConnectionState, Input], tuple[ConnectionState, A] | str] = {
    (S.DISCONNECTED, Input.DIAL_STARTED): (S.CONNECTING, [Dial, Emit]),
    (S.DISCONNECTED, Input.DIAL_SUCCEEDED): ILLEGAL,
    (S.DISCONNECTED, Input.DIAL_FAILED): ILLEGAL,
    (S.DISCONNECTED, Input.INBOUND_CONNECTED): (S.CONNECTED, [StartHandshakeTimer, Emit]),
    (S.DISCONNECTED, Input.HANDSHAKE_DONE): ILLEGAL,
    (S.DISCONNECTED, Input.HANDSHAKE_FAILED): NOOP,
    (S.DISCONNECTED, Input.HANDSHAKE_TIMEOUT): ILLEGAL,
    (S.DISCONNECTED, Input.DISCONNECTED): NOOP,
    (S.DISCONNECTED, Input.DISCONNECT_REQUESTED): NOOP,
    (S.DISCONNECTED, Input.CANCEL_RECONNECT): NOOP,
    (S.DISCONNECTED, Input.RECONNECT_DUE): ILLEGAL,
    (S.DISCONNECTED, Input.COOLDOWN_EXPIRED): ILLEGAL,
    (S.DISCONNECTED, Input.BLACKLISTED): NOOP,
    (S.CONNECTING, Input.DIAL_STARTED): NOOP,
    (S.CONNECTING, Input.DIAL_SUCCEEDED): (S.CONNECTED, [StartHandshakeTimer, Emit]),
    (S.CONNECTING, Input.DIAL_FAILED): (S.RECONNECTING, [ScheduleReconnect, Emit]),
    (S.CONNECTING, Input.INBOUND_CONNECTED): (
        S.CONNECTED,
        [CancelDial, StartHandshakeTimer, Emit],
    ),
    (S.CONNECTING, Input.HANDSHAKE_DONE): ILLEGAL,
    (S.CONNECTING, Input.HANDSHAKE_FAILED): NOOP,
    (S.CONNECTING, Input.HANDSHAKE_TIMEOUT): ILLEGAL,
    (S.CONNECTING, Input.DISCONNECTED): NOOP,
    (S.CONNECTING, Input.DISCONNECT_REQUESTED): (S.DISCONNECTED, [CancelDial, Emit]),
    (S.CONNECTING, Input.CANCEL_RECONNECT): NOOP,
    (S.CONNECTING, Input.RECONNECT_DUE): ILLEGAL,
    (S.CONNECTING, Input.COOLDOWN_EXPIRED): ILLEGAL,
    (S.CONNECTING, Input.BLACKLISTED): (S.DISCONNECTED, [CancelDial, Emit]),
    (S.CONNECTED, Input.DIAL_STARTED): NOOP,
    (S.CONNECTED, Input.DIAL_SUCCEEDED): ILLEGAL,
    (S.CONNECTED, Input.DIAL_FAILED): ILLEGAL,
    (S.CONNECTED, Input.INBOUND_CONNECTED): NOOP,
    (S.CONNECTED, Input.HANDSHAKE_DONE): (S.ESTABLISHED, [CancelHandshakeTimer, Emit]),
    (S.CONNECTED, Input.HANDSHAKE_FAILED): (
        S.COOLDOWN,
        [CancelHandshakeTimer, Close, EnterCooldown, Emit],
    ),
    (S.CONNECTED, Input.HANDSHAKE_TIMEOUT): (S.COOLDOWN, [Close, EnterCooldown, Emit]),
    (S.CONNECTED, Input.DISCONNECTED): (
        S.RECONNECTING,
        [CancelHandshakeTimer, Close, ScheduleReconnect, Emit],
    ),
    (S.CONNECTED, Input.DISCONNECT_REQUESTED): (
        S.DISCONNECTED,
        [CancelHandshakeTimer, Close, Emit],
    ),
    (S.CONNECTED, Input.CANCEL_RECONNECT): NOOP,
    (S.CONNECTED, Input.RECONNECT_DUE): ILLEGAL,
    (S.CONNECTED, Input.COOLDOWN_EXPIRED): ILLEGAL,
    (S.CONNECTED, Input.BLACKLISTED): (S.DISCONNECTED, [CancelHandshakeTimer, Close, Emit]),
    (S.ESTABLISHED, Input.DIAL_STARTED): NOOP,
    (S.ESTABLISHED, Input.DIAL_SUCCEEDED): ILLEGAL,
    (S.ESTABLISHED, Input.DIAL_FAILED): ILLEGAL,
    (S.ESTABLISHED, Input.INBOUND_CONNECTED): NOOP,
    (S.ESTABLISHED, Input.HANDSHAKE_DONE): NOOP,
    (S.ESTABLISHED, Input.HANDSHAKE_FAILED): NOOP,
    (S.ESTABLISHED, Input.HANDSHAKE_TIMEOUT): ILLEGAL,
    (S.ESTABLISHED, Input.DISCONNECTED): (S.RECONNECTING, [Close, ScheduleReconnect, Emit]),
    (S.ESTABLISHED, Input.DISCONNECT_REQUESTED): (S.DISCONNECTED, [Close, Emit]),
    (S.ESTABLISHED, Input.CANCEL_RECONNECT): NOOP,
    (S.ESTABLISHED, Input.RECONNECT_DUE): ILLEGAL,
    (S.ESTABLISHED, Input.COOLDOWN_EXPIRED): ILLEGAL,
    (S.ESTABLISHED, Input.BLACKLISTED): (S.DISCONNECTED, [Close, Emit]),
    (S.RECONNECTING, Input.DIAL_STARTED): (S.CONNECTING, [CancelReconnect, Dial, Emit]),
    (S.RECONNECTING, Input.DIAL_SUCCEEDED): ILLEGAL,
    (S.RECONNECTING, Input.DIAL_FAILED): ILLEGAL,
    (S.RECONNECTING, Input.INBOUND_CONNECTED): (
        S.CONNECTED,
        [CancelReconnect, StartHandshakeTimer, Emit],
    ),
    (S.RECONNECTING, Input.HANDSHAKE_DONE): ILLEGAL,
    (S.RECONNECTING, Input.HANDSHAKE_FAILED): NOOP,
    (S.RECONNECTING, Input.HANDSHAKE_TIMEOUT): ILLEGAL,
    (S.RECONNECTING, Input.DISCONNECTED): NOOP,
    (S.RECONNECTING, Input.DISCONNECT_REQUESTED): (S.DISCONNECTED, [CancelReconnect, Emit]),
    (S.RECONNECTING, Input.CANCEL_RECONNECT): (S.DISCONNECTED, [CancelReconnect, Emit]),
    (S.RECONNECTING, Input.RECONNECT_DUE): (S.CONNECTING, [Dial, Emit]),
    (S.RECONNECTING, Input.COOLDOWN_EXPIRED): ILLEGAL,
    (S.RECONNECTING, Input.BLACKLISTED): (S.DISCONNECTED, [CancelReconnect, Emit]),
    # COOLDOWN, during the cooldown (the expired variants are tested separately).
    (S.COOLDOWN, Input.DIAL_STARTED): "cooldown-refused",
    (S.COOLDOWN, Input.DIAL_SUCCEEDED): ILLEGAL,
    (S.COOLDOWN, Input.DIAL_FAILED): ILLEGAL,
    (S.COOLDOWN, Input.INBOUND_CONNECTED): "cooldown-closed",
    (S.COOLDOWN, Input.HANDSHAKE_DONE): ILLEGAL,
    (S.COOLDOWN, Input.HANDSHAKE_FAILED): NOOP,
    (S.COOLDOWN, Input.HANDSHAKE_TIMEOUT): ILLEGAL,
    (S.COOLDOWN, Input.DISCONNECTED): NOOP,
    (S.COOLDOWN, Input.DISCONNECT_REQUESTED): NOOP,
    (S.COOLDOWN, Input.CANCEL_RECONNECT): NOOP,
    (S.COOLDOWN, Input.RECONNECT_DUE): ILLEGAL,
    (S.COOLDOWN, Input.COOLDOWN_EXPIRED): (S.RECONNECTING, [ScheduleReconnect, Emit]),
    (S.COOLDOWN, Input.BLACKLISTED): (S.DISCONNECTED, [CancelCooldown, Emit]),
}

ALL_INPUTS = [i for i in Input if i is not Input.RESET]


def test_expected_covers_every_cell() -> None:
    assert set(EXPECTED) == {(s, i) for s in ConnectionState for i in ALL_INPUTS}
    # The implementation's table has exactly the non-illegal cells.
    assert {k for k, v in EXPECTED.items() if v != ILLEGAL} == set(TRANSITIONS)


@pytest.mark.parametrize(("state", "inp"), sorted(EXPECTED, key=str))
def test_cell(state: ConnectionState, inp: Input) -> None:
    m = reach(state)
    epoch_before = m.epoch
    now = T0 + 1.0
    expected = EXPECTED[(state, inp)]
    if expected == ILLEGAL:
        with pytest.raises(InvalidStateTransitionError) as info:
            feed(m, inp, now)
        assert info.value.code == "invalid_state_transition"
        assert info.value.details == {"state": state.value, "input": inp.value}
        assert m.failed
        assert m.state is state
        return
    if expected == "cooldown-refused":
        with pytest.raises(PeerInCooldownError):
            feed(m, inp, now)
        assert not m.failed
        assert m.state is S.COOLDOWN
        assert m.epoch == epoch_before
        return
    t = feed(m, inp, now)
    assert t.input is inp
    assert t.previous is state
    if expected == "cooldown-closed":
        assert t.state is S.COOLDOWN
        assert t.ignored
        assert t.actions == (Close("peer_in_cooldown"),)
        assert m.epoch == epoch_before
        return
    if expected == NOOP:
        assert t.state is state
        assert not t.changed
        assert t.actions == ()
        assert t.ignored
        assert m.epoch == epoch_before
        return
    assert isinstance(expected, tuple)
    target, kinds = expected
    assert t.state is target is m.state
    assert t.changed
    assert t.ignored is None
    assert [type(a) for a in t.actions] == kinds
    assert m.epoch == epoch_before + 1 == t.epoch
    emit = t.actions[-1]
    assert isinstance(emit, Emit)
    assert (emit.previous_state, emit.state, emit.timestamp) == (state, target, now)
    for action in t.actions:
        if isinstance(action, (Dial, StartHandshakeTimer, ScheduleReconnect, EnterCooldown)):
            assert action.epoch == m.epoch


@pytest.mark.parametrize("inp", [Input.DIAL_STARTED, Input.INBOUND_CONNECTED])
def test_cooldown_over_allows_connections(inp: Input) -> None:
    m = reach(S.COOLDOWN)
    until = m.cooldown_until
    assert until == T0 + COOL
    t = feed(m, inp, until)
    expected = S.CONNECTING if inp is Input.DIAL_STARTED else S.CONNECTED
    assert t.state is expected
    first = Dial if inp is Input.DIAL_STARTED else StartHandshakeTimer
    assert [type(a) for a in t.actions] == [CancelCooldown, first, Emit]
    assert m.cooldown_until is None


# -- stale inputs / the handshake timer race (plan 1.3) ---------------------------------


def test_handshake_timer_after_finalize_is_ignored() -> None:
    m = make()
    t = m.inbound_connected(T0)
    timer = next(a for a in t.actions if isinstance(a, StartHandshakeTimer))
    assert timer.delay == HS
    m.handshake_done(T0 + 1)
    late = m.handshake_timeout(T0 + HS, epoch=timer.epoch)
    assert late.ignored == "stale"
    assert late.actions == ()
    assert m.state is S.ESTABLISHED


def test_handshake_timer_of_an_old_connection_is_ignored() -> None:
    m = make()
    t1 = m.dial_started(T0)
    t2 = m.dial_succeeded(T0, epoch=t1.actions[0].epoch)  # type: ignore[union-attr]
    old_timer = next(a for a in t2.actions if isinstance(a, StartHandshakeTimer))
    assert m.disconnected(T0 + 1).state is S.RECONNECTING
    assert m.inbound_connected(T0 + 2).state is S.CONNECTED  # a new connection, a new timer
    assert m.handshake_timeout(T0 + HS, epoch=old_timer.epoch).ignored == "stale"
    assert m.state is S.CONNECTED
    t = m.handshake_timeout(T0 + HS + 2, epoch=m.epoch)
    assert t.state is S.COOLDOWN
    emit = t.actions[-1]
    assert isinstance(emit, Emit)
    assert emit.error_code == "handshake_timeout"
    assert m.status().last_error_code == "handshake_timeout"


def test_stale_dial_result_after_inbound_connection() -> None:
    m = make()
    dial = m.dial_started(T0).actions[0]
    assert isinstance(dial, Dial)
    assert dial.attempt == 0
    m.inbound_connected(T0 + 0.1)
    assert m.dial_succeeded(T0 + 0.2, epoch=dial.epoch).ignored == "stale"
    assert m.dial_failed(T0 + 0.2, epoch=dial.epoch).ignored == "stale"
    assert m.state is S.CONNECTED
    assert not m.is_outbound


def test_stale_reconnect_and_cooldown_timers() -> None:
    m = reach(S.RECONNECTING)
    sched_epoch = m.epoch
    m.cancel_reconnect(T0)
    assert m.state is S.DISCONNECTED
    assert m.reconnect_due(T0 + 5, epoch=sched_epoch).ignored == "stale"
    m = reach(S.COOLDOWN)
    cool_epoch = m.epoch
    m.blacklisted(T0)
    assert m.cooldown_expired(T0 + COOL, epoch=cool_epoch).ignored == "stale"
    assert m.state is S.DISCONNECTED


def test_disconnect_notice_of_an_older_connection_is_ignored() -> None:
    m = reach(S.ESTABLISHED)
    conn = m.connection_epoch
    assert conn is not None
    assert conn != m.epoch  # ESTABLISHED bumped the epoch, the connection is the same
    t = m.disconnected(T0 + 1, epoch=conn)
    assert t.state is S.RECONNECTING
    m.inbound_connected(T0 + 2)
    assert m.disconnected(T0 + 3, epoch=conn).ignored == "stale"
    assert m.state is S.CONNECTED
    assert m.handshake_failed(T0 + 3, epoch=conn).ignored == "stale"


def test_epoch_required_for_outcome_inputs() -> None:
    m = reach(S.CONNECTING)
    epoch = m.epoch
    with pytest.raises(ValueError, match="requires the epoch"):
        m.handle(Input.DIAL_SUCCEEDED, T0)
    assert not m.failed
    assert m.epoch == epoch


# -- reconnection and backoff -------------------------------------------------------------


def test_reconnect_until_attempts_exhausted() -> None:
    m = make(max_attempts=3)
    dial = m.dial_started(T0).actions[0]
    assert isinstance(dial, Dial)
    now = T0
    delays = []
    for attempt in (1, 2, 3):
        t = m.dial_failed(now, epoch=dial.epoch, error=DialTimeoutError("timed out"))
        sched = t.actions[0]
        assert isinstance(sched, ScheduleReconnect)
        assert sched.attempt == attempt == m.reconnect_attempts
        assert sched.at == now + sched.delay == m.next_retry_at
        emit = t.actions[-1]
        assert isinstance(emit, Emit)
        assert (emit.error_code, emit.error_message) == ("dial_timeout", "timed out")
        delays.append(sched.delay)
        now = sched.at
        t = m.reconnect_due(now, epoch=sched.epoch)
        dial = t.actions[0]
        assert isinstance(dial, Dial)
        assert dial.attempt == attempt
    assert delays == [1.0, 2.0, 4.0]
    t = m.dial_failed(now, epoch=dial.epoch, error=OSError("refused"))
    assert t.state is S.DISCONNECTED
    assert [type(a) for a in t.actions] == [Emit]
    emit = t.actions[-1]
    assert isinstance(emit, Emit)
    assert (emit.error_code, emit.error_message) == ("dial_failed", "refused")
    assert m.status().reconnect_attempts == 3  # kept visible until the next dial
    m.dial_started(now)
    assert m.reconnect_attempts == 0


def test_established_resets_backoff() -> None:
    m = make()
    dial = m.dial_started(T0).actions[0]
    assert isinstance(dial, Dial)
    m.dial_failed(T0, epoch=dial.epoch)
    t = m.reconnect_due(T0 + 1, epoch=m.epoch)
    m.dial_succeeded(T0 + 1, epoch=t.actions[0].epoch)  # type: ignore[union-attr]
    assert m.reconnect_attempts == 1
    m.handshake_done(T0 + 2)
    assert m.reconnect_attempts == 0
    t = m.disconnected(T0 + 3)
    sched = t.actions[1]
    assert isinstance(sched, ScheduleReconnect)
    assert (sched.attempt, sched.delay) == (1, 1.0)


def test_no_auto_reconnect() -> None:
    m = make(auto_reconnect=False)
    dial = m.dial_started(T0).actions[0]
    assert isinstance(dial, Dial)
    assert m.dial_failed(T0, epoch=dial.epoch).state is S.DISCONNECTED
    m = reach(S.ESTABLISHED)
    m.auto_reconnect = False
    t = m.disconnected(T0 + 1)
    assert t.state is S.DISCONNECTED
    assert [type(a) for a in t.actions] == [Close, Emit]


def test_zero_max_attempts_never_reconnects() -> None:
    m = make(max_attempts=0)
    m.inbound_connected(T0)
    assert m.disconnected(T0).state is S.DISCONNECTED


def test_zero_cooldown_retries_directly() -> None:
    m = make(cooldown=0.0)
    m.inbound_connected(T0)
    t = m.handshake_failed(T0 + 1)
    assert t.state is S.RECONNECTING
    assert [type(a) for a in t.actions] == [CancelHandshakeTimer, Close, ScheduleReconnect, Emit]


def test_cooldown_expiry_without_retry_left_disconnects() -> None:
    m = make(max_attempts=0)
    m.inbound_connected(T0)
    t = m.handshake_failed(T0)
    cool = t.actions[2]
    assert isinstance(cool, EnterCooldown)
    assert (cool.until, cool.delay) == (T0 + COOL, COOL)
    assert m.cooldown_expired(cool.until, epoch=cool.epoch).state is S.DISCONNECTED


# -- status, errors, construction ---------------------------------------------------------


def test_status_fields_follow_the_state() -> None:
    m = make()
    st = m.status()
    assert (st.state, st.is_outbound, st.connected_since) == (S.DISCONNECTED, False, None)
    dial = m.dial_started(T0).actions[0]
    assert isinstance(dial, Dial)
    m.dial_succeeded(T0 + 1, epoch=dial.epoch)
    st = m.status()
    assert (st.state, st.is_outbound, st.connected_since) == (S.CONNECTED, True, T0 + 1)
    m.handshake_done(T0 + 2)
    assert m.status().connected_since == T0 + 1
    m.disconnected(T0 + 3)
    st = m.status()
    assert st.state is S.RECONNECTING
    assert (st.is_outbound, st.connected_since) == (False, None)
    assert st.next_retry_at == T0 + 4
    assert st.cooldown_until is None
    assert st.last_error_code == "connection_closed"
    m.inbound_connected(T0 + 3.5)
    st = m.status()
    assert (st.is_outbound, st.next_retry_at, st.connected_since) == (False, None, T0 + 3.5)


def test_handshake_failed_error_is_described() -> None:
    m = reach(S.CONNECTED)
    t = m.handshake_failed(T0, error=PeerInCooldownError("x"))
    emit = t.actions[-1]
    assert isinstance(emit, Emit)
    assert emit.error_code == "peer_in_cooldown"
    close = next(a for a in t.actions if isinstance(a, Close))
    assert close.error_code == "peer_in_cooldown"
    m = reach(S.CONNECTED)
    emit = m.handshake_failed(T0, error=RuntimeError()).actions[-1]
    assert isinstance(emit, Emit)
    assert (emit.error_code, emit.error_message) == ("handshake_failed", "RuntimeError")


def test_failed_machine_refuses_until_reset() -> None:
    m = reach(S.ESTABLISHED)
    with pytest.raises(InvalidStateTransitionError):
        m.dial_succeeded(T0, epoch=m.epoch)
    assert m.failed
    assert not m.can(Input.DISCONNECTED)
    with pytest.raises(InvalidStateTransitionError, match="failed earlier"):
        m.disconnected(T0)
    t = m.reset(T0 + 1)
    assert not m.failed
    assert t.input is Input.RESET
    assert t.state is S.DISCONNECTED
    assert [type(a) for a in t.actions] == [
        CancelDial,
        CancelHandshakeTimer,
        CancelReconnect,
        CancelCooldown,
        Close,
        Emit,
    ]
    emit = t.actions[-1]
    assert isinstance(emit, Emit)
    assert emit.error_code == "invalid_state_transition"
    assert m.dial_started(T0 + 2).state is S.CONNECTING


def test_reset_when_disconnected_emits_nothing() -> None:
    m = make()
    t = m.handle(Input.RESET, T0)
    assert not t.changed
    assert not any(isinstance(a, Emit) for a in t.actions)


def test_can() -> None:
    m = make()
    assert m.can(Input.DIAL_STARTED)
    assert not m.can(Input.HANDSHAKE_DONE)
    m.inbound_connected(T0)
    assert m.can(Input.HANDSHAKE_DONE)


def test_finalized_alias() -> None:
    m = reach(S.CONNECTED)
    assert m.finalized(T0).state is S.ESTABLISHED


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"handshake_timeout": 0.0}, "handshake_timeout"), ({"cooldown": -1.0}, "cooldown")],
)
def test_rejects_bad_durations(kwargs: dict[str, float], match: str) -> None:
    args: dict[str, float] = {"handshake_timeout": 1.0, "cooldown": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        PeerConnectionMachine(
            None,
            backoff=Backoff(),
            handshake_timeout=args["handshake_timeout"],
            cooldown=args["cooldown"],
        )


def test_from_config() -> None:
    cfg = Config(
        handshake_timeout=5.0,
        failed_handshake_cooldown=7.0,
        reconnect_base_delay=0.5,
        reconnect_jitter=0.0,
    )
    m = PeerConnectionMachine.from_config(None, cfg, auto_reconnect=False)
    assert (m.handshake_seconds, m.cooldown, m.auto_reconnect) == (5.0, 7.0, False)
    assert m.backoff.base_delay == 0.5
    t = m.inbound_connected(T0)
    assert t.actions[0] == StartHandshakeTimer(5.0, m.epoch)
    assert "connected" in repr(m)


SHORTCUTS: list[tuple[Input, Callable[[PeerConnectionMachine], Transition]]] = [
    (Input.DISCONNECT_REQUESTED, lambda m: m.disconnect_requested(T0)),
    (Input.BLACKLISTED, lambda m: m.blacklisted(T0)),
    (Input.CANCEL_RECONNECT, lambda m: m.cancel_reconnect(T0)),
]


@pytest.mark.parametrize(("inp", "call"), SHORTCUTS)
def test_shortcuts_feed_their_input(
    inp: Input, call: Callable[[PeerConnectionMachine], Transition]
) -> None:
    assert call(reach(S.RECONNECTING)).input is inp
