"""Scenario 1: a network partition (blackhole both ways, nothing closed), then the heal."""

from __future__ import annotations

import time

import pytest

from engine.connection_state import ConnectionState

from .conftest import KEEPALIVE, Harness, LoopErrors
from .kit import payload

TIMEOUT = KEEPALIVE["keepalive_timeout"]
INTERVAL = KEEPALIVE["keepalive_interval"]
MARGIN = 1.0  # scheduling slack on a shared 2-core machine (as in test_transport_liveness)
S = ConnectionState


@pytest.mark.slow
async def test_partition_is_detected_by_keepalive_and_heals(
    chaos: Harness, hygiene: LoopErrors
) -> None:
    pair = await chaos.pair(dial_timeout=1.0, **KEEPALIVE)
    a, b, proxy = pair.a, pair.b, pair.proxy
    a_log = chaos.events(a, b.peer_id)
    b_log = chaos.events(b, a.peer_id)
    inbox = chaos.inbox(b, "messages")
    for i in range(20):
        await a.send(b.peer_id, "messages", payload(i))
    await inbox.wait_until(lambda: len(inbox.items) == 20, 5)

    # A healthy idle pair survives several keep-alive timeouts through the proxy.
    with pytest.raises(TimeoutError):
        await a_log.wait_for(lambda e: e.state is not S.ESTABLISHED, 2.5 * TIMEOUT)

    proxy.partition()
    cut_at = time.time()
    lost_a = await a_log.wait_state(S.RECONNECTING, TIMEOUT + MARGIN + 2)
    lost_b = await b_log.wait_state(S.DISCONNECTED, TIMEOUT + MARGIN + 2)
    for event in (lost_a, lost_b):
        elapsed = event.timestamp - cut_at
        assert event.previous_state is S.ESTABLISHED
        assert event.error_code is not None, event
        # Within the keep-alive bound, and not before the keep-alive could know.
        assert TIMEOUT - 2 * INTERVAL - 0.1 <= elapsed <= TIMEOUT + MARGIN, elapsed
    assert a.peer_status(b.peer_id).reconnect_attempts >= 1
    assert not a.host.is_connected(b.peer_id)
    assert not b.host.is_connected(a.peer_id)

    # While partitioned, reconnect dials reach the proxy but carry nothing: they time out
    # and the dialer backs off again (attempts keep counting).
    first = a_log.events.index(lost_a)
    failed = await a_log.wait_for(
        lambda e: e.state is S.RECONNECTING and e.previous_state is S.CONNECTING,
        1.0 + 0.5 + MARGIN + 2,
        after=first + 1,
    )
    assert failed.error_code is not None
    assert a.peer_status(b.peer_id).reconnect_attempts >= 2
    assert b.connection_state(a.peer_id) is S.DISCONNECTED  # b never dials (inbound peer)

    proxy.heal()
    healed = len(a_log.events)
    await a_log.wait_state(S.ESTABLISHED, 10, after=healed)
    await pair.established(10)
    assert a.peer_status(b.peer_id).reconnect_attempts == 0
    assert a.is_outbound(b.peer_id)

    # After re-establishment: messages both ways, complete and in order.
    back = chaos.inbox(a, "messages")
    before = len(inbox.items)
    for i in range(100, 300):
        await a.send(b.peer_id, "messages", payload(i))
        await b.send(a.peer_id, "messages", payload(i))
    await inbox.wait_until(lambda: len(inbox.items) == before + 200, 10)
    await back.wait_until(lambda: len(back.items) == 200, 10)
    assert inbox.seqs == [*range(20), *range(100, 300)]
    assert back.seqs == list(range(100, 300))


DIAL_TIMEOUT = 1.0
MAX_DELAY = 0.5


@pytest.mark.slow
async def test_dial_gives_up_on_a_dead_path_after_dial_timeout(chaos: Harness) -> None:
    # Reconnect dials started during the partition run over flows a middlebox then
    # forgets: they stay silent forever (no FIN, no RST, as on a real network whose NAT
    # lost its state). Fresh connections work again at once. Each reconnect attempt is
    # bounded by dial_timeout, so the dialer must be back within about
    # dial_timeout + max backoff after the heal.
    pair = await chaos.pair(dial_timeout=DIAL_TIMEOUT, reconnect_max_delay=MAX_DELAY, **KEEPALIVE)
    a, b, proxy = pair.a, pair.b, pair.proxy
    a_log = chaos.events(a, b.peer_id)
    opened = proxy.faults.links_opened
    proxy.partition()
    await a_log.wait_state(S.RECONNECTING, TIMEOUT + MARGIN + 2)
    # A reconnect dial is in flight over a (held) path.
    await proxy.wait_until(lambda: proxy.faults.links_opened > opened, 2 * MAX_DELAY + MARGIN)
    proxy.heal(forget=True)
    healed_at = len(a_log.events)
    await a_log.wait_state(S.ESTABLISHED, 2 * (DIAL_TIMEOUT + MAX_DELAY) + MARGIN, after=healed_at)
    await pair.established(5)
