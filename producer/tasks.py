"""Ending the producer's background tasks (the deadline sweeper, the readiness watch)."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and return once it has ended: a stop that returns earlier
    could close what the task still uses. Its CancelledError is the expected end, not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
