"""The loop-lag timer: on time while the loop is free, late by as long as the loop was blocked."""

from __future__ import annotations

import asyncio
import time

from producer.loop_lag import watch_loop_lag
from producer.tasks import Background

INTERVAL_S = 0.02
BLOCK_S = 0.15


async def test_a_blocked_loop_shows_as_lag_and_a_free_one_does_not() -> None:
    seen: list[float] = []
    lag = Background("loop-lag", lambda: watch_loop_lag(seen.append, INTERVAL_S))
    lag.start()
    await asyncio.sleep(5 * INTERVAL_S)
    before = len(seen)
    asyncio.get_running_loop().call_soon(time.sleep, BLOCK_S)  # a callback that holds the loop
    await asyncio.sleep(BLOCK_S + 3 * INTERVAL_S)
    await lag.stop()
    assert before >= 2
    # The timer due during the block ran when the block ended.
    assert max(seen[before:]) >= BLOCK_S - INTERVAL_S - 0.005, seen
    # A free loop runs it on time (a loaded machine adds a few milliseconds, not a block's worth).
    assert min(seen[:before]) < BLOCK_S / 3, seen


async def test_stop_ends_the_timer() -> None:
    seen: list[float] = []
    lag = Background("loop-lag", lambda: watch_loop_lag(seen.append, INTERVAL_S))
    lag.start()
    await asyncio.sleep(3 * INTERVAL_S)
    await lag.stop()
    count = len(seen)
    await asyncio.sleep(3 * INTERVAL_S)
    assert len(seen) == count
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag"]
