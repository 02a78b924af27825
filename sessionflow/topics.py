"""The project's topics: names, partitions and configs, and their creation at start (and the
deletion of a test or benchmark run's own topics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from sessionflow.errors import SessionflowError
from sessionflow.kafka_security import (
    KafkaRefused,
    aiokafka_connection,
    check_refusal_probe,
    refusal,
)
from sessionflow.settings import KafkaSettings

log = logging.getLogger("sessionflow.topics")

DAY_MS = 24 * 60 * 60 * 1000
# How long a process waits at start for a broker that does not answer yet (compose and
# Kubernetes start everything at once): long enough to outlast a broker's own start.
STARTUP_TIMEOUT_S = 120.0
_RETRY_FIRST_S = 0.5
_RETRY_CAP_S = 5.0
# How long the connection that asks why a start-up attempt failed may take.
_PROBE_TIMEOUT_S = 10.0
# Room for the record's key, headers and batch framing beyond the body itself.
RECORD_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names, with the settings' namespace applied."""

    raw: str
    dlq: str
    completed: str
    incomplete: str
    transcripts: str
    ticks: str

    @classmethod
    def for_settings(cls, settings: KafkaSettings) -> Topics:
        ns = settings.topic_namespace
        return cls(
            raw=f"{ns}agntix.webhooks.raw",
            dlq=f"{ns}agntix.webhooks.dlq",
            completed=f"{ns}agntix.sessions.completed",
            incomplete=f"{ns}agntix.sessions.incomplete",
            transcripts=f"{ns}agntix.sessions.transcripts",
            ticks=f"{ns}sessionflow.ticks",
        )

    def specs(self, settings: KafkaSettings) -> list[TopicSpec]:
        """Every topic with its declared partitions and configs.

        The raw topic and the ticks topic are co-partitioned with the worker's table (same
        partition count); the output topics use it too so a session keeps its partition. The
        transcripts topic is compacted: the latest record per session id stays.
        """
        p, rf = settings.partitions, settings.replication_factor
        largest = str(max_record_bytes(settings))
        return [
            TopicSpec(
                self.raw, p, rf, {"retention.ms": str(7 * DAY_MS), "max.message.bytes": largest}
            ),
            TopicSpec(
                self.dlq, p, rf, {"retention.ms": str(30 * DAY_MS), "max.message.bytes": largest}
            ),
            TopicSpec(self.completed, p, rf, {"retention.ms": str(7 * DAY_MS)}),
            TopicSpec(self.incomplete, p, rf, {"retention.ms": str(7 * DAY_MS)}),
            TopicSpec(
                self.transcripts,
                p,
                rf,
                {
                    "cleanup.policy": "compact",
                    "max.message.bytes": str(max_transcript_record_bytes(settings)),
                },
            ),
            TopicSpec(self.ticks, p, rf, {"retention.ms": str(DAY_MS // 24)}),
        ]


def max_record_bytes(settings: KafkaSettings) -> int:
    """The largest raw or DLQ record: a body at the cap plus its key and headers."""
    return settings.max_body_bytes + RECORD_OVERHEAD_BYTES


def max_transcript_record_bytes(settings: KafkaSettings) -> int:
    """The largest transcript record: the API's answers at the cap plus the record's fields."""
    return settings.max_transcript_bytes + RECORD_OVERHEAD_BYTES


class TopicError(SessionflowError, RuntimeError):
    """The project's topics cannot be made as the settings declare."""


class TopicCreationError(TopicError):
    """The broker refused to create a topic."""


class TopicMismatchError(TopicError):
    """An existing topic has another partition count than the settings declare."""


async def ensure_topics(
    settings: KafkaSettings,
    specs: Iterable[TopicSpec],
    *,
    timeout_s: float = 30.0,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> None:
    """Create the missing topics; refuse to run over a topic with another partition count.

    While no broker answers (a connection error or a timeout), retry with backoff until
    `startup_timeout_s` has passed, then raise the last error; a refusal is raised at once: of
    the topics, or of this client (KafkaRefused: its credentials or the broker's certificate).
    """
    check_refusal_probe()
    wanted = list(specs)
    deadline = time.monotonic() + startup_timeout_s
    delay = _RETRY_FIRST_S
    while True:
        try:
            await _ensure_once(settings, wanted, timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            why = await refusal(settings, min(timeout_s, _PROBE_TIMEOUT_S))
            if why is not None:
                raise KafkaRefused(why) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning(
                "waiting for Kafka at %s: %s (%.0f s left)",
                settings.kafka_bootstrap_servers,
                type(exc).__name__,
                left,
            )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, _RETRY_CAP_S)
        else:
            return


async def _ensure_once(settings: KafkaSettings, wanted: list[TopicSpec], timeout_s: float) -> None:
    admin = AIOKafkaAdminClient(
        **aiokafka_connection(settings),
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        existing = set(await admin.list_topics())
        missing = [s for s in wanted if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config)
                    for s in missing
                ]
            )
            for name, code, *_ in response.topic_errors:
                # 36: TOPIC_ALREADY_EXISTS, another process created it first; checked below.
                if code not in (0, 36):
                    raise TopicCreationError(
                        f"creating topic {name} failed with Kafka error {code}"
                    )
        counts = await _partition_counts(admin, [s.name for s in wanted], timeout_s)
        for spec in wanted:
            if counts[spec.name] != spec.partitions:
                raise TopicMismatchError(
                    f"topic {spec.name} has {counts[spec.name]} partitions, settings declare "
                    f"{spec.partitions} (SESSIONFLOW_PARTITIONS): co-partitioning needs them equal"
                )
    finally:
        await admin.close()


async def _partition_counts(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float
) -> dict[str, int]:
    """Partition counts by topic, waiting out the moment after creation when metadata shows none."""
    async with asyncio.timeout(timeout_s):
        while True:
            described = await admin.describe_topics(names)
            counts = {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}
            if all(counts.get(name, 0) > 0 for name in names):
                return counts
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client of `bootstrap`, closed on the way out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def topic_names(bootstrap: str) -> set[str]:
    """Every topic the broker holds, internal ones included."""
    async with admin_client(bootstrap) as admin:
        return set(await admin.list_topics())


async def partition_count(bootstrap: str) -> int:
    """How many partitions the broker holds, internal topics included."""
    async with admin_client(bootstrap) as admin:
        names = list(await admin.list_topics())
        described = await admin.describe_topics(names) if names else []
        return sum(len(d["partitions"]) for d in described)


async def delete_topics(bootstrap: str, chosen: Callable[[str], bool]) -> list[str]:
    """Delete the broker's topics that `chosen` picks (a test session's or a benchmark run's own:
    a broker that keeps every run's partitions answers later runs slower); their names."""
    async with admin_client(bootstrap) as admin:
        names = [t for t in await admin.list_topics() if chosen(t)]
        if names:
            await admin.delete_topics(names)
        return names
