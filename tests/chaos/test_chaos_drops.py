"""Scenario 2: the proxy kills the TCP connection at seeded random points, again and again.

Delivery semantics checked here (docs/engine-api.md: ``send`` returns once the message is
encrypted and *queued*; docs/protocol.md: one stream per (peer, name), per-sender order):
a message in flight when the connection dies may be lost, and nothing re-sends it. So
what arrives is an order-preserving subsequence of what ``send`` accepted: no duplicate,
no reordering, no damaged message, nothing that ``send`` refused. The drops the node
counts (``dropped["disconnected"]`` / ``["write_failed"]``) never exceed what was lost.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.connection_state import ConnectionState
from engine.errors import GlueberryError
from engine.node import Node

from .conftest import Harness
from .kit import Inbox, Pair, payload

S = ConnectionState
SEED = 20261125
DROPS = 6
SIZE = 200
BASE_DELAY = 0.05  # node_kit defaults: base 0.05 s, jitter 0.1
JITTER = 0.1
FINAL_BATCH = 300


async def send_both_ways(pair: Pair, n: int, sent: dict[str, list[int]]) -> None:
    """Message ``n`` from a to b and from b to a; refused sends are not recorded."""
    for sender, receiver, key in ((pair.a, pair.b, "ab"), (pair.b, pair.a, "ba")):
        try:
            await sender.send(receiver.peer_id, "messages", payload(n, SIZE), timeout=5)
        except GlueberryError:
            continue
        sent[key].append(n)


def check_delivery(inbox: Inbox, sent: list[int], node: Node, peer: Node) -> int:
    """The delivery semantics of the module docstring; returns how many were lost."""
    got = inbox.seqs  # raises if any message is damaged
    assert got == sorted(set(got)), "duplicated or reordered messages"
    assert set(got) <= set(sent), "a message whose send() failed arrived"
    lost = len(sent) - len(got)
    stats = node.peer_stats(peer.peer_id)
    assert stats is not None
    counted = stats.dropped.get("disconnected", 0) + stats.dropped.get("write_failed", 0)
    assert counted <= lost, (counted, lost)
    return lost


@pytest.mark.slow
async def test_random_connection_drops_reconnect_with_backoff_and_never_wedge(
    chaos: Harness,
) -> None:
    pair = await chaos.pair(seed=SEED, high_watermark=64, low_watermark=16)
    a, b, proxy = pair.a, pair.b, pair.proxy
    a_log = chaos.events(a, b.peer_id)
    at_b = chaos.inbox(b, "messages")
    at_a = chaos.inbox(a, "messages")
    sent: dict[str, list[int]] = {"ab": [], "ba": []}
    n = 0
    cuts = []
    for _ in range(DROPS):
        cuts.append(proxy.faults.arm_random_drop(2_000, 60_000))
        kills = proxy.faults.kills
        mark = len(a_log.events)
        async with asyncio.timeout(10):
            while proxy.faults.kills == kills:
                await send_both_ways(pair, n, sent)
                n += 1
                await asyncio.sleep(0)  # a yield (not a wait): let the relay run
        # The dialer notices, backs off and reconnects; the engine is usable again.
        lost = await a_log.wait_state(S.RECONNECTING, 5, after=mark)
        assert lost.previous_state is S.ESTABLISHED
        assert lost.error_code is not None
        back = await a_log.wait_state(S.ESTABLISHED, 10, after=mark)
        await pair.established(10)
        episode = a_log.events[a_log.events.index(lost) : a_log.events.index(back) + 1]
        retries = [e for e in episode if e.state is S.RECONNECTING]
        for retry in retries:  # every retry waited for its backoff delay first
            dial = next(
                e for e in episode if e.state is S.CONNECTING and e.timestamp >= retry.timestamp
            )
            assert dial.timestamp - retry.timestamp >= BASE_DELAY * (1 - JITTER) - 0.005
        assert a.peer_status(b.peer_id).reconnect_attempts == 0  # reset by the success
        assert a.is_outbound(b.peer_id)
    assert proxy.faults.kills == DROPS

    # Never wedged: after the last drop a fresh batch arrives whole and in order.
    first = n
    before_b, before_a = len(at_b.items), len(at_a.items)
    for _ in range(FINAL_BATCH):
        await send_both_ways(pair, n, sent)
        n += 1
    assert sent["ab"][-FINAL_BATCH:] == list(range(first, n))
    assert sent["ba"][-FINAL_BATCH:] == list(range(first, n))
    await at_b.wait_until(lambda: len(at_b.items) == before_b + FINAL_BATCH, 10)
    await at_a.wait_until(lambda: len(at_a.items) == before_a + FINAL_BATCH, 10)
    assert at_b.seqs[-FINAL_BATCH:] == list(range(first, n))
    assert at_a.seqs[-FINAL_BATCH:] == list(range(first, n))

    lost_ab = check_delivery(at_b, sent["ab"], a, b)
    lost_ba = check_delivery(at_a, sent["ba"], b, a)
    for node, peer in ((a, b), (b, a)):
        stats = node.peer_stats(peer.peer_id)
        assert stats is not None
        assert stats.connect_count == DROPS + 1
    print(
        f"cuts={[(w.name, k) for w, k in cuts]} sent a->b {len(sent['ab'])} "
        f"lost {lost_ab}; sent b->a {len(sent['ba'])} lost {lost_ba}"
    )


# Where a reconnection is cut: fractions of the bytes one direction carries until the
# dialer is established (multistream, the three Noise XX messages, the yamux negotiation,
# identify, the Glueberry hello/complete), measured on a clean reconnection first.
CUT_FRACTIONS = [0.02, 0.1, 0.25, 0.4, 0.55, 0.7, 0.85]


@pytest.mark.parametrize("way", ["UP", "DOWN"])
async def test_drop_during_reconnect_handshake_retries_instead_of_cooldown(
    chaos: Harness, way: str
) -> None:
    # A connection lost mid-handshake is a network failure, not a failed handshake: the
    # dialer must retry with backoff rather than sit out failed_handshake_cooldown
    # (30 s here), and the listener must not refuse the retry for that long either.
    from .faulty_proxy import Way

    direction = Way[way]
    pair = await chaos.pair(seed=SEED)
    a, b, proxy = pair.a, pair.b, pair.proxy
    a_log = chaos.events(a, b.peer_id)
    b_log = chaos.events(b, a.peer_id)

    mark = len(a_log.events)
    proxy.kill_all()
    await a_log.wait_state(S.ESTABLISHED, 10, after=mark)
    newest = max(proxy.faults.links.values(), key=lambda link: link.id)
    handshake_bytes = newest.bytes[direction]
    assert handshake_bytes > 100

    for fraction in CUT_FRACTIONS:
        cut = int(handshake_bytes * fraction)
        marks = len(a_log.events), len(b_log.events)
        proxy.kill_all()
        proxy.faults.arm_drop(cut, direction)  # same tick: counts the new link's bytes only
        await proxy.wait_until(lambda: not proxy.faults.drop_armed, 5)
        # The dialer ends up established again, and neither side went through cooldown.
        for log, start in ((a_log, marks[0]), (b_log, marks[1])):
            cooled = asyncio.ensure_future(log.wait_state(S.COOLDOWN, 10, after=start))
            up = asyncio.ensure_future(pair.established(10))
            done, _ = await asyncio.wait({cooled, up}, return_when=asyncio.FIRST_COMPLETED)
            for task in (cooled, up):
                task.cancel()
            await asyncio.gather(cooled, up, return_exceptions=True)
            cooldown = log.events[start:]
            assert cooled not in done, (
                f"{way} cut after {cut}/{handshake_bytes} bytes: "
                f"{[(e.state.value, e.error_code) for e in cooldown]}"
            )
        await pair.established(10)
    sub = chaos.inbox(b, "messages")
    await a.send(b.peer_id, "messages", payload(1))
    await sub.wait_until(lambda: len(sub.items) == 1, 5)
