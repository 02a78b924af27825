"""Ticks, the expiry horizon they allow, and the deadline index."""

from __future__ import annotations

import pytest

from streams.expiry import (
    ExpiryIndex,
    RawProgress,
    Tick,
    TickDecodeError,
    decode_tick,
    encode_tick,
)


def test_pop_due_returns_only_passed_deadlines_in_order_and_once() -> None:
    index = ExpiryIndex(resolution_ms=1)
    index.push(0, 300, b"c")
    index.push(0, 100, b"a")
    index.push(0, 200, b"b")
    index.push(1, 50, b"other-partition")
    assert index.pop_due(0, 99) == []
    assert index.pop_due(0, 200) == [b"a", b"b"]
    assert index.pop_due(0, 1_000) == [b"c"]
    assert index.pop_due(0, 1_000) == []
    assert index.pop_due(1, 50) == [b"other-partition"]
    assert index.pop_due(7, 10**12) == []


def test_slots_are_due_once_wholly_passed_never_before_a_deadline() -> None:
    index = ExpiryIndex()  # one-second slots
    index.push(0, 1_000, b"on-the-second")
    index.push(0, 1_001, b"just-after")
    index.push(0, 2_000, b"end-of-slot")
    long_key = b"k" * 70_000  # longer than any 2-byte length could say
    index.push(0, 1_500, long_key)
    assert index.pop_due(0, 999) == []
    assert index.pop_due(0, 1_000) == [b"on-the-second"]
    assert index.pop_due(0, 1_999) == []  # 1_001 and 1_500 are due, but their slot is not over
    assert index.pop_due(0, 2_000) == [b"just-after", b"end-of-slot", long_key]  # as pushed


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="resolution_ms"):
        ExpiryIndex(resolution_ms=0)


def test_reset_empties_one_partition_until_marked_built_and_invalidate_forgets_all() -> None:
    index = ExpiryIndex(resolution_ms=1)
    assert not index.built(0)
    index.push(0, 1, b"stale")
    index.push(2, 5, b"y")
    index.reset(0)
    index.push(0, 10, b"x")
    assert not index.built(0)
    index.push(0, 3, b"z")
    index.mark_built(0)
    assert index.built(0)
    assert not index.built(2)  # each partition is rebuilt from its own table
    assert index.pop_due(0, 100) == [b"z", b"x"]
    assert index.pop_due(2, 100) == [b"y"]
    index.invalidate()
    assert not index.built(0)
    assert index.pop_due(0, 10**12) == []


def test_ticks_round_trip() -> None:
    tick = Tick(at_ms=1_700_000_000_000, raw_end=42)
    assert decode_tick(encode_tick(tick)) == tick
    assert decode_tick(encode_tick(Tick(5, None))) == Tick(5, None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"soon",
        b"1700000000000",
        b"[1]",
        b"[1,2,3]",
        b'["1",2]',
        b"[1,true]",
        b"true",
        b"1.5",
        b"{}",
    ],
)
def test_anything_else_on_the_ticks_topic_is_refused(data: bytes) -> None:
    with pytest.raises(TickDecodeError):
        decode_tick(data)


def _progress() -> RawProgress:
    return RawProgress(grace_ms=100, settle_ms=1_000)


def test_a_partition_caught_up_with_the_tick_may_expire_up_to_the_tick_less_the_grace() -> None:
    progress = _progress()
    progress.processed(3, 9)
    assert progress.horizon_ms(3, Tick(at_ms=5_000, raw_end=10), now_ms=0) == 4_900
    assert progress.horizon_ms(3, Tick(at_ms=5_000, raw_end=11), now_ms=0) is None
    assert progress.horizon_ms(4, Tick(at_ms=5_000, raw_end=0), now_ms=0) is None  # never read
    assert progress.horizon_ms(3, Tick(at_ms=5_000, raw_end=None), now_ms=0) is None


def test_a_gap_that_stands_still_long_enough_counts_as_caught_up() -> None:
    progress = _progress()
    progress.processed(0, 9)
    assert progress.horizon_ms(0, Tick(1_000, 12), now_ms=0) is None
    assert progress.horizon_ms(0, Tick(2_000, 12), now_ms=999) is None
    assert progress.horizon_ms(0, Tick(3_000, 12), now_ms=1_000) == 2_900
    # Any movement starts the wait again: the end ...
    assert progress.horizon_ms(0, Tick(4_000, 13), now_ms=1_500) is None
    assert progress.horizon_ms(0, Tick(5_000, 13), now_ms=2_499) is None
    # ... or the position.
    progress.processed(0, 10)
    assert progress.horizon_ms(0, Tick(6_000, 13), now_ms=2_600) is None
    assert progress.horizon_ms(0, Tick(7_000, 13), now_ms=3_600) == 6_900


def test_reset_forgets_positions() -> None:
    progress = _progress()
    progress.processed(0, 9)
    progress.processed(0, 3)  # never backwards
    assert progress.horizon_ms(0, Tick(1_000, 10), now_ms=0) == 900
    progress.reset()
    assert progress.horizon_ms(0, Tick(1_000, 10), now_ms=0) is None
