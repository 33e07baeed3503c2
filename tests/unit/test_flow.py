"""Tests of engine.flow.FlowController: watermarks, wake-all, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import SendTimeoutError, StreamClosedError
from engine.flow import FlowController

TIMEOUT = 10.0


async def settle() -> None:
    """Let every ready task run until it blocks again (no wall-clock waiting)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def blocked_senders(fc: FlowController, n: int) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(fc.acquire()) for _ in range(n)]
    await settle()
    assert fc.waiting == n
    assert not any(t.done() for t in tasks)
    return tasks


async def test_free_below_high_watermark() -> None:
    fc = FlowController(4, 1)
    for _ in range(3):
        await fc.acquire()
    assert (fc.pending, fc.paused) == (3, False)
    await fc.acquire()
    assert (fc.pending, fc.paused) == (4, True)
    assert not fc.try_acquire()
    fc.release()
    assert fc.paused  # 3 > low: still paused (hysteresis)
    assert not fc.try_acquire()
    fc.release(2)
    assert not fc.paused  # 1 <= low
    assert fc.try_acquire()
    assert fc.pending == 2


async def test_release_at_low_hands_every_blocked_sender_a_slot_within_budget() -> None:
    fc = FlowController(10, 5)
    for _ in range(10):
        await fc.acquire()
    tasks = await blocked_senders(fc, 20)
    fc.release(4)  # pending 6 > low: nobody moves
    await settle()
    assert fc.waiting == 20
    fc.release(1)  # crosses the low watermark: waiters fill the budget back up to high
    await settle()
    assert (fc.pending, fc.waiting, fc.paused) == (10, 15, True)
    assert [t.done() for t in tasks] == [True] * 5 + [False] * 15  # in arrival order
    fc.release(5)  # the next crossing lets the next five through, and so on
    await settle()
    assert (fc.pending, fc.waiting) == (10, 10)
    fc.release(10)  # far below low: as many as the budget takes
    await settle()
    assert (fc.pending, fc.waiting) == (10, 0)
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert fc.paused  # at high again: newcomers wait


async def test_single_releases_with_low_zero_let_every_waiter_through() -> None:
    fc = FlowController(1, 0)
    await fc.acquire()
    tasks = await blocked_senders(fc, 50)
    for _ in range(50):
        fc.release()
        await settle()
        assert fc.pending == 1
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert fc.waiting == 0


async def test_grants_in_arrival_order() -> None:
    fc = FlowController(1, 0)
    await fc.acquire()
    order: list[int] = []

    async def sender(i: int) -> None:
        await fc.acquire()
        order.append(i)

    tasks = [asyncio.create_task(sender(i)) for i in range(10)]
    await settle()
    for _ in range(10):
        fc.release()
        await settle()
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert order == list(range(10))


async def test_two_hundred_blocked_senders_all_complete() -> None:
    """Plan 0.2 stress test: a writer drains; 200 senders blocked at once all finish."""
    fc = FlowController(16, 4)
    queue: asyncio.Queue[int] = asyncio.Queue()
    done: list[int] = []
    gate = asyncio.Event()

    async def sender(i: int) -> None:
        for j in range(5):
            await fc.acquire()
            queue.put_nowait(i * 10 + j)
        done.append(i)

    async def writer() -> int:
        await gate.wait()
        written = 0
        while written < 16 + 200 * 5:
            await queue.get()
            fc.release()
            written += 1
            if written % 7 == 0:
                await asyncio.sleep(0)
        return written

    for _ in range(16):  # the stream is full before the senders arrive
        await fc.acquire()
        queue.put_nowait(-1)
    w = asyncio.create_task(writer())
    senders = [asyncio.create_task(sender(i)) for i in range(200)]
    await settle()
    assert fc.waiting == 200  # every sender is blocked
    gate.set()
    written = await asyncio.wait_for(w, TIMEOUT)
    await asyncio.wait_for(asyncio.gather(*senders), TIMEOUT)
    assert written == 1016
    assert sorted(done) == list(range(200))
    assert (fc.pending, fc.waiting) == (0, 0)


async def test_timeout_raises_and_takes_nothing() -> None:
    fc = FlowController(2, 0)
    await fc.acquire()
    await fc.acquire()
    with pytest.raises(SendTimeoutError) as info:
        await fc.acquire(timeout=0.01)
    assert info.value.code == "send_timeout"
    assert (fc.pending, fc.waiting) == (2, 0)
    with pytest.raises(SendTimeoutError):
        await fc.acquire(timeout=0)
    fc.release(2)
    await fc.acquire(timeout=0)  # not paused: no waiting, no timeout
    assert fc.pending == 1


