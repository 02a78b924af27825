"""cancel_and_wait: a stop returns only once the background task has ended."""

from __future__ import annotations

import asyncio

from producer.tasks import cancel_and_wait


async def test_the_task_has_ended_when_it_returns() -> None:
    ended = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert ended.is_set()


async def test_no_task_is_nothing_to_do() -> None:
    await cancel_and_wait(None)
