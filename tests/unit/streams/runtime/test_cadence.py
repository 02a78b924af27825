from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.runtime.cadence import MIN_GAP_SHARE, next_commit_at


def test_a_quick_commit_is_followed_one_interval_after_it_started() -> None:
    # Faust's timer would start the next at 10.13 (the interval after the commit ended).
    assert next_commit_at(10.0, 10.03, 0.1) == pytest.approx(10.1)


def test_a_commit_that_overran_its_interval_leaves_half_an_interval_to_process() -> None:
    assert next_commit_at(10.0, 10.25, 0.1) == pytest.approx(10.3)


@given(
    started=st.floats(0, 1e6),
    duration=st.floats(0, 60),
    interval=st.floats(0.001, 10),
)
def test_commits_start_at_most_an_interval_apart_unless_the_last_overran(
    started: float, duration: float, interval: float
) -> None:
    finished = started + duration
    at = next_commit_at(started, finished, interval)
    assert at >= finished + interval * MIN_GAP_SHARE - 1e-9
    assert at >= started + interval - 1e-9
    if duration <= interval * (1 - MIN_GAP_SHARE):
        assert at == pytest.approx(started + interval)
