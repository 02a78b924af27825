"""streams.runtime.consumer: a commit longer than the interval is a DEBUG record, not a fault
(the restore's wait for open transactions: test_stable_ends.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streams.runtime.consumer import (
    MODE_TIMERS_LOGGER,
    OVERLAP_MESSAGE,
    quiet_commit_overlaps,
)


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


COMMIT_OVERLAP = "Timer commit is overlapping (interval=0.1 runtime=0.63)"
LIVELOCK_OVERLAP = "Timer livelock is overlapping (interval=0.1 runtime=0.63)"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        # Above DEBUG a commit overlap is left out; other timers' overlaps stay warnings.
        (logging.INFO, [("WARNING", LIVELOCK_OVERLAP)]),
        # At DEBUG it is a DEBUG record.
        (logging.DEBUG, [("DEBUG", COMMIT_OVERLAP), ("WARNING", LIVELOCK_OVERLAP)]),
    ],
)
def test_a_commit_overlap_is_a_debug_record_and_others_stay_warnings(
    timers: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    level: int,
    expected: list[tuple[str, str]],
) -> None:
    timers.setLevel(level)
    with caplog.at_level(level, logger=MODE_TIMERS_LOGGER):
        for timer in ("commit", "livelock"):
            # As mode's Timer.tick logs it.
            timers.warning(OVERLAP_MESSAGE, timer, 0.1, 0.63)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == expected
