"""Runs the processor over fetched batches: a unit per partition, then offsets and commits.

The consumer (streams/runtime/consumer.py) hands the runner each fetch's records of the source
topics, with the consumer's position of each partition after the fetch. Under the commit gate,
the runner either applies them, partition by partition (streams/runtime/unit.py), and moves each
partition's processed position to where the fetch left it; or, when the partition is not ready
for them (recovery still seeking, a rebalance revoking this generation), refuses them: the
consumer then moves the partition back to the first refused record, and nothing fetched is ever
dropped. A commit takes the gate too, so a transaction always ends between units.

Positions are the consumer's, not `last record + 1`: a transaction's commit marker takes an
offset no record is read from, and a committed offset that stopped before it would leave the
partition one record "behind" for ever.

A transaction that can no longer commit is survived in place. When the group refuses the open
transaction's offsets because it no longer knows this worker as the member that processed them
(`MembershipLost`, one transaction per worker: a pause or a broker outage longer than the session
timeout), or the producer is fenced (the broker aborted the transaction at its timeout, which a
broker outage longer than `SESSIONFLOW_TRANSACTION_TIMEOUT_SECONDS` does; or, one transaction per
partition, the partition's next owner opened its transactional id while this worker was paused
past its session timeout, a zombie), or the producer's sender stopped on another error
(`SenderStopped`: the transaction's outcome is then the broker's to settle), the transaction
cannot commit, and the local store already holds its units' table changes. As Kafka Streams does
for a migrated task, the runner then closes its producers (the next one opened with the same
transactional id, here at the rejoin or by the partition's new owner, aborts the transaction at
once; the broker's timeout would otherwise), clears the store of every partition a unit changed
since the last commit, forgets its progress and refuses records until the partitions are sought
again; the app (streams/runtime/app.py) has recovery restore the cleared partitions from their
changelog and the consumer rejoin the group. The worker runs on, and each record is applied
again once, from the committed state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from streams.runtime.gate import CommitGate
from streams.runtime.unit import (
    Ended,
    PartitionStore,
    Sender,
    Unit,
    end_at_least_once,
    end_exactly_once,
)
from streams.stall import StallClock

log = logging.getLogger(__name__)


class Record(Protocol):
    """A fetched record as the processor reads it (aiokafka's ConsumerRecord fits)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class Producers(Sender, Protocol):
    """The runner's producers (streams/runtime/producers.py)."""

    @property
    def transactional(self) -> bool: ...
    @property
    def transaction_scope(self) -> str: ...
    async def open(self, partitions: Iterable[int]) -> None: ...
    async def commit(
        self, offsets: Mapping[int, Mapping[TopicPartition, int]], *, begin: bool
    ) -> None: ...
    async def flush(self) -> None: ...
    async def close_partitions(self) -> None: ...
    async def close(self) -> None: ...


class Processor(Protocol):
    """What the runner drives: the worker's decisions over one partition's batch."""

    def process(self, unit: Unit, raw: Sequence[Record], ticks: Sequence[Record]) -> None: ...
    def forget(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Sources:
    """The topics the runner applies (co-partitioned: a unit takes both of one partition)."""

    raw: str
    ticks: str


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """One raw partition as operators see it: its committed offset against its end, and how long
    it has stood still with records behind it (the stall gauge and readiness read it)."""

    partition: int
    committed: int
    end: int
    stalled_s: float


class Runner:
    def __init__(
        self,
        *,
        sources: Sources,
        changelog_topic: str,
        stores: Callable[[int], PartitionStore],
        producers: Producers,
        commit_offsets: Callable[[Mapping[TopicPartition, int]], Any],
        on_held_back: Callable[[str, int], None],
        on_commit: Callable[[float, int], None] = lambda seconds, partitions: None,
        on_dropped: Callable[[str, list[int], bool], Awaitable[None]] | None = None,
    ) -> None:
        self.sources = sources
        self.gate = CommitGate()
        self.producers = producers
        self._changelog_topic = changelog_topic
        self._stores = stores
        self._commit_offsets = commit_offsets  # at-least-once: the consumer's own commit
        self._on_held_back = on_held_back
        self._on_commit = on_commit  # (seconds it took, partitions committed)
        # After uncommitted work was dropped: why ("membership_lost", "fenced" or
        # "sender_stopped"), the partitions whose store was cleared, and whether the consumer must
        # rejoin the group (not when a revocation is already under way).
        self._on_dropped = on_dropped
        self._processor: Processor | None = None
        self._ready_generation: int | None = None
        self._processed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._changelog: dict[int, list[tuple[asyncio.Future[Any], int]]] = {}
        # Partitions whose store a unit changed since the last commit.
        self._written: set[int] = set()
        self._stalls = StallClock()
        self._end = end_exactly_once if producers.transactional else end_at_least_once

    def serve(self, processor: Processor) -> None:
        self._processor = processor

    def is_source(self, topic: str) -> bool:
        return topic == self.sources.raw or topic == self.sources.ticks

    # -- the consumer's side ----------------------------------------------------------------

    def on_seek(self, generation: int, positions: Mapping[TopicPartition, int]) -> None:
        """The partitions were sought to where they resume (their committed offset, or their
        beginning): records of `generation` may be applied from here on."""
        for tp, offset in positions.items():
            if self.is_source(tp.topic):
                self._processed[tp] = offset
                self._committed[tp] = offset
        self._ready_generation = generation

    async def apply(
        self,
        records: Mapping[TopicPartition, Sequence[Record]],
        positions: Mapping[TopicPartition, int],
        fetched_in: int,
        current: int,
    ) -> dict[TopicPartition, int]:
        """Apply one fetch's source records, or refuse them; {partition: offset} to go back to."""
        async with self.gate.lock:
            if not self.gate.admits(fetched_in, current) or self._ready_generation != current:
                reason = "not_ready" if self._ready_generation is None else "rebalancing"
                for recs in records.values():
                    self._on_held_back(reason, len(recs))
                return {tp: recs[0].offset for tp, recs in records.items() if recs}
            if self._processor is None:
                raise RuntimeError("Runner.serve() was never called")
            by_partition: dict[int, tuple[Sequence[Record], Sequence[Record]]] = {}
            for tp, recs in records.items():
                raw, ticks = by_partition.get(tp.partition, ((), ()))
                if tp.topic == self.sources.raw:
                    by_partition[tp.partition] = (recs, ticks)
                else:
                    by_partition[tp.partition] = (raw, recs)
            for partition in sorted(by_partition):
                raw, ticks = by_partition[partition]
                unit = Unit(partition, self._stores(partition))
                self._processor.process(unit, raw, ticks)
                try:
                    ended: Ended = await self._end(unit, self.producers, self._changelog_topic)
                except ProducerFenced as fenced:
                    await self._drop_uncommitted(fenced)
                    return {tp: recs[0].offset for tp, recs in records.items() if recs}
                if unit.changes:
                    self._written.add(partition)
                if ended.changelog:
                    self._changelog.setdefault(partition, []).extend(ended.changelog)
            for tp, position in positions.items():
                if self.is_source(tp.topic) and position > self._processed.get(tp, -1):
                    self._processed[tp] = position
            return {}

    async def commit(self, *, begin: bool) -> dict[TopicPartition, int]:
        """Under the gate: commit what was processed since the last commit; what it committed."""
        offsets = {
            tp: offset
            for tp, offset in self._processed.items()
            if offset != self._committed.get(tp)
        }
        if not offsets:
            return {}
        started = time.perf_counter()
        by_partition: dict[int, dict[TopicPartition, int]] = {}
        for tp, offset in offsets.items():
            by_partition.setdefault(tp.partition, {})[tp] = offset
        if self.producers.transactional:
            try:
                await self.producers.commit(by_partition, begin=begin)
            except ProducerFenced as fenced:
                await self._drop_uncommitted(fenced)
                return {}
        else:
            await self.producers.flush()
            if not await self._commit_offsets(offsets):
                return {}
        self._committed.update(offsets)
        self._written.clear()  # every partition a unit changed had records processed
        self._persist_changelog_offsets(by_partition)
        self._on_commit(time.perf_counter() - started, len(by_partition))
        return offsets

    def revoke(self, generation: int) -> None:
        """Under the gate: nothing of `generation` is applied any more."""
        self.gate.revoke(generation)
        self._ready_generation = None

    async def release(self) -> None:
        """Under the gate, after the revocation's commit: the partitions are no longer ours."""
        await self.producers.close_partitions()
        self._processed.clear()
        self._committed.clear()
        self._changelog.clear()
        self._written.clear()
        self._stalls.forget()
        if self._processor is not None:
            self._processor.forget()

    async def _drop_uncommitted(self, fenced: ProducerFenced) -> None:
        """Under the gate: the open transaction will abort; nothing it holds stays applied (see
        the module's docstring). Records are refused until the partitions are sought again."""
        rejoin = self._ready_generation is not None  # revoke() clears it first
        self._ready_generation = None
        cleared = sorted(self._written)
        await self.release()  # the producers first: no unit is applied with a store cleared
        for partition in cleared:
            self._stores(partition).clear()
        # MembershipLost and SenderStopped name themselves; aiokafka's own fence is "fenced".
        reason: str = getattr(fenced, "drop_reason", "fenced")
        log.warning(
            "the open transaction cannot commit (%s: %s): it aborts, and partitions %s are"
            " restored from their changelog after the rejoin",
            reason,
            fenced,
            cleared,
        )
        if self._on_dropped is not None:
            await self._on_dropped(reason, cleared, rejoin)

    @property
    def committed(self) -> Mapping[TopicPartition, int]:
        return self._committed

    @property
    def ready(self) -> bool:
        """The partitions of this generation were sought: their records are being applied."""
        return self._ready_generation is not None

    # -- what operators see -----------------------------------------------------------------

    def progress(
        self, ends: Mapping[TopicPartition, int], now: float | None = None
    ) -> list[PartitionProgress]:
        """Per raw partition owned: its committed offset against its end, and how long it has
        stood still with records behind it."""
        now = time.monotonic() if now is None else now
        out = []
        for tp, end in ends.items():
            committed = self._committed.get(tp)
            if committed is None:
                continue
            out.append(
                PartitionProgress(
                    tp.partition,
                    committed,
                    end,
                    self._stalls.observe(tp.partition, committed, end, now),
                )
            )
        return out

    def _persist_changelog_offsets(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            sent = self._changelog.pop(partition, [])
            if not sent:
                continue
            last = max(fut.result().offset + count - 1 for fut, count in sent)
            self._stores(partition).set_persisted_offset(last)
