"""The worker's local table files: trusted after a clean stop only.

The local RocksDB is written as events are processed, before their transaction commits. After a
crash (kill -9, an abort) it can hold changes whose changelog records and outputs were aborted:
a replayed event would find its session already completed and emit nothing. Kafka Streams
wipes such a store and restores it from the changelog; so do we. A clean stop leaves a marker
file; a start without the marker deletes the table files, and Faust restores them from the
(committed) changelog.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

MARKER: Final = "clean-shutdown"


def open_state(data_dir: Path, tabledir: Path) -> bool:
    """Before the worker starts: keep `tabledir` if the last stop was clean; True if kept."""
    marker = data_dir / MARKER
    if marker.exists():
        marker.unlink()
        return True
    if tabledir.exists():
        log.warning("the last stop was not clean: the local table is restored from its changelog")
        shutil.rmtree(tabledir)
    return False


def close_state(data_dir: Path) -> None:
    """After a clean stop (everything processed was committed): the table files may be kept."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).touch()
