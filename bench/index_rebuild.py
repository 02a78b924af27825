"""A partition taken over: its expiry index rebuilt from a large RocksDB table, in this process.

No broker, no Faust: one partition of pending sessions in a real RocksDB (as B5's 1M sessions
leave about 83k on each of 12 partitions), and the worker's processor taking it over. What each
unit of work costs while the index is rebuilt is how long the worker does nothing else (no other
partition, no heartbeat-side work, no commit). Measured both ways in the same run, alternating:
a slice per unit (the worker's way, `streams.processor.INDEX_SCAN_SLICE`) against the whole table
in one unit (how it was done before, the baseline).

    python -m bench.index_rebuild [sessions]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import rocksdict

from bench.processor import new_processor, records
from bench.webhooks import session_plan
from streams.processor import INDEX_SCAN_SLICE
from streams.runtime.table import MemoryPartition, RocksDBPartition
from streams.runtime.unit import Unit
from streams.settings import WorkerSettings

ROUNDS = 3
_TTL_MS = int(WorkerSettings.model_fields["session_ttl_seconds"].default * 1000)
_WRITE_BATCH = 10_000


def _pending_state() -> bytes:
    """What the table stores for a realistic session.created waiting for its pair."""
    created = [
        r for r in records(session_plan(1, seed=7)) if b"session.created" in (r.value or b"")
    ]
    store = MemoryPartition(SimpleNamespace(data={}), 0, 1)
    unit = Unit(0, store)
    new_processor(_TTL_MS).process(unit, created[:1], ())
    [stored] = [v for v in unit.changes.values() if v is not None]
    return stored


def _fill(db: rocksdict.Rdict, sessions: int, stored: bytes) -> None:
    for start in range(0, sessions, _WRITE_BATCH):
        batch = rocksdict.WriteBatch(raw_mode=True)
        for _ in range(start, min(sessions, start + _WRITE_BATCH)):
            batch.put(str(uuid.uuid4()).encode(), stored)
        db.write(batch)


def _take_over(partition: RocksDBPartition, scan_slice: int, sessions: int) -> dict[str, float]:
    """Units of the taken-over partition until its index is whole: the longest and the sum."""
    processor = new_processor(_TTL_MS, scan_slice)
    units: list[float] = []
    while not processor.index.built(0):
        started = time.perf_counter()
        processor.process(Unit(0, partition), (), ())
        units.append(time.perf_counter() - started)
    indexed = len(processor.index.pop_due(0, 2**62))
    if indexed != sessions:
        raise RuntimeError(f"the rebuilt index holds {indexed} of {sessions} sessions")
    return {
        "longest_unit_ms": max(units) * 1000,
        "total_ms": sum(units) * 1000,
        "units": len(units),
    }


def run(sessions: int, rounds: int = ROUNDS, scan_slice: int = INDEX_SCAN_SLICE) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sessionflow-index-") as scratch:
        db = rocksdict.Rdict(str(Path(scratch) / "p0.db"), options=rocksdict.Options(raw_mode=True))
        try:
            _fill(db, sessions, _pending_state())
            partition = RocksDBPartition(
                SimpleNamespace(_db_for_partition=lambda _: db, offset_key=b"__offset__"), 0
            )
            sliced: list[dict[str, float]] = []
            whole: list[dict[str, float]] = []
            for _ in range(rounds):
                sliced.append(_take_over(partition, scan_slice, sessions))
                whole.append(_take_over(partition, sessions + 1, sessions))
        finally:
            db.close()

    def median(runs: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 1)

    return {
        "sessions": sessions,
        "slice": scan_slice,
        "rounds": rounds,
        "sliced_longest_unit_ms": median(sliced, "longest_unit_ms"),
        "sliced_total_ms": median(sliced, "total_ms"),
        "sliced_units": sliced[0]["units"],
        "whole_unit_ms": median(whole, "longest_unit_ms"),
    }


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 83_334))
