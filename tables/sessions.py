"""The sessions table: session id -> the core's encoded SessionState (pending half or marker)."""

from __future__ import annotations

from typing import Any

import faust


def sessions_table(app: faust.App, partitions: int) -> Any:
    # bytes in and out ("raw" codec): the core owns the encoding, Faust does no JSON work.
    return app.Table(
        "sessions",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        help="Per session: the pending half, or a completion marker that drops late duplicates.",
    )
