"""How late the event loop runs what is due: the wait every request shares before it is served.

The request histogram starts timing when the handler runs, so a loop that is busy or stalled (a
long callback, a garbage collection, the process short of CPU) delays requests where no other
metric sees it; the publish histogram sees only the broker. A timer that should fire every
`interval` seconds measures that delay directly (bench/results/producer-experiments.md,
section 15, needed scripts to tell the two apart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from producer.tasks import Background

# Ten wake-ups a second: a fraction of a per-mille of a core, and often enough that a stall
# of tens of milliseconds falls on one of them in most seconds.
INTERVAL_S = 0.1


class LoopLag:
    """Wakes every `interval` seconds and reports how late it woke."""

    def __init__(self, observe: Callable[[float], None], interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self._observe = observe
        self._timer = Background("loop-lag", self._watch)

    def start(self) -> None:
        self._timer.start()

    async def stop(self) -> None:
        await self._timer.stop()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            # uvloop keeps timers in whole milliseconds: up to 1 ms late is on time.
            self._observe(max(0.0, loop.time() - due))
