"""Scenario 5: after faults of every kind and stop(), nothing is left behind."""

from __future__ import annotations

import asyncio
import logging

import psutil  # type: ignore[import-untyped]
import pytest

from engine.connection_state import ConnectionState

from .conftest import KEEPALIVE, Harness, LoopErrors, settle_tasks
from .faulty_proxy import Way
from .kit import payload

S = ConnectionState


@pytest.mark.slow
async def test_tasks_and_fds_return_to_baseline_after_every_fault_and_stop(
    chaos: Harness, hygiene: LoopErrors
) -> None:
    baseline_tasks = len(asyncio.all_tasks())
    baseline_fds = psutil.Process().num_fds()
    pair = await chaos.pair(seed=11, dial_timeout=1.0, **KEEPALIVE)
    a, b, proxy = pair.a, pair.b, pair.proxy
    a_log = chaos.events(a, b.peer_id)
    inbox = chaos.inbox(b, "messages")
    n = 0

    async def exchange(count: int) -> None:
        nonlocal n
        start = len(inbox.items)
        for _ in range(count):
            await a.send(b.peer_id, "messages", payload(n))
            n += 1
        await inbox.wait_until(lambda: len(inbox.items) == start + count, 10)

    async def recovered(mark: int) -> None:
        await a_log.wait_state(S.ESTABLISHED, 10, after=mark)
        await pair.established(10)

    await exchange(50)
    # partition, detected by keep-alive, healed
    mark = len(a_log.events)
    proxy.partition()
    await a_log.wait_state(S.RECONNECTING, 5, after=mark)
    proxy.heal()
    await recovered(mark)
    await exchange(50)
    # a drop in the middle of traffic
    mark = len(a_log.events)
    proxy.faults.arm_drop(5_000, Way.UP)
    for _ in range(200):
        if proxy.faults.kills and not proxy.faults.drop_armed:
            break
        try:
            await a.send(b.peer_id, "messages", payload(n))
        except Exception:
            break
        n += 1
        await asyncio.sleep(0)  # a yield, not a wait
    await recovered(mark)
    await exchange(50)
    # a flipped bit inside Noise
    mark = len(a_log.events)
    proxy.faults.arm_corruption(Way.DOWN, min_frame=1)
    await b.send(a.peer_id, "messages", b"x" * 100)
    await recovered(mark)
    await exchange(50)
    # latency
    proxy.faults.set_latency(0.01, 0.05)
    await exchange(50)

    during = a.health()["tasks"], b.health()["tasks"]
    for node in (a, b):
        await node.stop()
        assert node.health()["tasks"] == 0
        assert node.host.task_count == 0  # type: ignore[attr-defined]
    await proxy.close()
    await chaos.close()
    assert await settle_tasks(baseline_tasks) <= baseline_tasks
    assert psutil.Process().num_fds() <= baseline_fds
    print(f"node tasks while running: {during}; after stop: back to the baseline")


async def test_connection_losses_log_no_engine_errors(
    chaos: Harness, hygiene: LoopErrors, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="engine")
    pair = await chaos.pair(seed=3, dial_timeout=1.0, **KEEPALIVE)
    a_log = chaos.events(pair.a, pair.b.peer_id)
    mark = len(a_log.events)
    pair.proxy.partition()  # lost to the keep-alive
    await a_log.wait_state(S.RECONNECTING, 5, after=mark)
    pair.proxy.heal()
    await a_log.wait_state(S.ESTABLISHED, 10, after=mark)
    await pair.established(10)
    for _ in range(3):  # killed outright
        mark = len(a_log.events)
        pair.proxy.kill_all()
        await a_log.wait_state(S.ESTABLISHED, 10, after=mark)
        await pair.established(10)
    await chaos.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
