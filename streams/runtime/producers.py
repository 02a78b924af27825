"""The worker's own Kafka producers for outputs and changelog records, and their transactions.

Exactly-once with `WorkerTransaction` (SESSIONFLOW_TRANSACTION_SCOPE=worker, the default): one
transactional producer for all the worker's partitions, opened fresh for every assignment, whose
commit is one transaction; the group's generation fences it instead of the partitions' ids
(streams/runtime/worker_txn.py).

Exactly-once per partition (SESSIONFLOW_TRANSACTION_SCOPE=partition): one transactional producer
per active partition, with the transactional id Faust would use for it (`{app id}-{topic
group}-{partition}`), so that a partition's next owner fences this one. They are opened fresh
for every assignment (a producer kept across a rebalance may have been fenced meanwhile, and
every send would fail) and closed when the partitions are revoked. A commit sends each
partition's offsets into its transaction and commits it; all partitions commit concurrently.
Faust's own transaction manager is replaced (streams/runtime/transport.py), so Faust opens no
producer with the same ids.

At-least-once: one idempotent producer with acks=all for every partition.

Every producer here has its coordinator lookups paced after failures, and tried again where
aiokafka would stop the producer (streams/runtime/lookups.py), and ends the retry of a batch that
its stopped sender failed meanwhile (`skip_settled_retries`).

A transaction takes the consumer group's offsets partition as soon as it holds data. aiokafka
adds it (AddOffsetsToTxn) only when the offsets are sent, at the commit, which is then three
round trips to the broker in a row (AddOffsetsToTxn, TxnOffsetCommit, EndTxn), for every
partition's transaction at once. `add_offsets_early` has the sender add it right after the
transaction's first data partitions, while the transaction is still open, leaving two round trips
for the commit. A transaction that never holds data never takes it: the broker would abort an open
transaction that nobody commits when it times out, and fence its producer.

Transactional requests the broker refuses for a moment are tried again after
`TXN_RETRY_BACKOFF_MS` (20 ms) where aiokafka waits 100 ms. On Kafka 4 a TxnOffsetCommit is
verified against the transaction (KIP-890), and a verification that meets the transaction busy
is answered COORDINATOR_NOT_AVAILABLE; in B4 that was about one commit in thirty, and each took
the 100 ms backoff on top (commit p99 120-140 ms; 50-65 ms with 20 ms;
bench/results/worker-waits.md).
The Java client waits 20 ms for the same kind of refusal of AddPartitionsToTxn (KAFKA-5477).

Records go out as record batches (aiokafka's BatchBuilder): one await per topic and partition of
a unit, not one per record. Any failure to send or commit stops the worker (an exactly-once
transaction then aborts and its records are processed again by the partition's next owner), but
a fence or a sender stopped on another error, which the runner survives
(streams/runtime/runner.py): aiokafka answers every send and commit after a fence with
IllegalOperation, and `fenced_as_such` raises the fence itself, or `SenderStopped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    IllegalOperation,
    KafkaError,
    ProducerFenced,
)

from sessionflow.metadata_backoff import backoff_failed_metadata_updates
from streams.runtime.lookups import pace_coordinator_lookups
from streams.runtime.worker_txn import GroupMember, commit_with_generation

log = logging.getLogger(__name__)
# aiokafka's connection options beyond the bootstrap servers (sessionflow/kafka_security.py);
# none: plaintext, unauthenticated.
PLAINTEXT: Mapping[str, Any] = MappingProxyType({})

Headers = Sequence[tuple[str, bytes]]
# Transactional requests the broker refuses for a moment are tried again after this long
# (aiokafka's default is 100 ms; see the module's docstring).
TXN_RETRY_BACKOFF_MS = 20
# A record batch holds this much; our records are a few kB (a webhook body at most 1 MiB, which
# goes alone in its batch).
MAX_BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class WorkerTransaction:
    """Exactly-once with one transaction per worker: its transactional id (stable across the
    worker's restarts, so that a restarted worker aborts what it left open), the group member
    its offsets are committed as, and how long the broker lets a transaction stay open."""

    transactional_id: str
    member: Callable[[], GroupMember]
    timeout_ms: int


class Producers:
    """The runtime's producers: per partition or one per worker (exactly-once), or one for all
    (at-least-once)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        security: Mapping[str, Any] = PLAINTEXT,
        client_id: str,
        transactional_id: Callable[[int], str] | None,
        group_id: str | None = None,
        linger_ms: int = 0,
        worker: WorkerTransaction | None = None,
    ) -> None:
        self._settings: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            **security,
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_batch_size": MAX_BATCH_BYTES,
            "max_request_size": 4 * MAX_BATCH_BYTES,
        }
        self._transactional_id = transactional_id
        self._worker = worker
        if (transactional_id is not None or worker is not None) and group_id is None:
            raise ValueError("transactional producers commit a consumer group's offsets: group_id")
        if transactional_id is not None and worker is not None:
            raise ValueError("one transaction per partition or per worker, not both")
        # Exactly-once: the group whose offsets every transaction carries, added early
        # (add_offsets_early) and committed by `commit`.
        self._group_id = group_id
        self._by_partition: dict[int, AIOKafkaProducer] = {}
        self._worker_producer: AIOKafkaProducer | None = None
        self._shared: AIOKafkaProducer | None = None
        self._shared_lock = asyncio.Lock()

    @property
    def transactional(self) -> bool:
        return self._transactional_id is not None or self._worker is not None

    @property
    def transaction_scope(self) -> str:
        """What one transaction covers: a "partition", a "worker", or "none" (at-least-once)."""
        if self._worker is not None:
            return "worker"
        return "partition" if self._transactional_id is not None else "none"

    async def open(self, partitions: Iterable[int]) -> None:
        """Exactly-once: a fresh producer, in a transaction, for each of `partitions` (or, one
        transaction per worker, for all of them)."""
        if self._worker is not None:
            await self._open_worker(self._worker)
            return
        if self._transactional_id is None:
            return
        fresh = [p for p in partitions if p not in self._by_partition]
        producers = [self._new(self._transactional_id(p)) for p in fresh]
        try:
            await asyncio.gather(*(p.start() for p in producers))
            await asyncio.gather(*(p.begin_transaction() for p in producers))
        except BaseException:
            await asyncio.gather(*(p.stop() for p in producers), return_exceptions=True)
            raise
        self._by_partition.update(zip(fresh, producers, strict=True))
        if fresh:
            log.info("opened %d transactional producers: partitions %s", len(fresh), sorted(fresh))

    async def _open_worker(self, worker: WorkerTransaction) -> None:
        if self._worker_producer is not None:
            return
        producer = self._new(worker.transactional_id)
        try:
            await producer.start()
            await producer.begin_transaction()
        except BaseException:
            await producer.stop()
            raise
        self._worker_producer = producer
        log.info("opened the worker's transactional producer %s", worker.transactional_id)

    async def close_partitions(self) -> None:
        """Exactly-once: close every partition's producer (an open transaction aborts)."""
        producers, self._by_partition = list(self._by_partition.values()), {}
        if self._worker_producer is not None:
            producers.append(self._worker_producer)
            self._worker_producer = None
        await asyncio.gather(*(p.stop() for p in producers), return_exceptions=True)

    async def close(self) -> None:
        await self.close_partitions()
        if self._shared is not None:
            shared, self._shared = self._shared, None
            await shared.stop()

    async def send(
        self,
        topic: str,
        partition: int,
        records: Sequence[tuple[bytes | None, bytes | None, Headers]],
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """Queue `records` to `topic`'s `partition`: (future, record count) per record batch."""
        producer = await self._for(partition)
        with fenced_as_such(producer):
            return await self._send(producer, topic, partition, records)

    @staticmethod
    async def _send(
        producer: AIOKafkaProducer,
        topic: str,
        partition: int,
        records: Sequence[tuple[bytes | None, bytes | None, Headers]],
    ) -> list[tuple[asyncio.Future[Any], int]]:
        sent: list[tuple[asyncio.Future[Any], int]] = []
        batch = producer.create_batch()
        for key, value, headers in records:
            if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
                sent.append(
                    _watched(
                        await producer.send_batch(batch, topic, partition=partition),
                        batch.record_count(),
                    )
                )
                batch = producer.create_batch()
                # The first record of a batch always fits, whatever its size.
                batch.append(key=key, value=value, timestamp=None, headers=list(headers))
        if batch.record_count():
            sent.append(
                _watched(
                    await producer.send_batch(batch, topic, partition=partition),
                    batch.record_count(),
                )
            )
        return sent

    async def commit(
        self, offsets: Mapping[int, Mapping[TopicPartition, int]], *, begin: bool
    ) -> None:
        """Exactly-once: per partition, its offsets into its transaction, then commit it."""
        group_id = self._group_id
        if group_id is None:
            raise RuntimeError("only transactional producers commit offsets")
        if self._worker_producer is not None:
            await self._commit_worker(self._worker_producer, offsets, group_id, begin=begin)
            return

        async def one(partition: int, partition_offsets: Mapping[TopicPartition, int]) -> None:
            producer = self._by_partition[partition]
            # aiokafka takes its own TopicPartition type only (Faust's TP is another tuple).
            offsets = {
                TopicPartition(tp.topic, tp.partition): o for tp, o in partition_offsets.items()
            }
            with fenced_as_such(producer):
                await producer.send_offsets_to_transaction(offsets, group_id)
                await producer.commit_transaction()
                if begin:
                    await producer.begin_transaction()

        await asyncio.gather(*(one(p, o) for p, o in offsets.items()))

    @staticmethod
    async def _commit_worker(
        producer: AIOKafkaProducer,
        offsets: Mapping[int, Mapping[TopicPartition, int]],
        group_id: str,
        *,
        begin: bool,
    ) -> None:
        """One transaction per worker: every partition's offsets into it, then commit it."""
        merged = {
            TopicPartition(tp.topic, tp.partition): o
            for partition_offsets in offsets.values()
            for tp, o in partition_offsets.items()
        }
        with fenced_as_such(producer):
            await producer.send_offsets_to_transaction(merged, group_id)
            await producer.commit_transaction()
            if begin:
                await producer.begin_transaction()

    async def flush(self) -> None:
        """At-least-once: every record sent so far is acknowledged."""
        if self._shared is not None:
            await self._shared.flush()

    async def _for(self, partition: int) -> AIOKafkaProducer:
        if self._worker is not None:
            if self._worker_producer is None:
                raise RuntimeError("the worker's transactional producer is not open")
            return self._worker_producer
        if self._transactional_id is not None:
            return self._by_partition[partition]
        if self._shared is None:
            async with self._shared_lock:
                if self._shared is None:
                    shared = self._new(None)
                    await shared.start()
                    self._shared = shared
        return self._shared

    def _new(self, transactional_id: str | None) -> AIOKafkaProducer:
        extra: dict[str, Any] = {}
        if transactional_id is not None:
            extra["retry_backoff_ms"] = TXN_RETRY_BACKOFF_MS
        if self._worker is not None:
            extra["transaction_timeout_ms"] = self._worker.timeout_ms
        producer = AIOKafkaProducer(**self._settings, **extra, transactional_id=transactional_id)
        pace_coordinator_lookups(producer.client)
        backoff_failed_metadata_updates(producer.client)
        skip_settled_retries(producer._message_accumulator)
        if transactional_id is not None and self._group_id is not None:
            add_offsets_early(producer._txn_manager, self._group_id)
        if self._worker is not None:
            commit_with_generation(producer._sender, self._worker.member)
        return producer


class SenderStopped(ProducerFenced):  # type: ignore[misc]  # aiokafka is untyped
    """A transactional producer's sender stopped on an error other than a fence. The producer
    is unusable, as after a fence, and the open transaction's outcome is the broker's to settle:
    the next producer opened with the same transactional id waits until the transaction is
    committed or aborted. Seen once in reliability scenario 13 (a 20 s broker pause): the
    broker answered the EndTxn that followed with an error code aiokafka does not handle, which
    stopped the sender ("Unexpected error during batch delivery") and, before this, the worker.
    The runner survives it as it survives a fence (runner.py): the state it restores and the
    offsets it resumes from are read once the transaction is settled, whichever way it went."""

    drop_reason: ClassVar[str] = "sender_stopped"  # sessionflow_transactions_dropped's label

    def __init__(self, error: BaseException) -> None:
        # aiokafka wraps what stopped the sender ("Unexpected error during batch delivery").
        why = f"{error!r} from {error.__cause__!r}" if error.__cause__ is not None else repr(error)
        super().__init__(f"the producer's sender stopped: {why}")


def _watched(future: asyncio.Future[Any], records: int) -> tuple[asyncio.Future[Any], int]:
    """A sent batch whose failure will count as seen. Exactly-once does not await its batches
    (the commit stands for them), and a fence or a stopped sender fails every one still pending:
    unseen, each was logged at ERROR ("Future exception was never retrieved") when collected.
    Whoever awaits the batch still gets its error."""
    future.add_done_callback(_failure_seen)
    return future, records


def _failure_seen(future: asyncio.Future[Any]) -> None:
    if future.done() and not future.cancelled():
        future.exception()


@contextlib.contextmanager
def fenced_as_such(producer: AIOKafkaProducer) -> Iterator[None]:
    """Raise the ProducerFenced a transactional producer's sender stopped with, where aiokafka
    raises IllegalOperation ("not in the middle of a transaction") for every later send and
    commit, or the sender's own error; and SenderStopped for a sender stopped on any other error.
    The runner survives both (runner.py)."""
    try:
        yield
    except (IllegalOperation, KafkaError) as exc:
        task = producer._sender.sender_task
        stopped = task is not None and task.done() and not task.cancelled()
        cause = task.exception() if stopped else None
        if cause is not None:
            _sender_failures_seen(producer, task)
        if cause is None or isinstance(exc, ProducerFenced):
            raise
        if isinstance(cause, ProducerFenced):
            raise cause from exc
        raise SenderStopped(cause) from exc


def _sender_failures_seen(producer: AIOKafkaProducer, sender_task: asyncio.Future[Any]) -> None:
    """The stopped sender fails the transaction's end with its error too, and the drain waiter
    of every batch it had not sent (or had taken back to retry): nobody will await them now, so
    mark them seen, or each is logged at ERROR ("Future exception was never retrieved";
    reliability scenario 15 logged four, a worker cut off mid-send). Once now, and once more
    after the sender's own done-callback (`_fail_all`, called in order before this one): when
    the transaction had failed already, that callback may not have run yet, and it fails a new
    end in place of the old (two workers under one id showed it), and the batches."""
    txn_manager = producer._txn_manager
    if txn_manager is None:
        return
    accumulator = producer._message_accumulator

    def seen(_: object = None) -> None:
        _failure_seen(txn_manager.wait_for_transaction_end())
        for queued in (*accumulator._batches.values(), accumulator._pending_batches):
            for batch in queued:
                _failure_seen(batch._drain_waiter)

    seen()
    sender_task.add_done_callback(seen)


def skip_settled_retries(accumulator: Any) -> None:
    """Have `accumulator` (aiokafka's MessageAccumulator) end the retry of a batch that was
    settled meanwhile. A produce request that failed for a retriable reason (a lost connection)
    waits the retry backoff in a task of its own before it hands its batches back. Only a
    stopped sender (a fence, a lost membership) settles them during that wait: it fails every
    batch, and a failed batch leaves the pending set. aiokafka's `reenqueue` then raised KeyError
    in that task, which nobody awaits any more: logged at ERROR as "Task exception was never
    retrieved" (reliability scenario 15, a worker cut off mid-send). Skipping the batch alone
    left the task waiting for a metadata update of a client closed meanwhile, logged at ERROR as
    "Task was destroyed but it is pending!". So the task ends as cancelled, which is what it is:
    its sender is gone, and nothing is left to send."""
    reenqueue = accumulator.reenqueue

    def reenqueue_unsettled(batch: Any) -> None:
        if batch.future.done():
            raise asyncio.CancelledError
        reenqueue(batch)

    # An instance attribute: the sender's produce handler calls
    # self._sender._message_accumulator.reenqueue (streams/runtime/internals.py checks it).
    accumulator.reenqueue = reenqueue_unsettled


def add_offsets_early(txn_manager: Any, group_id: str) -> None:
    """Have the sender of `txn_manager` (aiokafka's TransactionManager) add `group_id`'s offsets
    partition to each transaction once the transaction holds data (see the module's docstring)."""
    to_add = txn_manager.consumer_group_to_add

    def consumer_group_to_add() -> str | None:
        group: str | None = to_add()  # offsets already sent: aiokafka's own path
        if (
            group is None
            and txn_manager._txn_consumer_group is None
            and txn_manager.txn_partitions
            and txn_manager.is_in_transaction()
        ):
            return group_id
        return group

    # An instance attribute: the sender asks txn_manager.consumer_group_to_add() before every
    # transactional request, after the partitions to add (streams/runtime/internals.py checks).
    txn_manager.consumer_group_to_add = consumer_group_to_add
