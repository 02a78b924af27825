"""Faust's aiokafka consumer, with the edges sessionflow relies on owned, each with its reason.

Subclasses of faust-streaming 0.15.3's `Consumer` and `AIOKafkaConsumerThread` (the transport's
documented extension point, streams/runtime/transport.py); streams/runtime/compat.py checks at
start-up that every method overridden or read here is still the one Faust has.

1. Batches, not events. Faust's drain loop hands every fetched record, one at a time, through a
   queue to a stream that acks it back; that path alone costs more than all of sessionflow's
   work per event (bench/results). `_drain_messages` instead hands each fetch's records of the
   source topics to the runner (streams/runtime/runner.py) as they came from aiokafka.
2. Nothing fetched is dropped. A fetch asks only for the partitions active when it started (a
   copy: Faust hands aiokafka its live set, which recovery empties while the fetch waits, and
   aiokafka reads an empty set as "every partition"). Records that are not applied (the runner
   refused them, the flow stopped) send their partition back to the first of them.
3. The seek at the end of recovery (issue 17). `Recovery.on_recovery_completed` seeks the stream
   partitions to their committed offsets while the flow runs, then clears every stream's queue
   as it resumes the flow: a record fetched after its partition's seek was lost. And
   `seek_to_committed` leaves a partition without a committed offset where it is: what Faust
   dropped from it before the seek was never read again. `perform_seek` stops the flow first,
   seeks such partitions to their beginning (the group's reset policy is earliest), and only then
   tells the runner it may apply this generation's records, from these positions.
4. Changelog ends come from the broker. Before restoring a table partition Faust asks for the
   changelog's end; in exactly-once mode it takes the consumer's cached last stable offset,
   unknown (-1) for a partition not fetched since the rebalance, and recovery then skips what
   another worker wrote meanwhile or stops with a ConsistencyError.
5. Commits are the runner's, under its gate (a transaction ends between units), including the
   final one when the worker stops; a revocation first commits and closes the transactional
   producers (Faust drops a revoked partition's progress before anything commits it).
6. No livelock warnings: Faust's detector watches its streams' acks, which no longer happen; the
   worker's own stall gauge and readiness (streams/register.py, pages.py) watch the committed offsets.
7. Changelog records (recovery, standby replicas) go to the table a fetch at a time, not one by
   one through Faust's recovery queue (streams/runtime/restore.py).
8. Fetches wait briefly at the broker. aiokafka keeps one fetch in flight per broker and leaves
   out of it the partitions whose records are still buffered: right after a fetch that brought
   every raw partition, the next one asks only for partitions with nothing to read (the ticks),
   and the broker holds it for the whole wait while new raw records queue behind it. Faust
   hard-codes that wait at 1.5 s; B4 then saw fetches of nothing lasting a second, followed by
   ~660 records at once, and latencies of 1-2 s in both guarantees. The wait is the app's
   `fetch_max_wait_ms` (SESSIONFLOW_FETCH_MAX_WAIT_MS) instead.
9. Stable offsets, with one transaction per worker: the group coordinator fetches committed
   offsets with `require_stable` (streams/runtime/worker_txn.py), installed as the consumer
   starts, before the group has subscriptions and so before any offset is fetched.
10. A commit that outlasts the interval is not a fault. mode's timer warns "Timer commit is
   overlapping" at every commit longer than the commit interval; at 0.1 s a slow commit under
   load does that several times a minute, and the fault gate (sessionflow/logs.py) reported them
   as "still failing". `quiet_commit_overlaps` makes them DEBUG records: the commit's time is
   `sessionflow_commit_seconds`, which alert SessionflowCommitsSlow watches.
11. A table partition is restored only past every transaction still open on its changelog.
   Exactly-once reads the changelog read_committed, and its end (4) is then the last stable
   offset: the first offset of the oldest transaction still open, and nothing past it can be read
   until that transaction ends. A worker paused or cut off past its session timeout (a zombie),
   or killed, can leave one open there while its partitions move on, until the broker aborts it
   at its timeout. The partition's new owner then commits its own records past it, and at the
   next rebalance within that time (the zombie rejoining is one) the store's persisted offset lay
   past the stable end: Faust stopped the worker with a ConsistencyError (reliability scenario 15
   saw it), or a worker restoring the partition afresh would have stopped at the open
   transaction, short of records committed after it. So the ends of active partitions are read
   once more without isolation (their high watermarks, through a second, plain consumer), and
   while a partition's stable end lies below that, the recovery waits for it (at most Faust's
   time for the lookup less `STABLE_WAIT_MARGIN_S`): after the transaction ends, everything
   written before the rebalance is either committed and read, or aborted and skipped.
12. The wait in (11) is short. With one transaction per worker, a transaction open on a
   partition this worker now owns is a lost worker's (a live one commits before it rejoins), and
   nothing but the broker's timeout would end it: the recovery first fences that worker's
   transactional id, which aborts the transaction at once, as opening a partition's id does with
   one transaction per partition (streams/runtime/fencing.py). Both steps live in
   streams/runtime/stable_ends.py.
13. A failed metadata update waits the retry backoff. aiokafka's fetcher, finding a partition
   without a leader, asks for a metadata update, awaits it and asks again; while the broker is
   down every update fails at once, and the worker spun a core for a whole outage (reliability
   scenario 12). `backoff_failed_metadata_updates` (sessionflow/metadata_backoff.py, which says
   why and how much) makes the consumer's client sleep `retry_backoff_ms` after each failure;
   the worker's producers (producers.py) and Faust's own, the expiry ticks' (transport.py), have
   the same loop and the same remedy.
14. A standby partition's end is not waited for as in (11): Faust builds the standbys' ends after
   the active partitions are restored and before the worker's streams start, so a wait there
   would hold them, and a standby replica reads on as the changelog grows anyway. Nor is anyone
   fenced for it: its new active owner may be live, with a transaction open there already. But
   a worker that owned the partition in the last generation holds, in its store, records it
   committed past a lost worker's open transaction, and Faust stopped the worker with a
   ConsistencyError where the store's offset lay past the standby's stable end (reliability
   scenario 15 on December 6: a worker cut off, rejoining). Such a standby's end is the store's,
   where the partition's high watermark holds it (a store past that is Faust's real
   inconsistency, a changelog deleted under it); its replica reads on as the transaction ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ConsumerStoppedError, IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.transports import TPorTopicSet
from mode import ServiceT

from sessionflow.metadata_backoff import backoff_failed_metadata_updates
from streams.runtime.restore import restorer_of
from streams.runtime.runner import Record, Runner
from streams.runtime.stable_ends import StableEnds
from streams.runtime.worker_txn import fetch_stable_offsets

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 1.0
# A fetch while only changelog partitions are active (a recovery): larger than a processing
# batch, since applying it is one write batch per partition (7).
RESTORE_MAX_RECORDS = 10_000
# mode's timer warns so when one run of its body outlasts the interval (10).
MODE_TIMERS_LOGGER = "mode.timers"
OVERLAP_MESSAGE = "Timer %s is overlapping (interval=%r runtime=%r)"


class _CommitOverlaps(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg != OVERLAP_MESSAGE or not isinstance(args, tuple) or args[:1] != ("commit",):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_commit_overlaps() -> None:  # (10)
    """mode's warning of a commit longer than the commit interval becomes a DEBUG record."""
    logging.getLogger(MODE_TIMERS_LOGGER).addFilter(_CommitOverlaps())


