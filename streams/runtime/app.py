"""The Faust app class of the worker: Faust's App on sessionflow's transport, with the runner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import faust
from faust.types import TransportT
from faust.types.enums import ProcessingGuarantee

from streams.runtime.producers import Producers
from streams.runtime.restore import TableManager
from streams.runtime.runner import Processor, Runner, Sources
from streams.runtime.store import SharedMemory, Table
from streams.runtime.table import partition_store
from streams.runtime.transport import Transport

# Source records are bytes in and out: the processor decodes them itself, once.
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


DEFAULT_ROCKSDB_MEMORY_BYTES = 64 * 1024**2
DEFAULT_FETCH_MAX_WAIT_MS = 20


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
        **options: Any,
    ) -> None:
        # Faust's own settings for the classes of its tables and table manager: ours keep every
        # RocksDB partition under one memory budget and restore a fetched batch at a time.
        super().__init__(id, Table=Table, TableManager=TableManager, **options)
        self.rocksdb_memory = SharedMemory(rocksdb_memory_bytes)
        # The consumer fetches with it (streams/runtime/consumer.py, 8).
        self.fetch_max_wait_ms = fetch_max_wait_ms

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

    def serve(
        self,
        processor: Processor,
        *,
        sources: Sources,
        table: Any,
        partitions: int,
        bootstrap_servers: str,
        on_held_back: Callable[[str, int], None],
        on_commit: Callable[[float, int], None],
    ) -> Runner:
        """Run `processor` over the `sources` topics, with `table` as its state."""
        # Subscribed like an agent's topic: the conductor asks the group for its partitions.
        self.topics.add(self.topic(sources.raw, sources.ticks, partitions=partitions, **RAW))
        producers = Producers(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{self.conf.broker_client_id}-runner",
            transactional_id=self._transactional_id(sources.raw) if self.in_transaction else None,
            group_id=self.conf.id,
        )
        self.runner = Runner(
            sources=sources,
            changelog_topic=table.changelog_topic.get_topic_name(),
            stores=lambda partition: partition_store(table, partition, partitions),
            producers=producers,
            commit_offsets=self._commit_offsets,
            on_held_back=on_held_back,
            on_commit=on_commit,
        )
        self.runner.serve(processor)
        return self.runner

    def _transactional_id(self, source_topic: str) -> Callable[[int], str]:
        """Faust's transactional id of a source partition (`{app id}-{topic group}-{partition}`):
        the id the partition's previous owner used, so that opening it fences that one."""

        def transactional_id(partition: int) -> str:
            group = self.assignor.group_for_topic(source_topic)
            return f"{self.conf.id}-{group}-{partition}"

        return transactional_id

    async def _commit_offsets(self, offsets: Any) -> bool:
        # At-least-once: the consumer group's plain offset commit (Faust's, on its thread).
        done: bool = await self.consumer._commit(offsets)  # type: ignore[attr-defined]
        return done
