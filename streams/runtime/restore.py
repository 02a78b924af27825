"""Table recovery and standby replicas, with the changelog applied a fetched batch at a time.

Faust restores a table record by record: each changelog record becomes a Faust message and an
event, goes through a queue to the recovery loop, and is written to the store in batches of
1,000; that per-record path bounded restoring a million sessions at about 10k records/s (bench
B5). Here the consumer (streams/runtime/consumer.py) hands each fetch's changelog records to
`Restorer.restore`, which writes them to the partition's store in one write batch, with the
changelog offset they bring the store to, and moves Faust's recovery bookkeeping (its per
partition offsets, the end of recovery, the standbys being ready) as Faust's loop would have.
Faust keeps everything else: which partitions to restore and from where (`_build_offsets`,
`_build_highwaters`), seeking, pausing, and resuming the streams once the tables are ready.

Completion by position. A changelog written in transactions holds a commit marker after each
transaction's records; the partition's end (its highwater) lies past the last marker, where no
record is ever read. Faust notices that only after its recovery queue stayed empty for two
5-second waits. The consumer's position after a fetch is past the markers it skipped, so a
partition whose position reached its end is restored at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from faust.tables.manager import TableManager as FaustTableManager
from faust.tables.recovery import Recovery
from faust.types import TP
from mode import Service

from streams.runtime.runner import Record
from streams.runtime.table import partition_store

log = logging.getLogger(__name__)


class Restorer(Recovery):
    """Faust's recovery service, with changelog records applied by `restore` in batches."""

    # What the current recovery (of active partitions) restored, for its closing log line.
    _restored = 0
    _writing_s = 0.0

    def restore(self, tp: TP, records: Sequence[Record], position: int | None) -> None:
        """Apply one fetch's records of changelog partition `tp` (the consumer's `position`
        after the fetch, if known), skipping those the store already holds."""
        if tp in self.active_tps:
            offsets = self.active_offsets
        elif tp in self.standby_tps:
            offsets = self.standby_offsets
        else:
            return  # no longer ours: its new owner restores it from its own offsets
        seen = offsets.get(tp)
        changes: dict[bytes, bytes | None] = {}
        last = seen
        for record in records:
            if (seen is None or record.offset > seen) and record.key is not None:
                changes[record.key] = record.value
                last = record.offset
        if changes and last is not None:
            table = self.tp_to_table[tp]
            partitions = table.partitions or self.app.conf.topic_partitions
            started = time.perf_counter()
            partition_store(table, tp.partition, partitions).restore(changes, last)
            if offsets is self.active_offsets:
                self._restored += len(changes)
                self._writing_s += time.perf_counter() - started
        reached = last
        if position is not None and (reached is None or position - 1 > reached):
            reached = position - 1  # past commit markers: no record there to wait for
        if reached is not None:
            offsets[tp] = reached
        if tp in self.active_tps and self.in_recovery and not self.need_recovery():
            self._set_recovery_ended()
            self.signal_recovery_end.set()  # _restart_recovery waits for it
            log.info(
                "table restored: %d keys in %.1f s, %.1f s of it writing them to the store",
                self._restored,
                time.monotonic() - (self._recovery_started_at or time.monotonic()),
                self._writing_s,
            )
        if not self.tables.standbys_ready and not self.standby_remaining_total():
            self.tables.on_standbys_ready()

    def forget(self, tps: Iterable[TP]) -> None:
        """How far the stores of changelog partitions `tps` were restored: they were cleared
        (streams/runtime/runner.py, a lost membership), and the next rebalance restores them from
        the changelog's start. Faust keeps these offsets for a partition assigned again and reads
        the store's persisted offset only for one it has none of."""
        for tp in tps:
            self.active_offsets.pop(tp, None)
            self.standby_offsets.pop(tp, None)

    def _set_recovery_started(self) -> None:
        # Faust's recovery loop cleared the end signal before each record; this is its only
        # clearing now: at the start of a recovery, before any of its records can arrive.
        self.signal_recovery_end.clear()
        self._restored, self._writing_s = 0, 0.0
        super()._set_recovery_started()

    @Service.task
    async def _slurp_changelogs(self) -> None:
        """Faust's per-record recovery loop, replaced: no changelog record reaches its queue
        (the consumer hands them to `restore`), so there is nothing to wait for but the stop."""
        await self.wait_until_stopped()


class TableManager(FaustTableManager):
    """Faust's table manager, with the runtime's recovery service (app setting `TableManager`)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = Restorer(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


def restorer_of(tables: Any) -> Restorer:
    """The app's recovery service (`app.tables.recovery`), the runtime's own: the consumer hands
    it changelog records, the app has it forget cleared partitions."""
    recovery = tables.recovery
    if not isinstance(recovery, Restorer):
        raise RuntimeError("the app's TableManager is not streams.runtime.restore's")
    return recovery
