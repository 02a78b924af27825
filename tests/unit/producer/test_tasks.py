"""cancel_and_wait and Background: a stop returns only once the background task has ended."""

from __future__ import annotations

import asyncio

from producer.tasks import Background, cancel_and_wait


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


async def test_a_background_task_runs_once_until_stopped_and_can_start_again() -> None:
    runs: list[str] = []

    async def forever() -> None:
        runs.append("started")
        await asyncio.Event().wait()

    background = Background("test", forever)
    background.start()
    background.start()  # already running: no second task
    await asyncio.sleep(0)
    assert runs == ["started"]
    assert [t for t in asyncio.all_tasks() if t.get_name() == "test"]
    await background.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test"]
    background.start()
    await asyncio.sleep(0)
    assert runs == ["started", "started"]
    await background.stop()
