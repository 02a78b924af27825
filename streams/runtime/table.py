"""The table's local store, one partition at a time, as a unit of work reads and writes it.

A Faust table stays what declares the changelog topic and what recovery and the standby replicas
restore into; the runtime reads and writes its store directly, a partition at a time, and writes
the changelog itself in the partition's transaction (streams/runtime/unit.py). Faust's own write
path (`table[key] = value`) would send a changelog record outside every transaction and needs
the current Faust event to find the partition; it is never used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import rocksdict
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore

from sessionflow.raw_record import partition_for_key


class RocksDBPartition:
    """One partition's RocksDB (Faust keeps one database per table partition)."""

    def __init__(self, store: Any, partition: int) -> None:
        self._db = store._db_for_partition(partition)
        self._offset_key: bytes = store.offset_key

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry, read lazily from the snapshot the database iterator pins when it is
        created (RocksDB: an iterator sees the database as it was then)."""
        offset_key = self._offset_key
        for key, value in self._db.items():
            if key != offset_key:  # where Faust keeps the changelog offset the store holds
                yield key, value

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        self._db.write(_write_batch(changes))

    def set_persisted_offset(self, offset: int) -> None:
        """The changelog offset up to which this store holds the table (a restart restores only
        what came after it)."""
        self._db.put(self._offset_key, str(offset).encode())

    def restore(self, changes: Mapping[bytes, bytes | None], offset: int) -> None:
        """Changelog records up to `offset`, and that offset, in one write batch."""
        batch = _write_batch(changes)
        batch.put(self._offset_key, str(offset).encode())
        self._db.write(batch)

    def clear(self) -> None:
        """Every entry and the persisted offset, in one write batch: the partition is restored
        from the start of its changelog when it is next assigned."""
        self._db.write(_write_batch(dict.fromkeys(self._db.keys())))


def _write_batch(changes: Mapping[bytes, bytes | None]) -> rocksdict.WriteBatch:
    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in changes.items():
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    return batch


class MemoryPartition:
    """One partition of Faust's in-memory store (one dict for all partitions: tests, trials)."""

    def __init__(self, store: Any, partition: int, partitions: int) -> None:
        self._data: dict[bytes, bytes] = store.data
        self._partition, self._partitions = partition, partitions

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry of this partition, from a copy taken when the first is read."""
        for key, value in list(self._data.items()):
            if partition_for_key(key, self._partitions) == self._partition:
                yield key, value

    def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def set_persisted_offset(self, offset: int) -> None:
        del offset  # nothing survives a restart: recovery always reads the whole changelog

    def restore(self, changes: Mapping[bytes, bytes | None], offset: int) -> None:
        del offset
        self.write(changes)

    def clear(self) -> None:
        self.write(dict.fromkeys(key for key, _ in self.items()))


def partition_store(
    table: Any, partition: int, partitions: int
) -> RocksDBPartition | MemoryPartition:
    store = table.data
    if isinstance(store, RocksDBStore):
        return RocksDBPartition(store, partition)
    if isinstance(store, MemoryStore):
        return MemoryPartition(store, partition, partitions)
    raise TypeError(f"the runtime cannot use a {type(store).__name__} table store")
