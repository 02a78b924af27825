"""What every broker test shares: one test's topic namespace, and a reader that joins no group."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics, TopicSpec, ensure_topics


@dataclass
class Namespace:
    """One test's topics on the shared broker: their prefix, partitions and working folder."""

    bootstrap: str
    namespace: str
    root: Path
    partitions: int = 4

    @property
    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            kafka_bootstrap_servers=self.bootstrap,
            partitions=self.partitions,
            topic_namespace=self.namespace,
        )

    @property
    def topics(self) -> Topics:
        return Topics.for_settings(self.settings)

    async def make_topics(self) -> None:
        await ensure_topics(self.settings, self.topics.specs(self.settings))


async def make_topics(bootstrap: str, *names: str, partitions: int) -> None:
    """Plain topics (replication 1, the broker's configs) on the shared broker."""
    settings = KafkaSettings(kafka_bootstrap_servers=bootstrap)
    await ensure_topics(settings, [TopicSpec(name, partitions, 1, {}) for name in names])


@contextlib.asynccontextmanager
async def reader(
    bootstrap: str, *topics: str, committed: bool = True
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group, from the earliest offsets, committing nothing."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed" if committed else "read_uncommitted",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()
