"""A request-rate limit: request starts are spaced at least 1/rate apart (GCRA without burst)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def reserve(next_free_s: float, now_s: float, interval_s: float) -> tuple[float, float]:
    """(when this request may start, when the next one may): the pure core of the limiter."""
    start = max(now_s, next_free_s)
    return start, start + interval_s


class RateLimiter:
    """Shared by every fetch of a process; waiting callers are served in arrival order."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = 1.0 / rate_per_s
        self._clock = clock
        self._next_free_s = -float("inf")

    def defer(self, seconds: float) -> None:
        """Start nothing for `seconds` (the API said so with a 429 and Retry-After)."""
        self._next_free_s = max(self._next_free_s, self._clock() + seconds)

    async def acquire(self) -> float:
        """Wait for this caller's slot; returns how long it waited."""
        now = self._clock()
        start, self._next_free_s = reserve(self._next_free_s, now, self.interval_s)
        wait = start - now
        if wait > 0:
            await asyncio.sleep(wait)
        return wait
