"""Scenario 3: 50-200 ms of random latency per chunk, each way."""

from __future__ import annotations

import time

import pytest

from engine.connection_state import ConnectionState

from .conftest import Harness
from .kit import payload

S = ConnectionState
LOW, HIGH = 0.05, 0.2
HANDSHAKE_TIMEOUT = 5.0
MESSAGES = 300
SIZE = 1024


@pytest.mark.slow
async def test_latency_slows_but_handshake_completes_and_order_holds(chaos: Harness) -> None:
    started = time.monotonic()
    pair = await chaos.pair(
        latency=(LOW, HIGH),
        handshake_timeout=HANDSHAKE_TIMEOUT,
        dial_timeout=HANDSHAKE_TIMEOUT,
        connect_timeout=HANDSHAKE_TIMEOUT,
    )
    connect_seconds = time.monotonic() - started
    a, b, proxy = pair.a, pair.b, pair.proxy
    backlog, _ = a.events_since(0)
    states = [e.state for e in backlog if e.peer_id == b.peer_id]
    assert states == [S.CONNECTING, S.CONNECTED, S.ESTABLISHED]  # no retry, no cooldown
    connected = next(e for e in backlog if e.state is S.CONNECTED)
    established = next(e for e in backlog if e.state is S.ESTABLISHED)
    handshake_seconds = established.timestamp - connected.timestamp
    assert handshake_seconds < HANDSHAKE_TIMEOUT
    # The dial alone (multistream + Noise XX + yamux) needs several one-way trips.
    assert connect_seconds >= 3 * LOW

    rtt = await a.ping(b.peer_id, timeout=5)
    assert rtt >= 2 * LOW  # the latency really is injected, both ways

    at_b = chaos.inbox(b, "messages")
    at_a = chaos.inbox(a, "messages")
    t0 = time.monotonic()
    for i in range(MESSAGES):
        await a.send(b.peer_id, "messages", payload(i, SIZE))
        await b.send(a.peer_id, "messages", payload(i, SIZE))
    await at_b.wait_until(lambda: len(at_b.items) == MESSAGES, 20)
    await at_a.wait_until(lambda: len(at_a.items) == MESSAGES, 20)
    elapsed = time.monotonic() - t0
    assert at_b.seqs == list(range(MESSAGES))
    assert at_a.seqs == list(range(MESSAGES))
    assert elapsed >= LOW
    assert proxy.faults.kills == 0
    assert a.connection_state(b.peer_id) is S.ESTABLISHED
    print(
        f"latency {LOW * 1000:.0f}-{HIGH * 1000:.0f} ms/chunk: connect+handshake "
        f"{connect_seconds:.2f} s (handshake {handshake_seconds:.2f} s), ping {rtt * 1000:.0f} ms, "
        f"{2 * MESSAGES} x {SIZE} B both ways in {elapsed:.2f} s "
        f"({2 * MESSAGES / elapsed:.0f} msg/s)"
    )
