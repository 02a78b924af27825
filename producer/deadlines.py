"""Many deadlines of one length on one clock: no timer per request.

`asyncio.timeout` arms and cancels a loop timer for every request; measured in the producer's
handler that is about a quarter of its own CPU (bench/results/producer-experiments.md). Here a
deadline is an entry appended to a deque (they expire in the order they were armed, all having
the same length), and one task sweeps the expired ones every `resolution` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from producer.tasks import Background


class Deadline:
    """One armed deadline; `expired` tells, after the fact, whether it fired."""

    __slots__ = ("armed", "expired", "on_expiry", "when")

    def __init__(self, when: float, on_expiry: Callable[[], object]) -> None:
        self.when = when
        self.on_expiry = on_expiry
        self.armed = True
        self.expired = False

    def disarm(self) -> None:
        self.armed = False


class Deadlines:
    """Calls each armed entry's `on_expiry` once, `seconds` (+ up to `resolution`) after arming."""

    def __init__(self, seconds: float, resolution: float = 0.1) -> None:
        self.seconds = seconds
        self.resolution = resolution
        self._entries: collections.deque[Deadline] = collections.deque()
        self._sweeper = Background("deadlines", self._sweep_forever)

    def arm(self, on_expiry: Callable[[], object]) -> Deadline:
        """A deadline from now; the sweeper starts with the first one (it needs a running loop)."""
        self._sweeper.start()
        entry = Deadline(time.monotonic() + self.seconds, on_expiry)
        self._entries.append(entry)
        return entry

    async def stop(self) -> None:
        await self._sweeper.stop()

    def sweep(self, now: float) -> int:
        """Fire what is due at `now`; drop disarmed entries at the front. How many fired."""
        entries = self._entries
        fired = 0
        while entries and (not entries[0].armed or entries[0].when <= now):
            entry = entries.popleft()
            if entry.armed:
                entry.armed = False
                entry.expired = True
                fired += 1
                entry.on_expiry()
        return fired

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resolution)
            self.sweep(time.monotonic())
