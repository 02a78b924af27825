"""streams.runtime.consumer: a commit longer than the interval is a DEBUG record, not a fault
(the restore's wait for open transactions: test_stable_ends.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaClient

from streams.runtime.consumer import (
    MODE_TIMERS_LOGGER,
    OVERLAP_MESSAGE,
    backoff_failed_metadata_updates,
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


async def test_a_failed_metadata_update_waits_the_retry_backoff() -> None:
    """(13) The fetcher's loop while a partition has no leader and the broker is down: ask for an
    update, await it, ask again. Each failed update now takes the retry backoff (100 ms); it was
    immediate, and the loop spun a core (reliability scenario 12)."""
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9", retry_backoff_ms=100)
    attempts = 0

    async def broker_down(cluster_metadata: Any, topics: Any) -> bool:
        nonlocal attempts
        attempts += 1
        return False

    client._metadata_update = broker_down
    backoff_failed_metadata_updates(client)
    synchronizer = asyncio.get_running_loop().create_task(client._md_synchronizer())
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert await client.force_metadata_update() is False
    finally:
        synchronizer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await synchronizer
    assert 3 <= attempts <= 7, attempts
