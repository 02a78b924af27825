"""Pause a process (SIGSTOP) and know when it is paused: every thread stopped, not just signalled.

kill(SIGSTOP) returns once the signal is queued. The kernel then wakes one thread, and that thread
stops the others, so a process with many threads (a broker's JVM has about a hundred) keeps
working for milliseconds after the call returned: 2-15 ms until the local broker's last thread
stopped, measured. Reliability scenario 13 once saw the broker acknowledge a produce begun after
the call (a 202 inside its freeze window); producing one message at a time to the local broker
reproduced it in 3 of 12 freezes, with acknowledgements for messages produced up to 1.2 ms after
kill returned. So a fault window counts from `pause`'s return, when the process runs no code.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

# Plenty: the stop takes milliseconds, a few more on a loaded 2-core machine.
STOP_TIMEOUT_S = 5.0
# A thread that runs no more code: stopped, or gone (a zombie thread until it is reaped).
_NOT_RUNNING = frozenset("TZX")


def thread_states(pid: int) -> list[str]:
    """The state letter of each of the process's threads (proc(5): R, S, D, T, Z...)."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread exited meanwhile
            continue
        states.append(stat.rsplit(")", 1)[1].split()[0])  # the name in () may hold spaces
    return states


def stopped(pid: int) -> bool:
    return all(state in _NOT_RUNNING for state in thread_states(pid))


async def pause(pid: int, timeout_s: float = STOP_TIMEOUT_S) -> float:
    """SIGSTOP, then wait until every thread is stopped; the seconds that took."""
    os.kill(pid, signal.SIGSTOP)
    signalled = time.monotonic()
    while not stopped(pid):
        if time.monotonic() - signalled > timeout_s:
            raise AssertionError(f"process {pid} not stopped {timeout_s:.0f} s after SIGSTOP")
        await asyncio.sleep(0.001)
    return time.monotonic() - signalled


def resume(pid: int) -> None:
    """SIGCONT: the kernel sets every thread running again before the call returns."""
    os.kill(pid, signal.SIGCONT)


@asynccontextmanager
async def paused(pid: int) -> AsyncIterator[float]:
    """The process is stopped for the body, and resumed whatever the body raised; the body gets
    the seconds the stop took."""
    try:
        yield await pause(pid)
    finally:
        resume(pid)
