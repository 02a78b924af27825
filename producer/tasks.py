"""The producer's background tasks (the deadline sweeper, the loop-lag timer, the readiness watch):
started at most once, ended by cancelling them and waiting until they have."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and return once it has ended: a stop that returns earlier
    could close what the task still uses. Its CancelledError is the expected end, not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Background:
    """One named task running `run()` from `start()` until `stop()`; start again after a stop."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task unless it runs (it needs a running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
