"""streams.runtime.store: every RocksDB partition of the table under the app's one budget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.runtime.store import BudgetedOptions, RocksDBStore
from streams.runtime.table import partition_store
from streams.settings import WorkerSettings


@pytest.fixture
def app(tmp_path: Path, worker_app: Callable[[WorkerSettings], Any]) -> Any:
    return worker_app(
        WorkerSettings(
            data_dir=tmp_path, topic_namespace="unit.", partitions=4, rocksdb_memory_mb=16
        )
    )


def test_every_partition_opens_with_the_apps_one_memory_budget(app: Any) -> None:
    table = next(iter(app.tables.values()))
    store = table.data
    assert isinstance(store, RocksDBStore)
    assert isinstance(store.rocksdb_options, BudgetedOptions)
    assert store.rocksdb_options.memory is app.rocksdb_memory
    assert app.rocksdb_memory.budget_bytes == 16 * 1024**2
    # The table's own options still apply (memtable size), Faust's keys taken out.
    assert store.rocksdb_options.write_buffer_size == 4 * 1024**2

    before = app.rocksdb_memory.cache.get_usage()
    for partition in range(4):
        part = partition_store(table, partition, 4)
        part.write({f"s-{partition}-{i}".encode(): b"x" * 512 for i in range(200)})
        assert part.get(f"s-{partition}-7".encode()) == b"x" * 512
    # The memtables of all four databases are charged to the one shared cache.
    assert app.rocksdb_memory.cache.get_usage() > before
    assert app.rocksdb_memory.cache.get_usage() <= app.rocksdb_memory.budget_bytes
    for db in store._dbs.values():
        db.close()
