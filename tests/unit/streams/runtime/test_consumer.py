"""streams.runtime.consumer: a commit longer than the interval is a DEBUG record, not a fault."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streams.runtime.consumer import MODE_TIMERS_LOGGER, OVERLAP_MESSAGE, quiet_commit_overlaps


@pytest.fixture
def timers() -> Iterator[logging.Logger]:
    """mode's timer logger with the worker's filter, as it was before afterwards."""
    logger = logging.getLogger(MODE_TIMERS_LOGGER)
    filters, level = list(logger.filters), logger.level
    quiet_commit_overlaps()
    try:
        yield logger
    finally:
        logger.filters[:] = filters
        logger.setLevel(level)


def _overlap(logger: logging.Logger, timer: str) -> None:
    # As mode's Timer.tick logs it.
    logger.warning(OVERLAP_MESSAGE, timer, 0.1, 0.63)


def test_a_commit_overlap_is_left_out_above_debug_and_others_stay_warnings(
    timers: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    timers.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger=MODE_TIMERS_LOGGER):
        _overlap(timers, "commit")
        _overlap(timers, "livelock")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Timer livelock is overlapping (interval=0.1 runtime=0.63)")
    ]


def test_at_debug_a_commit_overlap_is_a_debug_record(
    timers: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    timers.setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger=MODE_TIMERS_LOGGER):
        _overlap(timers, "commit")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "Timer commit is overlapping (interval=0.1 runtime=0.63)")
    ]