async def test_timeout_of_one_waiter_does_not_disturb_others() -> None:
    fc = FlowController(1, 0)
    await fc.acquire()
    patient = asyncio.create_task(fc.acquire())
    await settle()
    with pytest.raises(SendTimeoutError):
        await fc.acquire(timeout=0.01)
    assert fc.waiting == 1
    fc.release()
    await asyncio.wait_for(patient, TIMEOUT)
    assert fc.pending == 1


async def test_cancel_before_grant_takes_nothing() -> None:
    fc = FlowController(1, 0)
    await fc.acquire()
    task = asyncio.create_task(fc.acquire())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (fc.pending, fc.waiting) == (1, 0)
    fc.release()
    assert (fc.pending, fc.paused) == (0, False)


async def test_cancel_after_grant_gives_the_slot_back() -> None:
    fc = FlowController(3, 0)
    for _ in range(3):
        await fc.acquire()
    tasks = await blocked_senders(fc, 3)
    fc.release(3)  # all three are granted a slot (pending 3) ...
    assert fc.pending == 3
    tasks[1].cancel()  # ... and one is cancelled before it could resume
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[0] is None
    assert results[2] is None
    assert fc.pending == 2  # the cancelled waiter's slot was returned


async def test_close_fails_waiters_and_later_acquires() -> None:
    fc = FlowController(1, 0)
    await fc.acquire()
    tasks = await blocked_senders(fc, 5)
    fc.close()
    fc.close()  # idempotent
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, StreamClosedError) for r in results)
    assert results[0] is not results[1]  # each waiter gets its own exception
    assert fc.closed
    with pytest.raises(StreamClosedError):
        await fc.acquire()
    with pytest.raises(StreamClosedError):
        fc.try_acquire()
    fc.release()  # the writer may still return what it took
    assert fc.pending == 0
    assert "closed" in repr(fc)


async def test_close_with_custom_error() -> None:
    fc = FlowController(1, 0)
    await fc.acquire()
    task = asyncio.create_task(fc.acquire())
    await settle()
    boom = ConnectionResetError("peer went away")
    fc.close(boom)
    with pytest.raises(ConnectionResetError):
        await task
    with pytest.raises(ConnectionResetError):
        await fc.acquire()


def test_release_validation() -> None:
    fc = FlowController(3, 1)
    with pytest.raises(ValueError, match="cannot release"):
        fc.release()
    assert fc.try_acquire()
    with pytest.raises(ValueError, match="cannot release"):
        fc.release(2)
    with pytest.raises(ValueError, match="cannot release"):
        fc.release(-1)
    fc.release(0)
    assert fc.pending == 1


@pytest.mark.parametrize(("high", "low"), [(0, 0), (5, 5), (5, -1), (5, 6)])
def test_bad_watermarks(high: int, low: int) -> None:
    with pytest.raises(ValueError, match="watermark"):
        FlowController(high, low)


@pytest.mark.parametrize("seed", range(6))
async def test_random_cancellations_keep_accounting_exact(seed: int) -> None:
    """Senders with random timeouts and random cancellations against a draining writer."""
    rng = random.Random(seed)
    fc = FlowController(rng.randint(1, 12), 0)
    fc.low_watermark = rng.randint(0, fc.high_watermark - 1)
    queue: asyncio.Queue[int] = asyncio.Queue()
    acquired = released = 0
    outcomes = {"ok": 0, "timeout": 0, "cancelled": 0}

    async def sender() -> None:
        nonlocal acquired
        for _ in range(rng.randint(1, 6)):
            timeout = rng.choice([None, None, 0.0, 0.001, 0.005])
            try:
                await fc.acquire(timeout=timeout)
            except SendTimeoutError:
                outcomes["timeout"] += 1
                continue
            acquired += 1
            outcomes["ok"] += 1
            queue.put_nowait(1)
            # Slots handed to waiters that have not resumed yet count as pending too.
            assert fc.pending >= acquired - released

    async def writer() -> None:
        nonlocal released
        while True:
            await queue.get()
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            fc.release()
            released += 1
            assert fc.pending >= acquired - released

    w = asyncio.create_task(writer())
    tasks = [asyncio.create_task(sender()) for _ in range(150)]
    for _ in range(60):  # chaos: cancel random senders at random moments
        for _ in range(rng.randint(0, 4)):
            await asyncio.sleep(0)
        victim = rng.choice(tasks)
        if not victim.done():
            victim.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), TIMEOUT)
    outcomes["cancelled"] = sum(isinstance(r, asyncio.CancelledError) for r in results)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    # Drain what is queued, then everything taken has been returned.
    while queue.qsize():
        await asyncio.sleep(0)
    await settle()
    w.cancel()
    with pytest.raises(asyncio.CancelledError):
        await w
    assert acquired == released == outcomes["ok"]
    assert (fc.pending, fc.waiting) == (0, 0)
    assert not fc.paused
    assert outcomes["cancelled"] > 0
    assert outcomes["timeout"] > 0