@dataclass(frozen=True, slots=True)
class Fetched:
    records: Mapping[TP, Sequence[Any]]
    # The consumer's position of every partition asked for, right after the fetch.
    positions: Mapping[TP, int]


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """The thread that runs aiokafka's consumer."""

    _stable_ends: StableEnds | None = None  # (11, 12)

    async def fetch(self, partitions: frozenset[TP], max_records: int) -> Fetched:
        result: Fetched = await self.call_thread(self._fetch, partitions, max_records)
        return result

    async def _fetch(self, partitions: frozenset[TP], max_records: int) -> Fetched:
        consumer = self._ensure_consumer()
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise ConsumerStoppedError()
        asked = set(partitions)  # our own copy (2)
        with fetcher._subscriptions.fetch_context():
            records = await fetcher.fetched_records(
                asked, timeout=FETCH_TIMEOUT_S, max_records=max_records
            )
        assignment = fetcher._subscriptions.subscription
        positions: dict[TP, int] = {}
        if assignment is not None and assignment.assignment is not None:
            for tp in asked:
                state = assignment.assignment.state_value(tp)
                if state is not None and state.has_valid_position:
                    positions[tp] = state.position
        return Fetched(records, positions)

    async def request_rejoin(self) -> None:
        """Have the consumer rejoin its group (after uncommitted work was dropped: runner.py)."""
        await self.call_thread(self._request_rejoin)

    async def _request_rejoin(self) -> None:
        self._ensure_consumer()._coordinator.request_rejoin()

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        ends: dict[TP, int] = dict(await self._ensure_consumer().end_offsets(partitions))  # (4)
        if self.consumer.in_transaction:
            restorer, stable = restorer_of(self.app.tables), self._stable()
            active = [tp for tp in partitions if tp in restorer.active_tps]
            await stable.wait_past_open_transactions(ends, active)  # (11, 12)
            standby = [tp for tp in partitions if tp not in restorer.active_tps]
            stored = {tp: restorer.standby_offsets.get(tp) for tp in standby}
            await stable.reach_standby_stores(ends, stored)  # (14)
        return ends

    def _stable(self) -> StableEnds:
        if self._stable_ends is None:
            self._stable_ends = StableEnds(
                self.app,
                self._ensure_consumer,
                lambda: self._create_client_consumer(cast(Any, self.transport)),
            )
        return self._stable_ends

    async def on_thread_stop(self) -> None:
        await super().on_thread_stop()
        if self._stable_ends is not None:
            await self._stable_ends.stop()

    def verify_event_path(self, now: float, tp: TP) -> None:
        return None  # (6)

    async def on_start(self) -> None:  # (9)
        await super().on_start()
        app: Any = self.app  # streams.runtime.app.App
        if self._consumer is not None and app.transaction_per_worker:
            fetch_stable_offsets(self._consumer._coordinator)

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:  # (8)
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() for its Fetcher; Faust passes no way to set it.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # type: ignore[attr-defined]  # streams.runtime.app.App
        backoff_failed_metadata_updates(consumer._client)  # (13)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """The worker's consumer: batches to the runner, nothing dropped, commits by the runner."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def runner(self) -> Runner:
        runner: Runner = self.app.runner  # type: ignore[attr-defined]  # streams.runtime.app.App
        return runner

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # (1, 2)
        thread = cast(ConsumerThread, self._thread)
        max_records = self.app.conf.broker_max_poll_records or 1000
        runner = self.runner
        try:
            while not (self.should_stop or fetcher.should_stop):
                if not self.flow_active:
                    # mode types the waitable as its own Event; an asyncio.Event waits the same.
                    await self.wait(self.can_resume_flow)  # type: ignore[arg-type]
                    continue
                active = frozenset(self._get_active_partitions())
                if not active:
                    await self.sleep(0.1)
                    continue
                generation = self.app.consumer_generation_id
                restoring = not any(runner.is_source(tp.topic) for tp in active)
                fetched = await thread.fetch(
                    active, RESTORE_MAX_RECORDS if restoring else max_records
                )
                await self._deliver(fetched, generation)
        except ConsumerStoppedError:
            if self.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.app.should_stop:
                return
            raise

    async def _deliver(self, fetched: Fetched, generation: int) -> None:
        runner = self.runner
        sources: dict[TP, Sequence[Record]] = {}
        back: dict[TP, int] = {}
        for tp, records in fetched.records.items():
            if runner.is_source(tp.topic):
                sources[tp] = records
            elif not self.flow_active:
                back[tp] = records[0].offset
        if self.flow_active:
            self._restore(fetched)
        else:
            back.update({tp: records[0].offset for tp, records in sources.items()})
        if self.flow_active and (sources or runner.ready):
            # Positions move without records too (past a transaction's commit marker).
            positions = {tp: p for tp, p in fetched.positions.items() if runner.is_source(tp.topic)}
            # Shielded: once a unit starts, a cancelled drain loop (the worker stopping) must
            # not leave it half applied; the final commit waits for it (the gate).
            back.update(
                await asyncio.shield(
                    runner.apply(sources, positions, generation, self.app.consumer_generation_id)
                )
            )
        for tp, offset in back.items():
            await self._back_to(tp, offset)

    def _restore(self, fetched: Fetched) -> None:  # (7)
        """The fetch's changelog records into the table, a partition at a time; partitions
        fetched without records too, when their position moved (past commit markers)."""
        restorer = restorer_of(self.app.tables)
        for tp, position in fetched.positions.items():
            if not self.runner.is_source(tp.topic):
                restorer.restore(tp, fetched.records.get(tp, ()), position)

    async def _back_to(self, tp: TP, offset: int) -> None:
        # No longer assigned: its next owner reads it from the committed offset.
        with contextlib.suppress(IllegalStateError, AssertionError, KeyError):
            await self._thread.seek_wait({tp: offset})

    async def perform_seek(self) -> None:  # (3)
        self.stop_flow()  # recovery resumes the flow once the queues are cleared
        generation = self.app.consumer_generation_id
        await super().perform_seek()
        stream = {tp for tp in self.assignment() if not self._is_changelog_tp(tp)}
        uncommitted = {tp for tp in stream if not self._committed_offset.get(tp)}
        if uncommitted:
            await self._thread.seek_to_beginning(*faust_aiokafka.ensure_aiokafka_TPset(uncommitted))
        positions: dict[TP, int] = {}
        for tp in stream:
            # Where each partition resumes: its committed offset, or where the reset put it.
            at = self._committed_offset.get(tp) or await self._thread.position(tp)
            if at is not None:
                positions[tp] = at
        if generation == self.app.consumer_generation_id:
            self.runner.on_seek(generation, positions)

    async def commit(
        self, topics: TPorTopicSet | None = None, start_new_transaction: bool = True
    ) -> bool:  # (5)
        runner = self.runner
        async with runner.gate.lock:
            committed = await runner.commit(begin=start_new_transaction)
        self._committed_offset.update(committed)  # Faust's view, read by perform_seek
        return bool(committed)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:  # (5)
        runner = self.runner
        async with runner.gate.lock:  # after the unit in hand, before the next
            generation = self.app.consumer_generation_id
            runner.revoke(generation)
            done = bool(await runner.commit(begin=False))
            await runner.release()
        log.info(
            "revoking generation %s: committed between units (%s)",
            generation,
            "committed" if done else "nothing new",
        )
        await super().on_partitions_revoked(revoked)

    async def on_stop(self) -> None:
        await super().on_stop()  # Faust's final commit: ours, without a new transaction
        await self.runner.producers.close()
