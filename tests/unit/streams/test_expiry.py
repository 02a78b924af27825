"""The deadline index: due keys in deadline order, per partition, rebuilt on demand."""

from __future__ import annotations

from streams.expiry import ExpiryIndex


def test_pop_due_returns_only_passed_deadlines_in_order_and_once() -> None:
    index = ExpiryIndex()
    index.push(0, 300, b"c")
    index.push(0, 100, b"a")
    index.push(0, 200, b"b")
    index.push(1, 50, b"other-partition")
    assert index.pop_due(0, 99) == []
    assert index.pop_due(0, 200) == [b"a", b"b"]
    assert index.pop_due(0, 1_000) == [b"c"]
    assert index.pop_due(0, 1_000) == []
    assert index.pop_due(1, 50) == [b"other-partition"]
    assert index.pop_due(7, 10**12) == []


def test_rebuild_replaces_and_invalidate_forgets() -> None:
    index = ExpiryIndex()
    assert not index.built
    index.push(0, 1, b"stale")
    index.rebuild([(0, 10, b"x"), (2, 5, b"y"), (0, 3, b"z")])
    assert index.built
    assert len(index) == 3
    assert index.pop_due(0, 100) == [b"z", b"x"]
    assert index.pop_due(2, 100) == [b"y"]
    index.invalidate()
    assert not index.built
    assert len(index) == 0
