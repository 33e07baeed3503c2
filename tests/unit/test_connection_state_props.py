"""Model-based property tests of engine.connection_state.PeerConnectionMachine.

A fake node executes the machine's actions (tracking dials in flight, armed timers and the
open connection) and feeds random inputs, including the genuine outcomes of its pending
actions, stale ones, and time jumps. Invariants are checked after every step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backoff import Backoff
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
from engine.errors import InvalidStateTransitionError, PeerInCooldownError

S = ConnectionState


@dataclass
class FakeNode:
    """Executes actions the way the node must; keeps what is pending."""

    dial: int | None = None
    hs_timer: int | None = None
    reconnect: int | None = None
    cooldown: int | None = None
    conn_open: bool = False
    events: int = 0

    def apply(self, t: Transition) -> None:
        for a in t.actions:
            if isinstance(a, Dial):
                assert self.dial is None
                self.dial = a.epoch
            elif isinstance(a, CancelDial):
                self.dial = None
            elif isinstance(a, StartHandshakeTimer):
                assert self.hs_timer is None, "two handshake timers armed"
                self.hs_timer = a.epoch
            elif isinstance(a, CancelHandshakeTimer):
                self.hs_timer = None
            elif isinstance(a, ScheduleReconnect):
                assert self.reconnect is None
                self.reconnect = a.epoch
            elif isinstance(a, CancelReconnect):
                self.reconnect = None
            elif isinstance(a, EnterCooldown):
                assert self.cooldown is None
                self.cooldown = a.epoch
            elif isinstance(a, CancelCooldown):
                self.cooldown = None
            elif isinstance(a, Close):
                self.conn_open = False
            else:
                assert isinstance(a, Emit)
                self.events += 1


MOVES = [
    "dial",
    "dial_ok",
    "dial_fail",
    "inbound",
    "hs_done",
    "hs_failed",
    "hs_timer",
    "transport_lost",
    "disconnect",
    "cancel",
    "reconnect_timer",
    "cooldown_timer",
    "blacklist",
    "stale",
    "wait",
]


# Outcomes of pending work are drawn more often so that long chains happen.
WEIGHTED_MOVES = [
    *MOVES,
    *["dial_ok", "dial_fail", "hs_done", "reconnect_timer", "cooldown_timer", "wait"] * 2,
]


def check_invariants(m: PeerConnectionMachine, node: FakeNode) -> None:
    s = m.state
    # Exactly the state's own async work is pending, all tagged with the current epoch.
    assert (node.dial is not None) == (s is S.CONNECTING)
    assert (node.hs_timer is not None) == (s is S.CONNECTED)
    assert (node.reconnect is not None) == (s is S.RECONNECTING)
    assert (node.cooldown is not None) == (s is S.COOLDOWN)
    for pending in (node.dial, node.hs_timer, node.reconnect, node.cooldown):
        assert pending is None or pending == m.epoch
    assert node.conn_open == (s in (S.CONNECTED, S.ESTABLISHED))
    assert (m.connected_since is not None) == node.conn_open
    assert (m.connection_epoch is not None) == node.conn_open
    assert (m.next_retry_at is not None) == (s is S.RECONNECTING)
    assert (m.cooldown_until is not None) == (s is S.COOLDOWN)
    if not node.conn_open:
        assert not m.is_outbound
    assert m.backoff.max_attempts is None or m.reconnect_attempts <= m.backoff.max_attempts
    assert m.status().state is s


@settings(max_examples=300, deadline=None)
@given(
    moves=st.lists(st.sampled_from(WEIGHTED_MOVES), min_size=5, max_size=80),
    max_attempts=st.sampled_from([0, 1, 3, None]),
    cooldown=st.sampled_from([0.0, 5.0]),
    auto=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_inputs_keep_invariants(
    moves: list[str], max_attempts: int | None, cooldown: float, auto: bool, seed: int
) -> None:
    walk(moves, max_attempts, cooldown, auto, seed)


def walk(
    moves: list[str], max_attempts: int | None, cooldown: float, auto: bool, seed: int
) -> set[tuple[ConnectionState, Input, ConnectionState]]:
    """Drive a machine through ``moves`` with a fake node; check invariants each step."""
    rng = random.Random(seed)
    m = PeerConnectionMachine(
        None,
        backoff=Backoff(1.0, 4.0, max_attempts, 0.5, random=rng.random),
        handshake_timeout=3.0,
        cooldown=cooldown,
        auto_reconnect=auto,
    )
    node = FakeNode()
    now = 1000.0
    seen: set[tuple[S, Input, S]] = set()
    for move in moves:
        before_state, before_epoch = m.state, m.epoch
        t: Transition | None = None
        try:
            if move == "dial":
                t = m.dial_started(now)
            elif move == "dial_ok" and node.dial is not None:
                t = m.dial_succeeded(now, epoch=node.dial)
                node.dial = None
            elif move == "dial_fail" and node.dial is not None:
                t = m.dial_failed(now, epoch=node.dial)
                node.dial = None
            elif move == "inbound":
                t = m.inbound_connected(now)
            elif move == "hs_done" and m.state in (S.CONNECTED, S.ESTABLISHED):
                t = m.handshake_done(now)
            elif move == "hs_failed":
                t = m.handshake_failed(now, epoch=m.epoch if rng.random() < 0.5 else None)
            elif move == "hs_timer" and node.hs_timer is not None:
                epoch, node.hs_timer = node.hs_timer, None
                t = m.handshake_timeout(now + 3.0, epoch=epoch)
            elif move == "transport_lost":
                t = m.disconnected(now, epoch=m.connection_epoch)
            elif move == "disconnect":
                t = m.disconnect_requested(now)
            elif move == "cancel":
                t = m.cancel_reconnect(now)
            elif move == "reconnect_timer" and node.reconnect is not None:
                epoch, node.reconnect = node.reconnect, None
                now = max(now, m.next_retry_at or now)
                t = m.reconnect_due(now, epoch=epoch)
            elif move == "cooldown_timer" and node.cooldown is not None:
                epoch, node.cooldown = node.cooldown, None
                now = max(now, m.cooldown_until or now)
                t = m.cooldown_expired(now, epoch=epoch)
            elif move == "blacklist":
                t = m.blacklisted(now)
            elif move == "stale":
                inp = rng.choice(
                    [
                        Input.DIAL_SUCCEEDED,
                        Input.DIAL_FAILED,
                        Input.HANDSHAKE_TIMEOUT,
                        Input.RECONNECT_DUE,
                        Input.COOLDOWN_EXPIRED,
                    ]
                )
                t = m.handle(inp, now, epoch=m.epoch - rng.randint(1, 5))
                assert t.ignored == "stale"
            elif move == "wait":
                now += rng.choice([0.1, 1.0, 10.0, 10.0])
        except PeerInCooldownError:
            assert m.state is S.COOLDOWN
            assert m.cooldown_until is not None
            assert now < m.cooldown_until
            assert not m.failed
        except InvalidStateTransitionError:
            # The fake node only feeds inputs a correct node feeds, so nothing is illegal.
            raise AssertionError(f"{move} illegal in {before_state}") from None
        if t is not None:
            if t.changed and t.state is S.CONNECTED:
                node.conn_open = True  # the transport connection the input reported
            node.apply(t)
            seen.add((before_state, t.input, t.state))
            assert t.previous is before_state
            assert t.state is m.state
            emits = [a for a in t.actions if isinstance(a, Emit)]
            if t.changed:
                assert m.epoch == before_epoch + 1
                assert len(emits) == 1
                assert t.actions[-1] is emits[0]
                assert (emits[0].previous_state, emits[0].state) == (before_state, m.state)
            else:
                assert m.epoch == before_epoch
                assert emits == []
        check_invariants(m, node)
    return seen


@settings(max_examples=300, deadline=None)
@given(
    inputs=st.lists(
        st.tuples(st.sampled_from(list(Input)), st.one_of(st.none(), st.integers(-2, 40))),
        max_size=50,
    ),
)
def test_arbitrary_inputs_only_raise_documented_errors(
    inputs: list[tuple[Input, int | None]],
) -> None:
    m = PeerConnectionMachine(
        None, backoff=Backoff(1.0, 2.0, 3, 0.0), handshake_timeout=1.0, cooldown=1.0
    )
    now = 0.0
    for inp, epoch in inputs:
        now += 0.7
        try:
            t = m.handle(inp, now, epoch=epoch)
        except InvalidStateTransitionError:
            assert m.failed
            if inp is not Input.RESET:
                m.reset(now)
                assert not m.failed
            continue
        except PeerInCooldownError:
            assert m.state is S.COOLDOWN
            continue
        except ValueError:
            # Only an outcome input without its epoch is rejected this way.
            assert epoch is None
            continue
        assert t.state is m.state
        assert isinstance(m.state, ConnectionState)


def test_long_random_walks_reach_every_transition() -> None:
    """Long seeded walks (complementing hypothesis' short ones) exercise every cell."""
    seen: set[tuple[ConnectionState, Input, ConnectionState]] = set()
    for seed in range(24):
        rng = random.Random(seed)
        moves = rng.choices(WEIGHTED_MOVES, k=500)
        seen |= walk(
            moves, [None, 3, 0, 1][seed % 4], [5.0, 0.0][seed % 3 == 0], seed % 5 != 0, seed
        )
    applied = {(a, i) for a, i, b in seen if a is not b}
    expected = {k for k, rule in TRANSITIONS.items() if rule.target is not None}
    assert applied == expected
