"""The Faust app class of the worker: Faust's App on sessionflow's transport, with the runner."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.types import TP, TransportT
from faust.types.enums import ProcessingGuarantee

from streams.runtime.consumer import ConsumerThread
from streams.runtime.namesakes import refuse_namesakes
from streams.runtime.producers import Producers, WorkerTransaction
from streams.runtime.restore import TableManager, restorer_of
from streams.runtime.runner import Processor, Runner, Sources
from streams.runtime.store import SharedMemory, Table
from streams.runtime.table import partition_store
from streams.runtime.transport import Transport
from streams.runtime.worker_txn import GroupMember

# Source records are bytes in and out: the processor decodes them itself, once.
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


DEFAULT_ROCKSDB_MEMORY_BYTES = 64 * 1024**2
DEFAULT_FETCH_MAX_WAIT_MS = 20


@dataclass(frozen=True, slots=True)
class WorkerTransactionSettings:
    """Exactly-once with one transaction per worker: what names it (stable across restarts) and
    how long the broker lets it stay open."""

    key: str
    timeout_ms: int


class App(faust.App):
    """A Faust App whose consumer hands batches to a runner (streams/runtime/consumer.py).

    Faust keeps the group, the table (its changelog topic, recovery, standby replicas), the web
    server and the timers; the source topics' records go to the runner instead of an agent.
    """

    runner: Runner

    def __init__(
        self,
        id: str,
        *,
        rocksdb_memory_bytes: int = DEFAULT_ROCKSDB_MEMORY_BYTES,
        fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
        worker_transaction: WorkerTransactionSettings | None = None,
        **options: Any,
    ) -> None:
        # Faust's own settings for the classes of its tables and table manager: ours keep every
        # RocksDB partition under one memory budget and restore a fetched batch at a time.
        super().__init__(id, Table=Table, TableManager=TableManager, **options)
        self.rocksdb_memory = SharedMemory(rocksdb_memory_bytes)
        # The consumer fetches with it (streams/runtime/consumer.py, 8).
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.worker_transaction = worker_transaction
        # The consumer's recovery reports each wait for transactions left open on the changelog:
        # its seconds and how many lost workers it fenced (consumer.py, 11 and 12); `serve` sets it.
        self.on_restore_wait: Callable[[float, int], None] = lambda seconds, fenced: None

    def _new_transport(self) -> TransportT:
        # Faust picks a transport by URL scheme only; building it here keeps the choice in code,
        # with no process-wide registry.
        return cast(TransportT, Transport(self.conf.broker_consumer, self))

    @property
    def in_transaction(self) -> bool:
        """Exactly-once, from the settings alone.

        Faust's is a cached property that is true only once the worker has started (`in_worker`):
        read before that (building the consumer for the start-up check, registering the
        processor), it stays false for the process, and the whole worker silently runs
        at-least-once. This app is only ever a worker's.
        """
        guarantee: object = self.conf.processing_guarantee
        return guarantee == ProcessingGuarantee.EXACTLY_ONCE

    @property
    def transaction_per_worker(self) -> bool:
        """Exactly-once in one transaction per worker: offsets committed with the group's
        generation, and read stable (streams/runtime/worker_txn.py)."""
        return self.in_transaction and self.worker_transaction is not None

    def serve(
        self,
        processor: Processor,
        *,
        sources: Sources,
        table: Any,
        partitions: int,
        bootstrap_servers: str,
        security: Mapping[str, Any],
        on_held_back: Callable[[str, int], None],
        on_commit: Callable[[float, int], None],
        on_dropped: Callable[[str], None] = lambda reason: None,
        on_restore_wait: Callable[[float, int], None] = lambda seconds, fenced: None,
    ) -> Runner:
        """Run `processor` over the `sources` topics, with `table` as its state."""
        self.on_restore_wait = on_restore_wait
        # Subscribed like an agent's topic: the conductor asks the group for its partitions.
        self.topics.add(self.topic(sources.raw, sources.ticks, partitions=partitions, **RAW))
        per_partition = self.in_transaction and not self.transaction_per_worker
        producers = Producers(
            bootstrap_servers=bootstrap_servers,
            security=security,
            client_id=f"{self.conf.broker_client_id}-runner",
            transactional_id=self._transactional_id(sources.raw) if per_partition else None,
            group_id=self.conf.id,
            worker=self.own_worker_transaction(),
        )
        changelog_topic = table.changelog_topic.get_topic_name()

        async def restore_dropped(reason: str, partitions: list[int], rejoin: bool) -> None:
            on_dropped(reason)
            await self._restore_dropped(changelog_topic, partitions, rejoin=rejoin)

        self.runner = Runner(
            sources=sources,
            changelog_topic=changelog_topic,
            stores=lambda partition: partition_store(table, partition, partitions),
            producers=producers,
            commit_offsets=self._commit_offsets,
            on_held_back=on_held_back,
            on_commit=on_commit,
            on_dropped=restore_dropped,
        )
        self.runner.serve(processor)
        if self.transaction_per_worker:  # the worker id names a transactional id
            self._refuse_namesakes_once(bootstrap_servers, security)
        return self.runner

    def _refuse_namesakes_once(self, bootstrap_servers: str, security: Mapping[str, Any]) -> None:
        """At the first assignment, stop if another live worker runs under this one's id
        (streams/runtime/namesakes.py): raised there, Faust crashes the worker."""
        first = True

        async def on_assigned(sender: object, /, *args: object, **kwargs: object) -> None:
            nonlocal first
            if not first:
                return
            first = False
            member_id, client_id = self.group_member().member_id, self.conf.broker_client_id
            await refuse_namesakes(self.conf.id, member_id, client_id, bootstrap_servers, security)

        self.on_partitions_assigned.connect(on_assigned)

    async def _restore_dropped(
        self, changelog_topic: str, partitions: list[int], *, rejoin: bool
    ) -> None:
        """After the runner dropped uncommitted work (a fenced transaction, streams/runtime/runner.py):
        recovery restores the cleared `partitions` from the changelog's start at the next
        rebalance, and the consumer rejoins the group for it, unless a revocation is under way."""
        restorer_of(self.tables).forget(TP(changelog_topic, partition) for partition in partitions)
        if rejoin:
            # In the background: the consumer's thread runs it (a stopping worker cancels it).
            thread = cast(ConsumerThread, self.consumer._thread)  # type: ignore[attr-defined]
            self.add_future(thread.request_rejoin())

    def _transactional_id(self, source_topic: str) -> Callable[[int], str]:
        """Faust's transactional id of a source partition (`{app id}-{topic group}-{partition}`):
        the id the partition's previous owner used, so that opening it fences that one."""

        def transactional_id(partition: int) -> str:
            group = self.assignor.group_for_topic(source_topic)
            return f"{self.conf.id}-{group}-{partition}"

        return transactional_id

    def own_worker_transaction(self) -> WorkerTransaction | None:
        """This worker's transaction with one per worker (exactly-once, scope `worker`), else None."""
        settings = self.worker_transaction
        if settings is None or not self.transaction_per_worker:
            return None
        return WorkerTransaction(
            transactional_id=f"{self.conf.id}-worker-{settings.key}",
            member=self.group_member,
            timeout_ms=settings.timeout_ms,
        )

    def group_member(self) -> GroupMember:
        """This worker in its consumer group right now (its consumer's group coordinator, on the
        consumer's thread: two attributes read) and its static member name, if it has one."""
        coordinator = self.consumer._thread._consumer._coordinator  # type: ignore[attr-defined]
        return GroupMember(
            generation=coordinator.generation,
            member_id=coordinator.member_id,
            # A static member names itself too: a newer instance under its name fences it.
            group_instance_id=self.conf.consumer_group_instance_id,
        )

    async def _commit_offsets(self, offsets: Any) -> bool:
        # At-least-once: the consumer group's plain offset commit (Faust's, on its thread).
        done: bool = await self.consumer._commit(offsets)  # type: ignore[attr-defined]
        return done