@settings(max_examples=150, deadline=None)
@given(
    high=st.integers(1, 8),
    low_fraction=st.floats(0.0, 0.99),
    ops=st.lists(
        st.tuples(st.sampled_from(["send", "send", "release", "cancel", "step"]), st.integers()),
        max_size=80,
    ),
)
def test_no_lost_wakeup_model(high: int, low_fraction: float, ops: list[tuple[str, int]]) -> None:
    """After every step that lets tasks run: a blocked sender implies a pause, and pending
    equals the slots held by senders that got through (no leak, no lost wake-up)."""
    low = int(low_fraction * high)

    async def scenario() -> None:
        fc = FlowController(high, low)
        tasks: list[asyncio.Task[None]] = []
        held = 0  # slots taken by senders whose acquire() returned

        async def sender() -> None:
            nonlocal held
            await fc.acquire()
            held += 1

        for op, arg in ops:
            if op == "send":
                tasks.append(asyncio.create_task(sender()))
            elif op == "release" and held:
                n = arg % held + 1
                held -= n
                fc.release(n)
            elif op == "cancel" and tasks:
                tasks[arg % len(tasks)].cancel()
            await settle()
            assert fc.pending == held
            assert fc.waiting == sum(not t.done() for t in tasks)
            if fc.waiting:
                assert fc.paused
            assert not fc.paused or fc.pending > low
        fc.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


# -- the byte budget ---------------------------------------------------------------------


async def test_byte_budget_pauses_before_the_message_count_does() -> None:
    fc = FlowController(1000, 10, high_bytes=100, low_bytes=40)
    assert fc.try_acquire(60)
    assert not fc.paused
    assert not fc.try_acquire(41)  # 101 > 100: would not fit
    assert fc.try_acquire(40)  # exactly the budget: taken, and now paused
    assert (fc.pending, fc.pending_bytes, fc.paused) == (2, 100, True)
    waiter = asyncio.create_task(fc.acquire(size=10))
    await settle()
    fc.release(1, 40)  # 60 bytes > low 40: still paused
    await settle()
    assert not waiter.done()
    fc.release(1, 60)  # 0 bytes: the waiter is handed its slot
    await asyncio.wait_for(waiter, TIMEOUT)
    assert (fc.pending, fc.pending_bytes, fc.paused) == (1, 10, False)


async def test_message_larger_than_the_budget_goes_through_alone() -> None:
    fc = FlowController(100, 10, high_bytes=100)
    assert fc.low_bytes == 50  # default: half
    await fc.acquire(size=500)  # nothing pending: an oversized message is not refused
    assert (fc.pending_bytes, fc.paused) == (500, True)
    fc.release(1, 500)
    assert not fc.paused
    await fc.acquire(size=30)
    big = asyncio.create_task(fc.acquire(size=500))  # 30 pending: must wait until 0
    await settle()
    assert fc.paused
    assert fc.waiting == 1
    small = asyncio.create_task(fc.acquire(size=1))  # no overtaking of the big waiter
    await settle()
    assert fc.waiting == 2
    fc.release(1, 30)
    await asyncio.wait_for(big, TIMEOUT)
    assert fc.pending_bytes == 500
    assert not small.done()
    fc.release(1, 500)
    await asyncio.wait_for(small, TIMEOUT)
    assert (fc.pending, fc.pending_bytes) == (1, 1)


