"""streams.stall: a partition is stalled when its committed offset stands still behind its end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.stall import StallClock


def test_a_partition_behind_and_standing_still_counts_up() -> None:
    clock = StallClock()
    assert clock.observe(5, committed=83346, end=83347, now=10.0) == 0.0
    assert clock.observe(5, committed=83346, end=83347, now=25.0) == 15.0
    # More records arriving behind it does not make it move.
    assert clock.observe(5, committed=83346, end=83400, now=40.0) == 30.0


def test_moving_or_caught_up_resets_the_clock() -> None:
    clock = StallClock()
    clock.observe(0, committed=10, end=20, now=0.0)
    assert clock.observe(0, committed=11, end=20, now=50.0) == 0.0  # it moved: slow, not stalled
    assert clock.observe(0, committed=11, end=20, now=60.0) == 10.0
    assert clock.observe(0, committed=20, end=20, now=70.0) == 0.0  # caught up
    assert clock.observe(0, committed=20, end=21, now=80.0) == 0.0  # a new record: a fresh start


def test_partitions_are_independent_and_can_be_forgotten() -> None:
    clock = StallClock()
    clock.observe(1, committed=0, end=1, now=0.0)
    clock.observe(2, committed=0, end=1, now=0.0)
    clock.forget([1])
    assert clock.observe(1, committed=0, end=1, now=9.0) == 0.0
    assert clock.observe(2, committed=0, end=1, now=9.0) == 9.0
    clock.forget()
    assert clock.observe(2, committed=0, end=1, now=20.0) == 0.0


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=30))
def test_never_negative_and_zero_whenever_caught_up(readings: list[tuple[int, int]]) -> None:
    clock = StallClock()
    for now, (committed, behind) in enumerate(readings):
        seconds = clock.observe(0, committed=committed, end=committed + behind, now=float(now))
        assert seconds >= 0.0
        if behind == 0:
            assert seconds == 0.0
