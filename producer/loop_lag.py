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

# Ten wake-ups a second: a fraction of a per-mille of a core, and often enough that a stall
# of tens of milliseconds falls on one of them in most seconds.
INTERVAL_S = 0.1


async def watch_loop_lag(observe: Callable[[float], None], interval: float = INTERVAL_S) -> None:
    """Wake every `interval` seconds and report how late each wake-up came, until cancelled
    (run it as a `producer.tasks.Background`)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        # uvloop keeps timers in whole milliseconds: up to 1 ms late is on time.
        observe(max(0.0, loop.time() - due))
