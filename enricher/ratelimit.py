"""A request-rate limit: request starts are spaced at least 1/rate apart (GCRA without burst).

Spaced as they happen, not as they were planned: a caller takes its start only once it runs,
and the next start is one interval after that. Slots planned ahead and slept for would all fall
due together after a stall of the event loop (a long callback, a collection, a busy machine),
and the callers would start in a burst that makes up the lost time: seen as 6 requests within
171 ms at 20 per second in a clean-clone run (`test_the_rate_limit_spaces_requests`).
"""

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
        self._turns = asyncio.Lock()  # first come, first served

    def defer(self, seconds: float) -> None:
        """Start nothing for `seconds` (the API said so with a 429 and Retry-After)."""
        self._next_free_s = max(self._next_free_s, self._clock() + seconds)

    async def acquire(self) -> float:
        """Wait for this caller's turn and start; returns how long it waited."""
        arrived = self._clock()
        async with self._turns:
            while True:
                now = self._clock()
                start, after = reserve(self._next_free_s, now, self.interval_s)
                if start <= now:  # due now, or overdue after a stall: the next waits from here
                    self._next_free_s = after
                    return now - arrived
                await asyncio.sleep(start - now)  # a `defer` meanwhile is seen on waking
