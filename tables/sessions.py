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
from typing import Any

import faust


def sessions_table(app: faust.App, partitions: int) -> Any:
    # bytes in and out ("raw" codec): the core owns the encoding, Faust does no JSON work.
    table = app.Table(
        "sessions",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per session: the pending half, or a completion marker that drops late duplicates.",
    )
    setattr(table, "send_changelog", _written_by_the_processor)  # noqa: B010  (a method, replaced)
    return table


def _written_by_the_processor(partition: int | None, *args: Any, **kwargs: Any) -> Any:
    # Faust's table reads only the partition of what a changelog send returns.
    return SimpleNamespace(message=SimpleNamespace(partition=partition))
