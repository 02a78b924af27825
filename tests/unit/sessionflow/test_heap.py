"""sessionflow.heap: start-up objects frozen out of full collections; freed heap handed back."""

from __future__ import annotations

import ctypes.util
import gc
from collections.abc import Iterator

import pytest

from sessionflow import heap


def test_the_trimmer_runs_and_returns_nothing() -> None:
    trim = heap.heap_trimmer()
    blocks = [bytearray(4096) for _ in range(10_000)]  # freed below: something to give back
    del blocks
    assert trim() is None


def test_without_a_c_library_the_trimmer_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert heap.heap_trimmer()() is None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


@pytest.mark.usefixtures("unfrozen")
def test_start_up_objects_are_frozen_and_their_garbage_collected_first() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    Node()
    kept = Node()
    frozen = heap.freeze_startup_objects()
    assert frozen == gc.get_freeze_count() > 0
    assert not any(type(o) is Node for o in gc.get_objects())  # frozen objects are not tracked
    assert kept.me is kept
    gc.unfreeze()
    assert sum(type(o) is Node for o in gc.get_objects()) == 1  # the garbage one was collected


@pytest.fixture
def thresholds_restored() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    yield saved
    gc.set_threshold(*saved)


def test_young_collections_wait_for_more_allocations_and_the_older_ones_keep_theirs(
    thresholds_restored: tuple[int, int, int],
) -> None:
    _, middle, oldest = thresholds_restored
    heap.collect_young_less_often()
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, middle, oldest)
    before = gc.get_stats()[0]["collections"]
    held = [[i] for i in range(heap.YOUNG_THRESHOLD // 2)]  # tracked lists, all alive
    assert gc.get_stats()[0]["collections"] == before
    assert len(held) == heap.YOUNG_THRESHOLD // 2
