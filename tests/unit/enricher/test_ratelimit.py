"""The request-rate limit: starts spaced at least 1/rate apart, in arrival order."""

from __future__ import annotations

import asyncio
import itertools
import time

from hypothesis import given
from hypothesis import strategies as st

from enricher.ratelimit import RateLimiter, reserve


@given(
    st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=50), st.floats(0.001, 5)
)
def test_reserved_starts_are_spaced_and_never_before_the_request(
    arrivals: list[float], interval: float
) -> None:
    next_free = float("-inf")
    starts = []
    for now in sorted(arrivals):
        start, next_free = reserve(next_free, now, interval)
        assert start >= now
        starts.append(start)
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= interval - 1e-9


async def test_the_limiter_waits_in_real_time() -> None:
    limiter = RateLimiter(50)
    started = time.monotonic()
    await asyncio.gather(*(limiter.acquire() for _ in range(6)))
    assert time.monotonic() - started >= 5 / 50 - 0.005


async def test_defer_holds_every_request_back() -> None:
    limiter = RateLimiter(1000)
    limiter.defer(0.1)
    started = time.monotonic()
    waited = await limiter.acquire()
    assert waited >= 0.09
    assert time.monotonic() - started >= 0.09
