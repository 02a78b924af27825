"""A long-running process's heap: what the garbage collector walks, what malloc keeps.

Start-up objects. A full (generation 2) collection walks every object the collector tracks, and
most of them are what start-up built and what lives as long as the process: modules, classes,
schemas, the app. Each full collection held the event loop for 55-77 ms in the worker and 26-60
ms in the producer, every few seconds under load (bench/results/worker-waits.md).
`freeze_startup_objects` moves them out of the collector's view once start-up is done, so a full
collection walks only what came after.

Young collections. CPython collects its youngest generation whenever the tracked objects
allocated since the last collection outnumber those freed by 700. A server with hundreds of
requests in flight crosses that every few dozen requests, and each collection walks what those
requests hold only to find it alive: in the producer at saturation, 5,000 young and 460 middle
collections in 10 s took 9% of the event loop's CPU and found next to no garbage.
`collect_young_less_often` raises the threshold to 50,000, which the in-flight churn does not
reach (bench/results/producer-experiments.md, section 9); cyclic garbage, never freed, counts
towards it, so no more than that many such objects can pile up before a collection.

Freed memory. glibc's malloc keeps memory a process freed, in the arenas of the threads that
allocated it, for its next allocations: the worker's consumer thread allocates every fetched
batch and the event loop frees it, so the worker's resident memory kept the high-water mark of
its busiest moments (bench B5: tens of MB over a million sessions). `malloc_trim(0)` returns
those free pages; the worker calls it on its expiry timer. Where the C library is not glibc there
is nothing to call, and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def freeze_startup_objects() -> int:
    """Collect what start-up left as garbage, then freeze every object alive now (they are never
    walked again, nor freed); how many were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%d start-up objects frozen: full collections no longer walk them", frozen)
    return frozen


# Tracked objects allocated beyond those freed before the youngest generation is collected.
YOUNG_THRESHOLD = 50_000


def collect_young_less_often() -> None:
    """Collect the youngest generation after YOUNG_THRESHOLD net allocations instead of 700; the
    older generations keep their thresholds (counted in young collections)."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    log.info("young collections after %d net allocations", YOUNG_THRESHOLD)


def heap_trimmer() -> Callable[[], None]:
    """A function that trims the heap; a no-op where the C library has no malloc_trim."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        log.info("no malloc_trim in this C library: freed heap stays with the process")
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def trim_heap() -> None:
        trim(0)

    return trim_heap
