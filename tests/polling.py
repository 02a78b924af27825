"""The one poller of the tests: wait for a condition with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from tests.conftest import TIMEOUT_S


async def wait_until(
    check: Callable[[], Awaitable[object]] | Callable[[], object],
    what: str,
    timeout_s: float = TIMEOUT_S,
) -> None:
    """Poll `check` until it is truthy, or fail after the deadline. A coroutine function is
    awaited; a plain one runs in a thread, since it may block (an HTTP probe, a log read)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if inspect.iscoroutinefunction(check):
            done = await check()
        else:
            done = await asyncio.to_thread(check)
            if inspect.iscoroutine(done):  # a lambda around a coroutine: truthy, never awaited
                done.close()
                raise TypeError(f"{what}: pass the async function itself, not a lambda calling it")
        if done:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for: {what}")
