"""tests/pausing: when `pause` returns, every thread of the process is stopped and it makes no
progress; `resume` and `paused` set it going again."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pausing import pause, paused, resume, stopped, thread_states
from tests.polling import wait_until

THREADS = 4
# Each thread counts as fast as it can into a shared page the test reads.
_COUNTER = f"""
import mmap, struct, sys, threading
f = open(sys.argv[1], "r+b")
m = mmap.mmap(f.fileno(), 8)
def count():
    n = 0
    while True:
        n += 1
        m[0:8] = struct.pack("q", n)
for _ in range({THREADS}):
    threading.Thread(target=count, daemon=True).start()
threading.Event().wait()
"""


class Counter:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(bytes(8))
        self.proc = subprocess.Popen([sys.executable, "-c", _COUNTER, str(path)])

    def value(self) -> int:
        count: int = struct.unpack("q", self.path.read_bytes()[:8])[0]
        return count


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[Counter]:
    c = Counter(tmp_path / "count")
    try:
        yield c
    finally:
        resume(c.proc.pid)
        c.proc.kill()
        c.proc.wait()


async def _counting(c: Counter, since: int) -> None:
    await wait_until(lambda: c.value() > since, "the child counting", 30)


async def _all_counting(c: Counter) -> None:
    """Every thread started (the main one and THREADS counting) and counting: the first thread
    can count before the main one has started the others (a clean clone on a busy machine saw
    4 threads where 5 were expected)."""
    await wait_until(
        lambda: len(thread_states(c.proc.pid)) > THREADS and c.value() > 0,
        "the child's threads all counting",
        30,
    )


async def test_a_paused_process_makes_no_progress_until_resumed(counter: Counter) -> None:
    await _all_counting(counter)
    took = await pause(counter.proc.pid)
    states = thread_states(counter.proc.pid)
    assert len(states) > THREADS
    assert set(states) == {"T"}, states
    assert 0 <= took < 5
    held = counter.value()
    await asyncio.sleep(0.3)
    assert counter.value() == held, "the process counted on after pause returned"

    resume(counter.proc.pid)
    assert not stopped(counter.proc.pid)
    await _counting(counter, held)


async def test_paused_resumes_the_process_when_its_body_fails(counter: Counter) -> None:
    await _all_counting(counter)
    seen: list[bool] = []

    async def fail_while_paused() -> None:
        async with paused(counter.proc.pid):
            seen.append(stopped(counter.proc.pid))
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        await fail_while_paused()
    assert seen == [True]
    await _counting(counter, counter.value())