async def test_timed_out_big_head_lets_the_waiters_behind_it_through() -> None:
    fc = FlowController(100, 10, high_bytes=100, low_bytes=50)
    await fc.acquire(size=20)
    big = asyncio.create_task(fc.acquire(timeout=0.01, size=90))
    await settle()
    small = asyncio.create_task(fc.acquire(size=10))
    await settle()
    assert fc.waiting == 2
    with pytest.raises(SendTimeoutError):
        await big
    await asyncio.wait_for(small, TIMEOUT)  # 20 + 10 fits: no release needed
    assert (fc.pending, fc.pending_bytes, fc.waiting) == (2, 30, 0)


def test_byte_release_validation_and_bad_byte_watermarks() -> None:
    fc = FlowController(3, 1, high_bytes=10)
    assert fc.try_acquire(4)
    with pytest.raises(ValueError, match="pending bytes"):
        fc.release(1, 5)
    assert (fc.pending, fc.pending_bytes) == (1, 4)
    fc.release(1, 4)
    for kwargs in ({"high_bytes": 0}, {"high_bytes": 10, "low_bytes": 10}, {"low_bytes": 3}):
        with pytest.raises(ValueError, match="bytes"):
            FlowController(3, 1, **kwargs)
    assert "/10B" in repr(FlowController(3, 1, high_bytes=10))


async def test_two_hundred_blocked_senders_of_one_mib_stay_within_the_byte_budget() -> None:
    """200 senders of 1 MiB messages against a 4 MiB budget: all complete, and the queued
    bytes never exceed the budget (the count watermarks alone would allow 1 GiB)."""
    mib = 1024 * 1024
    fc = FlowController(1024, 256, high_bytes=4 * mib)
    queue: asyncio.Queue[int] = asyncio.Queue()
    peak = 0
    gate = asyncio.Event()

    async def sender() -> None:
        nonlocal peak
        await fc.acquire(size=mib)
        queue.put_nowait(mib)
        peak = max(peak, fc.pending_bytes)

    async def writer() -> None:
        await gate.wait()
        for _ in range(200):
            fc.release(1, await queue.get())
            await asyncio.sleep(0)

    w = asyncio.create_task(writer())
    senders = [asyncio.create_task(sender()) for _ in range(200)]
    await settle()
    assert (fc.pending_bytes, fc.waiting) == (4 * mib, 196)
    gate.set()
    await asyncio.wait_for(asyncio.gather(w, *senders), TIMEOUT)
    assert peak <= 4 * mib
    assert (fc.pending, fc.pending_bytes, fc.waiting) == (0, 0, 0)


@settings(max_examples=150, deadline=None)
@given(
    high=st.integers(1, 8),
    low_fraction=st.floats(0.0, 0.99),
    high_bytes=st.integers(1, 64),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["send", "send", "release", "cancel", "step"]), st.integers(0, 100)
        ),
        max_size=80,
    ),
)
def test_byte_budget_model(
    high: int, low_fraction: float, high_bytes: int, ops: list[tuple[str, int]]
) -> None:
    """Counts and bytes always equal what the senders that got through hold; both budgets
    hold (a message larger than the byte budget only alone); once the writer returns
    everything, every sender has got through."""
    low = int(low_fraction * high)

    async def scenario() -> None:
        fc = FlowController(high, low, high_bytes=high_bytes)
        tasks: list[asyncio.Task[None]] = []
        held: list[int] = []  # sizes held by senders whose acquire() returned

        async def sender(size: int) -> None:
            await fc.acquire(size=size)
            held.append(size)

        def release(n: int) -> None:
            sizes = [held.pop(0) for _ in range(n)]
            fc.release(n, sum(sizes))

        for op, arg in ops:
            if op == "send":
                tasks.append(asyncio.create_task(sender(arg)))
            elif op == "release" and held:
                release(arg % len(held) + 1)
            elif op == "cancel" and tasks:
                tasks[arg % len(tasks)].cancel()
            await settle()
            assert (fc.pending, fc.pending_bytes) == (len(held), sum(held))
            assert fc.pending <= high
            assert fc.pending_bytes <= high_bytes or len(held) == 1
            assert fc.waiting == sum(not t.done() for t in tasks)
            if fc.waiting:
                assert fc.paused
        for _ in range(len(tasks) + 1):  # the writer drains: nobody stays blocked
            if held:
                release(len(held))
            await settle()
        assert fc.waiting == 0
        assert all(t.done() for t in tasks)
        fc.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
