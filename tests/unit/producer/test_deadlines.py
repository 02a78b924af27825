"""Deadlines: one sweep fires what is due, in order, once; disarmed ones never fire.

The sweeper starts with the first deadline, so even the manual sweeps run in a loop.
"""

from __future__ import annotations

import asyncio

from producer.deadlines import Deadlines


async def test_a_sweep_fires_only_what_is_due_and_each_once() -> None:
    deadlines = Deadlines(5.0)
    fired: list[str] = []
    first = deadlines.arm(lambda: fired.append("first"))
    second = deadlines.arm(lambda: fired.append("second"))
    assert deadlines.sweep(first.when - 0.001) == 0
    assert deadlines.sweep(first.when) == 1
    assert (fired, first.expired, second.expired) == (["first"], True, False)
    assert deadlines.sweep(second.when + 10) == 1
    assert deadlines.sweep(second.when + 20) == 0
    assert fired == ["first", "second"]
    await deadlines.stop()


async def test_a_disarmed_deadline_never_fires() -> None:
    deadlines = Deadlines(5.0)
    fired: list[int] = []
    entry = deadlines.arm(lambda: fired.append(1))
    entry.disarm()
    assert deadlines.sweep(entry.when + 1) == 0
    assert not entry.expired
    assert fired == []
    await deadlines.stop()


async def test_the_sweeper_cancels_a_task_that_overstays() -> None:
    deadlines = Deadlines(0.05, resolution=0.01)
    task = asyncio.create_task(asyncio.sleep(10))
    entry = deadlines.arm(task.cancel)
    try:
        done, _ = await asyncio.wait([task], timeout=2)
        assert done == {task}
        assert task.cancelled()
        assert entry.expired
    finally:
        await deadlines.stop()
