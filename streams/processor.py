"""The thin shell around the core: read state, call the core, write state, send outputs.

Exactly-once (the default): Faust runs one transactional producer per input partition. Every
table write (changelog record), every output and the input offset of an event commit together,
or not at all. Outputs are sent to the input's partition number (all topics share the partition
count), so they always ride in the transaction of the partition being processed.

Expiry is driven by tick records, not by a bare timer: a timer has no event, so it could neither
write the table nor join a partition's transaction. Each worker's timer sends a tick (the time,
and the raw partition's end offset: streams/expiry.py) to the ticks topic's partitions it owns; the agent, which consumes the raw and the ticks topics
as one co-partitioned stream, expires the due sessions of that partition while processing the
tick. The expiry's table deletes, incomplete records and the tick's offset commit in one
transaction: a crash before the commit replays the tick against the state as it was (nothing
emitted twice), a crash after it leaves nothing to redo (nothing lost). A rebalance moves the
partition's state and its ticks together, so its new owner continues from the committed state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aiokafka.partitioner import murmur2

from streams import core
from streams.decode import DecodeError, decode
from streams.expiry import ExpiryIndex, RawProgress, TickDecodeError, decode_tick
from streams.metrics import WorkerMetrics
from streams.models import CompletedSession, encode_output

log = logging.getLogger(__name__)

STAGE: Final = b"streams"


class TableLike(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def __delitem__(self, key: bytes) -> None: ...
    def items(self) -> Iterable[tuple[bytes, bytes]]: ...


class Sink(Protocol):
    """Where records go: (topic name, key, value, partition, headers)."""

    async def __call__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]],
    ) -> None: ...


class Changelog(Protocol):
    """Records one table change (None: a delete) in the partition's transaction."""

    async def __call__(self, key: bytes, value: bytes | None, partition: int) -> None: ...


@dataclass(frozen=True, slots=True)
class OutputTopics:
    completed: str
    incomplete: str
    dlq: str


def partition_for_key(key: bytes, partitions: int) -> int:
    """The default partitioner's choice (murmur2, as Kafka's Java client and aiokafka do)."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SessionProcessor:
    """Applies the core's decisions to the table and the output topics, one record at a time."""

    def __init__(
        self,
        table: TableLike,
        changelog: Changelog,
        sink: Sink,
        topics: OutputTopics,
        metrics: WorkerMetrics,
        *,
        ttl_ms: int,
        partitions: int,
        grace_ms: int,
        settle_ms: int,
    ) -> None:
        self._table = table
        self._changelog = changelog
        self._sink = sink
        self._topics = topics
        self._metrics = metrics
        self._ttl_ms = ttl_ms
        self._partitions = partitions
        self.index = ExpiryIndex()
        self.progress = RawProgress(grace_ms=grace_ms, settle_ms=settle_ms)

    async def on_raw(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        partition: int,
        offset: int,
    ) -> None:
        self.progress.processed(partition, offset)
        now = now_ms()
        try:
            env = decode(value or b"", headers, now)
        except DecodeError as exc:
            await self._dead_letter(key, value or b"", headers, partition, exc.reason)
            return
        if env.session_id is None:
            # Planned or unknown event types: counted; they stay in the raw topic.
            self._metrics.observe(env.event_type, core.Step(state=None, changed=False), now, now)
            return
        table_key = env.session_id.encode()
        state = self._load(table_key)
        try:
            step = core.on_event(state, env, now, self._ttl_ms)
        except Exception:  # a bug of ours on one record must not stop the partition
            log.exception("core failed on a record; dead-lettering it")
            await self._dead_letter(key, env.body, headers, partition, "internal_error")
            return
        await self._apply(table_key, step, partition)
        self._metrics.observe(env.event_type, step, now, env.received_at_ms)

    async def on_tick(self, partition: int, value: bytes | None, assigned: Iterable[int]) -> None:
        """Expire this partition's due sessions, as far as the tick allows (streams/expiry.py)."""
        try:
            tick = decode_tick(value or b"")
        except TickDecodeError as exc:
            log.warning("ignored a ticks record on partition %d: %s", partition, exc)
            return
        now = now_ms()
        horizon = self.progress.horizon_ms(partition, tick, now)
        if horizon is None:
            return
        if not self.index.built:
            self._rebuild_index(set(assigned))
        for table_key in self.index.pop_due(partition, horizon):
            state = self._load(table_key)
            if state is None:
                continue  # already paired-and-expired or expired: a stale index entry
            step = core.on_expiry(state, horizon, self._ttl_ms, now)
            if step.changed:
                await self._apply(table_key, step, partition)
                self._metrics.observe_outputs(step)

    def on_rebalance(self) -> None:
        self.index.invalidate()
        self.progress.reset()

    def _load(self, table_key: bytes) -> core.SessionState | None:
        stored = self._table.get(table_key)
        return None if stored is None else core.decode_state(stored)

    async def _apply(self, table_key: bytes, step: core.Step, partition: int) -> None:
        # Outputs first: in at-least-once mode the sink returns once Kafka has them, so a crash
        # before the table change repeats an output, never loses one. (In exactly-once mode both
        # are in one transaction and the order does not matter.)
        for record in step.outputs:
            topic = (
                self._topics.completed
                if isinstance(record, CompletedSession)
                else self._topics.incomplete
            )
            await self._sink(topic, table_key, encode_output(record), partition, [])
        if step.changed:
            if step.state is None:
                del self._table[table_key]
                await self._changelog(table_key, None, partition)
            else:
                stored = core.encode_state(step.state)
                self._table[table_key] = stored
                await self._changelog(table_key, stored, partition)
                self.index.push(partition, core.deadline_ms(step.state, self._ttl_ms), table_key)

    async def _dead_letter(
        self,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, bytes],
        partition: int,
        reason: str,
    ) -> None:
        self._metrics.dead_lettered.labels(reason).inc()
        log.warning("dead-lettered a raw record: %s (partition %d)", reason, partition)
        kept = [(name, data) for name, data in headers.items() if name not in ("reason", "stage")]
        await self._sink(
            self._topics.dlq,
            key,
            value,
            partition,
            [*kept, ("reason", reason.encode()), ("stage", STAGE)],
        )

    def _rebuild_index(self, assigned: set[int]) -> None:
        entries: list[tuple[int, int, bytes]] = []
        pending = 0
        for table_key, stored in self._table.items():
            partition = partition_for_key(table_key, self._partitions)
            if partition not in assigned:
                continue  # a standby's copy: its owner expires it
            state = core.decode_state(stored)
            pending += isinstance(state, core.PendingSession)
            entries.append((partition, core.deadline_ms(state, self._ttl_ms), table_key))
        self.index.rebuild(entries)
        self._metrics.pending.set(pending)
        log.info(
            "expiry index rebuilt: %d sessions, %d pending, partitions %s",
            len(entries),
            pending,
            sorted(assigned),
        )


def headers_of(raw: Any) -> dict[str, bytes]:
    """Kafka record headers (a list of (name, value) pairs, or None) as a dict."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): bytes(v) for k, v in raw.items()}
    return {str(k): bytes(v) for k, v in raw if v is not None}
