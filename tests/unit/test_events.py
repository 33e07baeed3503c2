"""Tests of engine.events: fan-out, bounded queues, drops, ids, retention and resume."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.connection_state import ConnectionState, Emit
from engine.crypto.identity import Identity, PeerId
from engine.errors import StreamBusyError
from engine.events import (
    BUFFER_FULL,
    ConnectionEvent,
    ConnectionEventHub,
    EventFilter,
    EventHub,
    Overflow,
    Subscription,
)

S = ConnectionState
T = TypeVar("T")
TIMEOUT = 5.0


def _peers(n: int) -> list[PeerId]:
    return [Identity.generate().peer_id for _ in range(n)]


P1, P2, P3 = _peers(3)


async def drain(sub: Subscription[int]) -> list[int]:
    return [item async for item in sub]


async def take(sub: Subscription[T]) -> T:
    """Wait for one item (run as a task; the test bounds it with wait_for)."""
    return await anext(sub)


async def next_item(sub: Subscription[T]) -> T:
    return await asyncio.wait_for(anext(sub), TIMEOUT)


# -- EventHub / Subscription ---------------------------------------------------------------


async def test_publish_fans_out_in_order() -> None:
    hub: EventHub[int] = EventHub(buffer_size=100)
    a, b = hub.subscribe(), hub.subscribe()
    for i in range(10):
        assert hub.publish(i) == 2
    hub.close()
    assert await drain(a) == list(range(10))
    assert await drain(b) == list(range(10))
    assert hub.published == 10


async def test_waiting_subscriber_is_woken() -> None:
    hub: EventHub[str] = EventHub()
    sub = hub.subscribe()
    task = asyncio.create_task(take(sub))
    await asyncio.sleep(0)  # let it block (no timing involved)
    assert not task.done()
    hub.publish("x")
    assert await asyncio.wait_for(task, TIMEOUT) == "x"


async def test_predicate_filters() -> None:
    hub: EventHub[int] = EventHub()
    evens = hub.subscribe_where(lambda i: i % 2 == 0)
    for i in range(6):
        hub.publish(i)
    hub.close()
    assert await drain(evens) == [0, 2, 4]


async def test_overflow_drops_oldest_and_counts() -> None:
    drops: list[tuple[int, str]] = []
    hub: EventHub[int] = EventHub(buffer_size=3, on_drop=lambda s, item, r: drops.append((item, r)))
    slow = hub.subscribe()
    fast = hub.subscribe(buffer_size=100)
    for i in range(10):
        hub.publish(i)
    assert slow.dropped == 7
    assert slow.drop_reasons == {BUFFER_FULL: 7}
    assert fast.dropped == 0
    assert hub.dropped == 7
    assert drops == [(i, BUFFER_FULL) for i in range(7)]
    assert slow.pending == 3
    hub.close()
    assert await drain(slow) == [7, 8, 9]
    assert await drain(fast) == list(range(10))


async def test_overflow_drop_newest() -> None:
    hub: EventHub[int] = EventHub(buffer_size=2, overflow=Overflow.DROP_NEWEST)
    sub = hub.subscribe()
    assert [hub.publish(i) for i in range(5)] == [1, 1, 0, 0, 0]
    assert sub.dropped == 3
    hub.close()
    assert await drain(sub) == [0, 1]


async def test_drop_reasons_is_a_copy() -> None:
    hub: EventHub[int] = EventHub(buffer_size=1)
    sub = hub.subscribe()
    hub.publish(1)
    hub.publish(2)
    reasons = sub.drop_reasons
    reasons[BUFFER_FULL] = 100
    assert sub.drop_reasons == {BUFFER_FULL: 1}


async def test_publish_never_blocks_with_a_stuck_subscriber() -> None:
    hub: EventHub[int] = EventHub(buffer_size=8)
    stuck = hub.subscribe()
    for i in range(100_000):
        hub.publish(i)
    assert stuck.pending == 8
    assert stuck.dropped == 100_000 - 8


async def test_unsubscribe_ends_iteration_and_removes() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    hub.publish(1)
    waiting = asyncio.create_task(drain(sub))
    await asyncio.sleep(0)
    assert hub.subscriber_count == 1
    sub.unsubscribe()
    sub.unsubscribe()  # idempotent
    assert await asyncio.wait_for(waiting, TIMEOUT) == [1]
    assert hub.subscriber_count == 0
    assert sub.closed
    assert hub.publish(2) == 0
    assert sub.get_nowait() is None


async def test_unsubscribe_discards_queue() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    hub.publish(1)
    sub.unsubscribe()
    assert await drain(sub) == []


async def test_unsubscribe_wakes_blocked_iterator() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    task = asyncio.create_task(drain(sub))
    await asyncio.sleep(0)
    sub.unsubscribe()
    assert await asyncio.wait_for(task, TIMEOUT) == []


async def test_context_managers_unsubscribe() -> None:
    hub: EventHub[int] = EventHub()
    with hub.subscribe() as a:
        assert hub.subscriber_count == 1
    assert a.closed
    async with hub.subscribe() as b:
        assert hub.subscriber_count == 1
    assert b.closed
    assert hub.subscriber_count == 0


async def test_no_leak_after_many_subscriptions() -> None:
    hub: EventHub[int] = EventHub()
    refs = []
    for _ in range(1000):
        sub = hub.subscribe()
        hub.publish(1)
        sub.unsubscribe()
        refs.append(weakref.ref(sub))
    del sub
    gc.collect()
    assert hub.subscriber_count == 0
    assert all(r() is None for r in refs)


async def test_close_delivers_queue_then_ends() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    hub.publish(1)
    hub.publish(2)
    hub.close()
    hub.close()
    assert sub.closed
    assert hub.publish(3) == 0
    assert await drain(sub) == [1, 2]
    late = hub.subscribe()
    assert late.closed
    assert await drain(late) == []


async def test_close_wakes_blocked_iterator() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    task = asyncio.create_task(drain(sub))
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(task, TIMEOUT) == []


async def test_cancelled_waiter_loses_nothing() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    task = asyncio.create_task(take(sub))
    await asyncio.sleep(0)
    task.cancel()
    hub.publish(7)  # published while the cancellation is pending
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await next_item(sub) == 7


async def test_second_concurrent_waiter_is_refused() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    first = asyncio.create_task(take(sub))
    await asyncio.sleep(0)
    with pytest.raises(StreamBusyError):
        await anext(sub)
    hub.publish(1)
    assert await asyncio.wait_for(first, TIMEOUT) == 1


async def test_on_drop_may_unsubscribe() -> None:
    hub: EventHub[int] = EventHub(buffer_size=1, on_drop=lambda s, i, r: s.unsubscribe())
    a = hub.subscribe()
    b = hub.subscribe(buffer_size=10)
    hub.publish(1)
    hub.publish(2)  # a overflows and unsubscribes itself
    hub.publish(3)
    assert a.closed
    assert hub.subscriber_count == 1
    b.unsubscribe()


def test_bad_buffer_sizes() -> None:
    with pytest.raises(ValueError, match="buffer_size"):
        EventHub(buffer_size=0)
    hub: EventHub[int] = EventHub()
    with pytest.raises(ValueError, match="buffer_size"):
        hub.subscribe(buffer_size=0)


async def test_get_nowait_and_repr() -> None:
    hub: EventHub[int] = EventHub()
    sub = hub.subscribe()
    assert sub.get_nowait() is None
    hub.publish(5)
    assert "pending=1" in repr(sub)
    assert sub.get_nowait() == 5


# -- connection events ------------------------------------------------------------------


def ev(hub: ConnectionEventHub, peer: PeerId, state: ConnectionState) -> ConnectionEvent:
    return hub.emit(peer, state, S.DISCONNECTED, 1.5)


async def test_ids_strictly_increase_independent_of_filters() -> None:
    hub = ConnectionEventHub()
    only_p2 = hub.subscribe(EventFilter(peers={P2}))
    established = hub.subscribe(EventFilter(states=[S.ESTABLISHED]))
    assert hub.last_id == 0
    e1 = ev(hub, P1, S.CONNECTING)
    e2 = ev(hub, P2, S.CONNECTING)
    e3 = ev(hub, P1, S.ESTABLISHED)
    e4 = ev(hub, P2, S.ESTABLISHED)
    assert [e.id for e in (e1, e2, e3, e4)] == [1, 2, 3, 4]
    assert hub.last_id == 4
    hub.close()
    assert [e.id async for e in only_p2] == [2, 4]
    assert [e.id async for e in established] == [3, 4]


async def test_publish_replaces_the_id() -> None:
    hub = ConnectionEventHub(first_id=100)
    sub = hub.subscribe()
    assert hub.last_id == 99
    hub.publish(ConnectionEvent(0, P1, S.CONNECTED, S.DISCONNECTED, 2.0))
    hub.publish(ConnectionEvent(0, P1, S.ESTABLISHED, S.CONNECTED, 3.0))
    got = [sub.get_nowait(), sub.get_nowait()]
    assert [e.id for e in got if e] == [100, 101]


def test_emit_action_and_to_dict() -> None:
    hub = ConnectionEventHub()
    e = hub.emit_action(P1, Emit(S.CONNECTED, S.COOLDOWN, 9.0, "handshake_timeout", "late"))
    assert e.to_dict() == {
        "id": 1,
        "peer_id": P1.to_string(),
        "state": "cooldown",
        "previous_state": "connected",
        "timestamp": 9.0,
        "error_code": "handshake_timeout",
        "error_message": "late",
    }


def test_event_filter() -> None:
    e = ConnectionEvent(1, P1, S.ESTABLISHED, S.CONNECTED, 0.0)
    assert EventFilter().matches(e)
    assert EventFilter(peers={P1}).matches(e)
    assert not EventFilter(peers={P2}).matches(e)
    assert EventFilter(states={S.ESTABLISHED, S.CONNECTED}).matches(e)
    assert not EventFilter(states=set()).matches(e)
    assert not EventFilter(peers={P1}, states={S.COOLDOWN}).matches(e)
    assert EventFilter(states=["established"]).states == frozenset({S.ESTABLISHED})  # type: ignore[list-item]
    assert EventFilter(peers={P1}) == EventFilter(peers=[P1])


def test_events_since_within_retention() -> None:
    hub = ConnectionEventHub(retention=5)
    assert hub.events_since(0) == ([], True)
    assert hub.oldest_retained_id is None
    for _ in range(3):
        ev(hub, P1, S.CONNECTING)
    events, complete = hub.events_since(0)
    assert [e.id for e in events] == [1, 2, 3]
    assert complete
    events, complete = hub.events_since(2)
    assert [e.id for e in events] == [3]
    assert complete
    assert hub.events_since(3) == ([], True)


def test_events_since_after_eviction() -> None:
    hub = ConnectionEventHub(retention=5)
    for _ in range(12):
        ev(hub, P1, S.CONNECTING)
    assert hub.oldest_retained_id == 8
    events, complete = hub.events_since(0)
    assert [e.id for e in events] == [8, 9, 10, 11, 12]
    assert not complete  # 1..7 are gone: the client must reset
    events, complete = hub.events_since(6)
    assert not complete
    events, complete = hub.events_since(7)
    assert [e.id for e in events] == [8, 9, 10, 11, 12]
    assert complete
    assert hub.events_since(12) == ([], True)


def test_events_since_future_cursor_is_not_complete() -> None:
    hub = ConnectionEventHub()
    ev(hub, P1, S.CONNECTING)
    assert hub.events_since(2) == ([], False)
    assert hub.events_since(-3)[1]


def test_events_since_filtered() -> None:
    hub = ConnectionEventHub(retention=3)
    for p in (P1, P2, P1, P2):
        ev(hub, p, S.CONNECTING)
    events, complete = hub.events_since(1, EventFilter(peers={P2}))
    assert [e.id for e in events] == [2, 4]
    assert complete


async def test_subscribe_from_backlog_then_live_exactly_once() -> None:
    hub = ConnectionEventHub(retention=100)
    for _ in range(5):
        ev(hub, P1, S.CONNECTING)
    backlog, complete, sub = hub.subscribe_from(2)
    for _ in range(3):
        ev(hub, P1, S.CONNECTED)
    hub.close()
    ids = [e.id for e in backlog] + [e.id async for e in sub]
    assert ids == [3, 4, 5, 6, 7, 8]
    assert complete


def test_connection_hub_arguments() -> None:
    with pytest.raises(ValueError, match="retention"):
        ConnectionEventHub(retention=0)
    with pytest.raises(ValueError, match="first_id"):
        ConnectionEventHub(first_id=0)


async def test_published_while_consumer_runs_concurrently() -> None:
    """A producer task and a consumer task: every id arrives once, in order."""
    hub = ConnectionEventHub(buffer_size=10_000)
    sub = hub.subscribe()

    async def produce() -> None:
        for i in range(2000):
            ev(hub, P1 if i % 2 else P2, S.CONNECTING)
            if i % 50 == 0:
                await asyncio.sleep(0)
        hub.close()

    async def consume() -> list[int]:
        return [e.id async for e in sub]

    ids, _ = await asyncio.wait_for(asyncio.gather(consume(), produce()), TIMEOUT)
    assert ids == list(range(1, 2001))


@settings(max_examples=100, deadline=None)
@given(
    retention=st.integers(1, 20),
    n=st.integers(0, 60),
    cursor=st.integers(-2, 70),
    buffer=st.integers(1, 10),
)
def test_resume_properties(retention: int, n: int, cursor: int, buffer: int) -> None:
    rng = random.Random(n)
    hub = ConnectionEventHub(buffer_size=buffer, retention=retention)
    sub = hub.subscribe()
    for _ in range(n):
        ev(hub, rng.choice([P1, P2, P3]), S.CONNECTING)
    events, complete = hub.events_since(cursor)
    ids = [e.id for e in events]
    assert ids == sorted(set(ids))
    assert all(i > cursor for i in ids)
    assert len(ids) <= retention
    if complete:
        assert ids == list(range(max(cursor, 0) + 1, n + 1))
    else:
        assert cursor > n or (n > retention and cursor < n - retention)
    # the live subscription kept the newest `buffer` events and counted the rest
    assert sub.pending == min(n, buffer)
    assert sub.dropped == max(0, n - buffer)


async def test_on_drop_unsubscribing_another_subscription_mid_publish() -> None:
    subs: list[Subscription[int]] = []
    hub: EventHub[int] = EventHub(buffer_size=1, on_drop=lambda s, i, r: subs[1].unsubscribe())
    subs.extend([hub.subscribe(), hub.subscribe()])
    hub.publish(1)
    assert hub.publish(2) == 1  # subs[0] overflows, its callback ends subs[1] first
    assert subs[1].pending == 0
    assert await drain(subs[1]) == []


def multiple_of(k: int) -> Callable[[int], bool]:
    return lambda x: x % k == 0


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["pub", "sub", "unsub", "take"]), st.integers(0, 7)),
        max_size=120,
    ),
    drop_oldest=st.booleans(),
)
def test_fanout_model(ops: list[tuple[str, int]], drop_oldest: bool) -> None:
    """Against a model: each subscription gets an in-order subsequence of what it matched,
    and matched == delivered + queued + dropped, whatever the interleaving."""
    overflow = Overflow.DROP_OLDEST if drop_oldest else Overflow.DROP_NEWEST
    hub: EventHub[int] = EventHub(buffer_size=3, overflow=overflow)
    subs: list[Subscription[int]] = []
    matched: list[list[int]] = []
    got: list[list[int]] = []
    counter = 0
    for op, arg in ops:
        if op == "pub":
            counter += 1
            hub.publish(counter)
            for i, s in enumerate(subs):
                if not s.closed and counter % (i % 3 + 1) == 0:
                    matched[i].append(counter)
        elif op == "sub":
            subs.append(hub.subscribe_where(multiple_of(len(subs) % 3 + 1)))
            matched.append([])
            got.append([])
        elif subs:
            i = arg % len(subs)
            if op == "unsub":
                subs[i].unsubscribe()
            else:
                item = subs[i].get_nowait()
                if item is not None:
                    got[i].append(item)
    assert hub.subscriber_count == sum(not s.closed for s in subs)
    for s, m, g in zip(subs, matched, got, strict=True):
        assert g == [x for x in m if x in set(g)]  # an in-order subsequence
        if not s.closed:
            assert len(m) == len(g) + s.pending + s.dropped
            assert s.drop_reasons == ({BUFFER_FULL: s.dropped} if s.dropped else {})


def test_cursor_from_an_earlier_run_is_incomplete_and_gets_everything_retained() -> None:
    from engine.events import run_cursor_base

    earlier = ConnectionEventHub()
    pid = _peer_for_run_tests()
    for _ in range(3):
        earlier.emit(pid, ConnectionState.CONNECTING, ConnectionState.DISCONNECTED, 0.0)
    old_cursor = earlier.last_id  # 3: what a client of the earlier run holds

    hub = ConnectionEventHub(first_id=run_cursor_base())
    assert hub.first_id > old_cursor
    assert hub.events_since(old_cursor) == ([], False)  # nothing yet, but not resumable
    for _ in range(5):  # the new run has already passed the old cursor's value
        hub.emit(pid, ConnectionState.CONNECTING, ConnectionState.DISCONNECTED, 0.0)
    events, complete = hub.events_since(old_cursor)
    assert complete is False
    assert [e.id for e in events] == list(range(hub.first_id, hub.last_id + 1))
    # Cursor 0 still means "from this run's start", and is complete.
    events, complete = hub.events_since(0)
    assert complete is True
    assert len(events) == 5
    # A cursor of this run resumes exactly.
    events, complete = hub.events_since(hub.first_id + 1)
    assert complete is True
    assert [e.id for e in events] == list(range(hub.first_id + 2, hub.last_id + 1))


def _peer_for_run_tests() -> PeerId:
    from engine.crypto import Identity

    return Identity.from_seed(bytes(32)).peer_id
