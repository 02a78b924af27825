"""streams.runtime.restore: changelog records applied a fetch at a time, recovery's bookkeeping
moved as Faust's own loop moves it (the worker's app, its memory store, no broker)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from streams.runtime.restore import Restorer
from streams.settings import WorkerSettings


@pytest.fixture
def app(tmp_path: Path, worker_app: Callable[[WorkerSettings], Any]) -> Any:
    return worker_app(
        WorkerSettings(
            table_store="memory", data_dir=tmp_path, topic_namespace="unit.", partitions=2
        )
    )


def record(offset: int, key: bytes, value: bytes | None) -> Any:
    return SimpleNamespace(offset=offset, key=key, value=value, headers=())


def setup(app: Any, *, standby: bool = False) -> tuple[Restorer, Any, TP]:
    recovery = app.tables.recovery
    assert isinstance(recovery, Restorer)
    table = next(iter(app.tables.values()))
    tp = TP(table.changelog_topic.get_topic_name(), 0)
    if standby:
        recovery.add_standby(table, tp)
    else:
        recovery.add_active(table, tp)
    return recovery, table, tp


def test_active_records_land_in_the_store_and_recovery_ends_at_the_highwater(app: Any) -> None:
    recovery, table, tp = setup(app)
    recovery._set_recovery_started()
    recovery.active_highwaters[tp] = 5  # Faust's highwater: the end offset - 1
    recovery.restore(tp, [record(0, b"a", b"1"), record(1, b"b", b"2"), record(2, b"a", None)], 3)
    assert table.data.data == {b"b": b"2"}
    assert recovery.active_offsets[tp] == 2
    assert recovery.in_recovery
    assert not recovery.signal_recovery_end.is_set()

    # Offsets 3..5: a record, then commit markers the fetch skipped (the position is past them).
    recovery.restore(tp, [record(3, b"c", b"3")], 6)
    assert table.data.data == {b"b": b"2", b"c": b"3"}
    assert recovery.active_offsets[tp] == 5
    assert not recovery.in_recovery
    assert recovery.signal_recovery_end.is_set()


def test_records_the_store_already_holds_are_skipped(app: Any) -> None:
    recovery, table, tp = setup(app)
    recovery._set_recovery_started()
    recovery.active_highwaters[tp] = 10
    recovery.restore(tp, [record(4, b"a", b"new")], 5)
    recovery.restore(tp, [record(3, b"a", b"older"), record(4, b"a", b"again")], 5)
    assert table.data.data == {b"a": b"new"}
    assert recovery.active_offsets[tp] == 4


def test_a_new_recovery_clears_the_end_signal(app: Any) -> None:
    recovery, _, tp = setup(app)
    recovery._set_recovery_started()
    recovery.active_highwaters[tp] = 0
    recovery.restore(tp, [record(0, b"a", b"1")], 1)
    assert recovery.signal_recovery_end.is_set()
    recovery._set_recovery_started()
    assert not recovery.signal_recovery_end.is_set()


def test_standby_records_land_and_standbys_become_ready(app: Any) -> None:
    recovery, table, tp = setup(app, standby=True)
    recovery.standby_highwaters[tp] = 1
    app.tables.standbys_ready = False
    recovery.restore(tp, [record(0, b"a", b"1")], 1)
    assert not app.tables.standbys_ready
    recovery.restore(tp, [record(1, b"b", b"2")], 2)
    assert table.data.data == {b"a": b"1", b"b": b"2"}
    assert app.tables.standbys_ready
    assert not recovery.signal_recovery_end.is_set()  # a standby never ends a recovery


def test_a_partition_no_longer_ours_is_left_to_its_owner(app: Any) -> None:
    recovery, table, tp = setup(app)
    recovery.restore(TP(tp.topic, 1), [record(0, b"a", b"1")], 1)
    assert table.data.data == {}


def test_a_cleared_partition_is_restored_from_the_changelogs_start_when_assigned_again(
    app: Any,
) -> None:
    recovery, table, tp = setup(app)
    recovery.active_offsets[tp] = 41  # restored that far before its store was cleared
    recovery.forget([tp])
    recovery.add_active(table, tp)  # the next rebalance, the partition ours again
    assert recovery.active_offsets[tp] is None  # Faust's "from the earliest offset"
