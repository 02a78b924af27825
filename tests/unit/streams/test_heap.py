"""streams.heap: the worker hands freed heap back to the system, where the C library can."""

from __future__ import annotations

import ctypes.util

import pytest

from streams import heap


def test_the_trimmer_runs_and_returns_nothing() -> None:
    trim = heap.heap_trimmer()
    blocks = [bytearray(4096) for _ in range(10_000)]  # freed below: something to give back
    del blocks
    assert trim() is None


def test_without_a_c_library_the_trimmer_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert heap.heap_trimmer()() is None
