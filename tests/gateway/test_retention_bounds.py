"""Retained messages are bounded in bytes, not only in count (peers choose sizes)."""

from __future__ import annotations

import pytest

from api.retention import DEFAULT_MAX_RETAINED_BYTES, MessageRetention


def test_retention_evicts_by_bytes_and_keeps_cursors_consistent() -> None:
    buf = MessageRetention(capacity=1000, max_bytes=100)
    for i in range(10):
        buf.append("p", "s", bytes([i]) * 30)  # 300 bytes offered, 100 kept
    assert buf.retained_bytes <= 100
    assert len(buf) == 3
    page = buf.read(0, limit=100)
    assert page.gap
    assert [m.seq for m in page.messages] == [8, 9, 10]
    assert buf.evicted == 7


def test_a_message_larger_than_the_budget_is_kept_alone() -> None:
    buf = MessageRetention(capacity=10, max_bytes=100)
    buf.append("p", "s", b"a" * 10)
    buf.append("p", "s", b"b" * 500)
    assert [m.seq for m in buf.read(0, limit=10).messages] == [2]
    buf.append("p", "s", b"c")
    assert [m.seq for m in buf.read(0, limit=10).messages] == [3]
    assert buf.retained_bytes == 1


def test_count_bound_still_applies() -> None:
    buf = MessageRetention(capacity=2)
    for _ in range(5):
        buf.append("p", "s", b"x")
    assert len(buf) == 2
    assert buf.max_bytes == DEFAULT_MAX_RETAINED_BYTES


def test_default_retention_of_max_size_messages_is_bounded() -> None:
    buf = MessageRetention(capacity=10_000)  # the gateway's default message_retention
    payload = bytes(1024 * 1024)  # the engine's default max_message_size
    for _ in range(100):
        buf.append("p", "s", payload)
    assert buf.retained_bytes <= DEFAULT_MAX_RETAINED_BYTES


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MessageRetention(10, max_bytes=0)


def test_cursor_from_an_earlier_run_reports_a_gap_and_reads_this_run() -> None:
    from engine.events import run_cursor_base

    buf = MessageRetention(capacity=100, first_seq=run_cursor_base())
    for i in range(5):
        buf.append("peer", "s", bytes([i]))
    first = buf.last_seq - 4
    page = buf.read(3, limit=100)  # a cursor an earlier run issued
    assert page.gap is True
    assert [m.seq for m in page.messages] == list(range(first, first + 5))
    page = buf.read(0, limit=100)  # from the start of this run: no gap
    assert page.gap is False
    assert len(page.messages) == 5
    page = buf.read(first + 1, limit=100)
    assert page.gap is False
    assert [m.seq for m in page.messages] == [first + 2, first + 3, first + 4]
    page = buf.read(buf.last_seq + 10, limit=100)  # ahead: also from an earlier run
    assert page.gap is True
    assert len(page.messages) == 5
