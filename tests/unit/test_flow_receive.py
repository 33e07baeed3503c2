"""Receive-side bound: subscription queues weighed in bytes (engine.events)."""

from __future__ import annotations

import asyncio

import pytest

from engine.events import BUFFER_FULL, EventHub, Overflow, Subscription


def weighed_hub(
    buffer_size: int = 100, max_bytes: int = 10, overflow: Overflow = Overflow.DROP_OLDEST
) -> tuple[EventHub[bytes], list[bytes]]:
    dropped: list[bytes] = []

    def on_drop(sub: Subscription[bytes], item: bytes, reason: str) -> None:
        assert reason == BUFFER_FULL
        dropped.append(item)

    hub: EventHub[bytes] = EventHub(
        buffer_size, overflow=overflow, on_drop=on_drop, weigh=len, max_bytes=max_bytes
    )
    return hub, dropped


async def test_oldest_items_dropped_until_the_new_one_fits() -> None:
    hub, dropped = weighed_hub(max_bytes=10)
    sub = hub.subscribe()
    for item in (b"aaa", b"bbb", b"ccc"):
        hub.publish(item)
    assert (sub.pending, sub.pending_bytes, sub.max_bytes) == (3, 9, 10)
    hub.publish(b"dddddd")  # 15 > 10: the two oldest go
    assert dropped == [b"aaa", b"bbb"]
    assert (sub.pending, sub.pending_bytes, sub.dropped) == (2, 9, 2)
    assert sub.drop_reasons == {BUFFER_FULL: 2}
    assert hub.dropped == 2
    assert await anext(sub) == b"ccc"
    assert sub.pending_bytes == 6
    assert sub.get_nowait() == b"dddddd"
    assert sub.pending_bytes == 0


async def test_an_item_heavier_than_the_bound_is_kept_alone() -> None:
    hub, dropped = weighed_hub(max_bytes=10)
    sub = hub.subscribe()
    hub.publish(b"12345")
    hub.publish(b"x" * 50)
    assert dropped == [b"12345"]
    assert (sub.pending, sub.pending_bytes) == (1, 50)
    hub.publish(b"y")  # the heavy one is dropped for the next
    assert (sub.pending, sub.pending_bytes) == (1, 1)


async def test_count_bound_still_applies_and_drop_newest_keeps_the_queue() -> None:
    hub, dropped = weighed_hub(buffer_size=2, max_bytes=1000)
    sub = hub.subscribe()
    for item in (b"a", b"b", b"c"):
        hub.publish(item)
    assert dropped == [b"a"]
    assert (sub.pending, sub.pending_bytes) == (2, 2)
    newest, lost = weighed_hub(max_bytes=4, overflow=Overflow.DROP_NEWEST)
    keep = newest.subscribe()
    newest.publish(b"abc")
    newest.publish(b"de")  # does not fit: the incoming item is the one dropped
    assert lost == [b"de"]
    assert (keep.pending, keep.pending_bytes) == (1, 3)


async def test_per_subscription_bound_and_unsubscribe_resets() -> None:
    hub, _ = weighed_hub(max_bytes=10)
    small = hub.subscribe_where(None, max_bytes=3)
    big = hub.subscribe_where(None)
    for _ in range(5):
        hub.publish(b"ab")
    assert (small.pending_bytes, big.pending_bytes) == (2, 10)
    small.unsubscribe()
    assert small.pending_bytes == 0
    unweighed: EventHub[bytes] = EventHub(4)
    plain = unweighed.subscribe()
    unweighed.publish(b"abc")
    assert (plain.pending_bytes, plain.max_bytes) == (0, None)


def test_byte_bound_validation() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        EventHub(4, max_bytes=10)  # no weigh
    with pytest.raises(ValueError, match="max_bytes"):
        EventHub(4, weigh=len, max_bytes=0)
    hub: EventHub[bytes] = EventHub(4, weigh=len)
    with pytest.raises(ValueError, match="max_bytes"):
        hub.subscribe_where(None, max_bytes=0)


async def test_waiting_consumer_gets_items_and_bytes_follow() -> None:
    hub, _ = weighed_hub(max_bytes=100)
    sub = hub.subscribe()

    async def consume() -> list[bytes]:
        return [await anext(sub) for _ in range(3)]

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0)
    for item in (b"1", b"22", b"333"):
        hub.publish(item)
    assert await asyncio.wait_for(task, 5) == [b"1", b"22", b"333"]
    assert sub.pending_bytes == 0
