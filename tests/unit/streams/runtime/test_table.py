"""streams.runtime.table: a partition of the table's store, read and written by units."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import rocksdict
from aiokafka.partitioner import DefaultPartitioner

from sessionflow.raw_record import partition_for_key
from streams.runtime.table import MemoryPartition, RocksDBPartition

OFFSET_KEY = b"__faust\0offset__"


def test_partition_for_key_matches_kafkas_default_partitioner() -> None:
    all_partitions = list(range(12))
    for key in (f"key-{i}".encode() for i in range(50)):
        assert partition_for_key(key, 12) == DefaultPartitioner()(
            key, all_partitions, all_partitions
        )


@pytest.fixture
def rocks(tmp_path: Path) -> Iterator[RocksDBPartition]:
    options = rocksdict.Options(raw_mode=True)
    db = rocksdict.Rdict(str(tmp_path / "p3.db"), options=options)
    store = SimpleNamespace(_db_for_partition=lambda partition: db, offset_key=OFFSET_KEY)
    yield RocksDBPartition(store, 3)
    db.close()


def test_rocksdb_partition_writes_a_batch_and_hides_faust_offset_key(
    rocks: RocksDBPartition,
) -> None:
    rocks.write({b"a": b"1", b"b": b"2"})
    rocks.write({b"a": None, b"c": b"3"})
    rocks.set_persisted_offset(41)
    assert rocks.get(b"a") is None
    assert rocks.get(b"c") == b"3"
    assert dict(rocks.items()) == {b"b": b"2", b"c": b"3"}


def test_rocksdb_items_read_the_database_as_it_was_at_the_first_read(
    rocks: RocksDBPartition,
) -> None:
    # The expiry index is rebuilt from this scan across units that write to the store meanwhile.
    rocks.write({f"k{i:04}".encode(): b"old" for i in range(2000)})
    scan = rocks.items()
    assert next(scan) == (b"k0000", b"old")
    rocks.write({b"k0001": None, b"k1500": b"new", b"k9999": b"added"})
    rocks.set_persisted_offset(7)
    rest = dict(scan)
    assert len(rest) == 1999
    assert set(rest.values()) == {b"old"}


def test_memory_partition_sees_only_its_partitions_keys() -> None:
    data: dict[bytes, bytes] = {}
    store = SimpleNamespace(data=data)
    keys = [f"s-{i}".encode() for i in range(20)]
    parts = {p: MemoryPartition(store, p, 4) for p in range(4)}
    for key in keys:
        parts[partition_for_key(key, 4)].write({key: b"v"})
    for p, part in parts.items():
        assert {k for k, _ in part.items()} == {k for k in keys if partition_for_key(k, 4) == p}
    parts[0].write({k: None for k, _ in list(parts[0].items())})
    assert list(parts[0].items()) == []


def test_rocksdb_restore_writes_records_and_their_offset_in_one_batch(
    rocks: RocksDBPartition,
) -> None:
    rocks.write({b"gone": b"x"})
    rocks.restore({b"a": b"1", b"gone": None}, 17)
    assert dict(rocks.items()) == {b"a": b"1"}
    assert rocks._db.get(OFFSET_KEY) == b"17"  # Faust's persisted offset: a restart resumes here


def test_memory_restore_writes_the_records() -> None:
    store = SimpleNamespace(data={b"gone": b"x"})
    MemoryPartition(store, 0, 1).restore({b"a": b"1", b"gone": None}, 17)
    assert store.data == {b"a": b"1"}


def test_rocksdb_clear_drops_every_entry_and_the_persisted_offset(rocks: RocksDBPartition) -> None:
    rocks.restore({b"a": b"1", b"b": b"2"}, 17)
    rocks.clear()
    assert dict(rocks.items()) == {}
    assert rocks._db.get(OFFSET_KEY) is None  # Faust restores it from the changelog's start


def test_memory_clear_drops_only_its_partitions_keys() -> None:
    keys = [f"s-{i}".encode() for i in range(20)]
    store = SimpleNamespace(data=dict.fromkeys(keys, b"v"))
    MemoryPartition(store, 1, 4).clear()
    assert set(store.data) == {k for k in keys if partition_for_key(k, 4) != 1}
