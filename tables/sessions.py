"""The sessions table: session id -> the core's encoded SessionState (pending half or marker).

Faust writes a table's changelog with its plain producer, outside the transaction of the event
that changed the table (faust-streaming 0.15: `Topic.publish_message` passes no transactional
id). A crash between the changelog write and the commit then leaves a changelog that says a
session was completed while its completed record was aborted: the replayed events find the
marker and emit nothing. So this table sends no changelog of its own; the processor writes each
change to the changelog in the partition's transaction (streams/processor.py, `Changelog`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Final

import faust

# Each table partition is its own RocksDB. Faust's defaults give every one 3 x 64 MiB of
# memtables and a 2 GiB block cache: with 12 partitions the worker's memory grows to gigabytes
# with the pending sessions (bench B5). Small memtables flush to disk early; reads of a session
# are rare (twice in its life), so a small cache costs little. Measured in bench/results.
ROCKSDB_OPTIONS: Final = {
    "write_buffer_size": 4 * 1024**2,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024**2,
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
    setattr(table, "send_changelog", _written_by_the_processor)  # noqa: B010  (a method, replaced)
    return table


def _written_by_the_processor(partition: int | None, *args: Any, **kwargs: Any) -> Any:
    # Faust's table reads only the partition of what a changelog send returns.
    return SimpleNamespace(message=SimpleNamespace(partition=partition))
