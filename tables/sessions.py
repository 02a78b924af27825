"""The sessions table: session id -> the core's encoded SessionState (pending half or marker).

Declared as a Faust table for its changelog topic, its recovery and its standby replicas; the
runtime reads and writes its store directly and writes the changelog itself, in the partition's
transaction (streams/runtime/table.py says why).
"""

from __future__ import annotations

from typing import Any, Final

import faust

# Each table partition is its own RocksDB; all of them share one memory budget (the block cache
# and the memtables charged to it: streams/runtime/store.py, SESSIONFLOW_ROCKSDB_MEMORY_MB).
# Small memtables flush to disk early, so many partitions stay within it; reads of a session are
# rare (twice in its life), so a small cache costs little. Measured in bench/results.
ROCKSDB_OPTIONS: Final = {
    "write_buffer_size": 4 * 1024**2,
    "max_write_buffer_number": 2,
}


def sessions_table(app: faust.App, partitions: int) -> Any:
    # bytes in and out ("raw" codec): the core owns the encoding, Faust does no JSON work.
    table = app.Table(
        "sessions",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per session: the pending half, or a completion marker that drops late duplicates.",
        options=dict(ROCKSDB_OPTIONS),  # Faust's store takes keys out of this dict
    )
    return table
