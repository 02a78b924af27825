"""The table's RocksDB stores, all under one memory budget.

Faust keeps one RocksDB database per table partition, active and standby alike, and gives each
its own block cache and memtables (2 GiB and 3 x 64 MiB by default): the worker's memory grew
with the partitions it held and the sessions written. Here every partition's database shares one
LRU block cache, with its index and filter blocks inside it, and charges its memtables to that
same cache (RocksDB's write buffer manager): the worker's RocksDB memory is one number,
`SESSIONFLOW_ROCKSDB_MEMORY_MB`, however many partitions it holds.

Plugged in through Faust's `Table` app setting (streams/runtime/app.py): the table builds this
store for a rocksdb:// URL; Faust's store does everything else (paths, offsets, backups).
"""

from __future__ import annotations

from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.tables.table import Table as FaustTable
from faust.types import StoreT
from yarl import URL

# Memtables may take up to this share of the budget before RocksDB flushes them.
MEMTABLE_SHARE = 0.5


class SharedMemory:
    """One process's RocksDB memory: a block cache, and the memtables charged to it."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.cache = rocksdict.Cache(budget_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            int(budget_bytes * MEMTABLE_SHARE), False, self.cache
        )


class BudgetedOptions(RocksDBOptions):
    """Faust's RocksDB options (file sizes, bloom filter), with the memory of `SharedMemory`."""

    def __init__(self, memory: SharedMemory, **options: Any) -> None:
        super().__init__(use_rocksdict=True, **options)
        self.memory = memory

    def as_options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(self.memory.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.memory.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


class RocksDBStore(FaustRocksDBStore):
    """Faust's RocksDB store, opening its partitions with `BudgetedOptions`."""

    def __init__(self, *args: Any, memory: SharedMemory, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise RuntimeError("the table store needs rocksdict (the pinned RocksDB binding)")
        # Faust built its options from the table's `options` (popping its own keys first).
        self.rocksdb_options = BudgetedOptions(memory, **(self.options or {}))


class Table(FaustTable):  # type: ignore[type-arg]  # Faust's Table is generic in KT, VT
    """Faust's table; its rocksdb:// store is a `RocksDBStore` under the app's memory budget."""

    def _new_store_by_url(self, url: str | URL) -> StoreT:  # type: ignore[type-arg]
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        memory = self.app.rocksdb_memory  # type: ignore[attr-defined]  # streams.runtime.app.App
        return RocksDBStore(
            url,
            self.app,
            self,
            memory=memory,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
