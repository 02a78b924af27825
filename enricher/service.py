"""The enricher: consume completed sessions, fetch each transcript, write it, commit.

At-least-once: a completed record's offset is committed only after its transcript record is
acknowledged by Kafka (acks=all). Fetches run concurrently, so each partition commits up to
its lowest unfinished offset (enricher/progress.py). The enricher is a consumer group of its
own: the worker never waits for it; how far behind it is, is a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.structs import OffsetAndMetadata

from enricher.client import AgntixClient
from enricher.errors import EnricherCrashed
from enricher.fetch import Finished, to_record, too_large_record
from enricher.gate import AuthGate
from enricher.metrics import EnricherMetrics
from enricher.progress import PartitionProgress, Remembered, decode_metadata
from enricher.readback import read_back
from enricher.readiness import readiness
from enricher.records import (
    WRITTEN,
    TranscriptRecord,
    TranscriptStatus,
    encode_record,
    session_id_of,
)
from enricher.settings import EnricherSettings
from sessionflow import metadata_backoff
from sessionflow.kafka_security import aiokafka_connection
from sessionflow.metadata_backoff import backoff_failed_metadata_updates, client_of
from sessionflow.topics import Topics, ensure_topics, max_transcript_record_bytes
from streams.models import format_ms
from streams.readiness import Readiness

log = logging.getLogger("enricher")

_POLL_MS: Final = 100
_READ_BACK_TIMEOUT_S: Final = 30.0
_WRITE_RETRY_FIRST_S: Final = 0.5
_WRITE_RETRY_CAP_S: Final = 10.0
_KAFKA_TIMEOUT_S: Final = 30.0


def now_rfc3339() -> str:
    return format_ms(time.time_ns() // 1_000_000)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, enricher: Enricher) -> None:
        self.enricher = enricher

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.enricher.revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.enricher.assigned(list(assigned))


class Enricher:
    """The consume -> fetch -> produce -> commit loop of one process."""

    def __init__(
        self,
        settings: EnricherSettings,
        metrics: EnricherMetrics,
        *,
        shutdown_timeout_s: float = 20.0,
    ) -> None:
        metadata_backoff.require()  # before any client is made: refused, nothing is left open
        self.settings = settings
        self.metrics = metrics
        self.topics = Topics.for_settings(settings)
        self.client = AgntixClient(settings, metrics)
        self.gate = AuthGate(settings.enricher_auth_retry_seconds)
        self.remembered = Remembered(settings.enricher_remember_sessions)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.capacity = 2 * settings.enricher_concurrency  # fetching plus queued for a slot
        self.started = False
        self.crashed: BaseException | None = None
        self._slots = asyncio.Semaphore(settings.enricher_concurrency)
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        # Partitions assigned but not yet prepared (committed offset, read-back): kept paused.
        self._preparing: set[TopicPartition] = set()
        # When the broker last answered a read of the partitions' ends (or an assignment).
        self._ends_answered_at = time.monotonic()
        self._watching: asyncio.Task[None] | None = None
        self._max_record = max_transcript_record_bytes(settings)
        connection = aiokafka_connection(settings)
        self.consumer = AIOKafkaConsumer(
            **connection,
            group_id=settings.group_id,
            client_id="sessionflow-enricher",
            isolation_level="read_committed",  # the worker's transactions: committed records only
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self.producer = AIOKafkaProducer(
            **connection,
            client_id="sessionflow-enricher",
            acks="all",
            enable_idempotence=True,
            max_request_size=self._max_record,
            linger_ms=5,
        )
        # Reads back the transcripts written after the last commit (no group, nothing committed).
        self.reader = AIOKafkaConsumer(**connection, enable_auto_commit=False, group_id=None)
        self.admin = AIOKafkaAdminClient(
            **connection, request_timeout_ms=int(_KAFKA_TIMEOUT_S * 1000)
        )
        # A failed metadata update waits: else a broker outage with a fetch or a send in flight
        # spins a core (sessionflow/metadata_backoff.py, reliability scenario 16).
        for kafka in (self.consumer, self.producer, self.reader, self.admin):
            backoff_failed_metadata_updates(client_of(kafka))

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await ensure_topics(self.settings, self.topics.specs(self.settings))
        await self.client.start()
        await self.admin.start()
        await self.reader.start()
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe([self.topics.completed], listener=_Rebalance(self))
        self._ends_answered_at = time.monotonic()
        self._watching = asyncio.create_task(self._watch_ends())
        self.started = True

    async def stop(self) -> None:
        """Finish what is in flight (up to the shutdown timeout), commit, close everything."""
        if self._watching is not None:
            self._watching.cancel()
            await asyncio.gather(self._watching, return_exceptions=True)
        tasks = [t for group in self._tasks.values() for t in group]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.started:
            await self.commit()
        for close in (self.consumer.stop, self.producer.stop, self.reader.stop, self.admin.close):
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await close()
        await self.client.close()
        self.started = False

    def readiness(self, now: float) -> Readiness:
        return readiness(
            started=self.started,
            authorized=self.gate.is_open,
            owns=bool(self._progress),
            unanswered_s=now - self._ends_answered_at,
            limit_s=self.settings.enricher_unreachable_seconds,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set."""
        interval = self.settings.enricher_commit_interval_seconds
        last_commit = time.monotonic()
        while not stop.is_set():
            if self.crashed is not None:
                raise EnricherCrashed("a session's task failed unexpectedly") from self.crashed
            free = self.capacity - self.in_flight
            assignment = self.consumer.assignment()
            if free <= 0 or not self.gate.is_open:
                # Keep polling (the group sees us alive) but take no new records.
                self.consumer.pause(*assignment)
            else:
                waiting = set(self.consumer.paused()) - self._preparing
                if waiting:
                    self.consumer.resume(*waiting)
            batches = await self.consumer.getmany(timeout_ms=_POLL_MS, max_records=max(1, free))
            for tp, records in batches.items():
                self._start_batch(tp, records)
            if time.monotonic() - last_commit >= interval:
                await self.commit()
                last_commit = time.monotonic()

    @property
    def in_flight(self) -> int:
        return sum(len(group) for group in self._tasks.values())

    # -- one record ------------------------------------------------------------------------

    def _start_batch(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        progress = self._progress.get(tp)
        if progress is None:
            # Not prepared (or revoked meanwhile): read them again later, never skip one.
            if records and tp in self.consumer.assignment():
                self.consumer.seek(tp, records[0].offset)
            return
        for record in records:
            self._start(tp, record, progress)

    def _start(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], progress: PartitionProgress
    ) -> None:
        progress.start(record.offset)
        task = asyncio.create_task(self._handle(tp, record, progress))
        group = self._tasks.setdefault(tp, set())
        group.add(task)
        self.metrics.in_flight.inc()

        def done(finished: asyncio.Task[None]) -> None:
            group.discard(finished)
            self.metrics.in_flight.dec()
            if not finished.cancelled() and finished.exception() is not None:
                # Its offset would hold the partition's commits back for ever: stop instead,
                # and the restart fetches it again (at least once).
                self.crashed = finished.exception()

        task.add_done_callback(done)

    async def _handle(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], progress: PartitionProgress
    ) -> None:
        session_id = session_id_of(record.key, record.value)
        if session_id is None:
            log.warning(
                "completed record without a session id skipped",
                extra={"fields": {"partition": tp.partition, "offset": record.offset}},
            )
            self.metrics.skipped.labels("invalid_input").inc()
            progress.finish(record.offset, None)
            return
        if session_id in self.remembered:
            self.metrics.skipped.labels("already_written").inc()
            progress.finish(record.offset, None)
            return
        async with self._slots:
            result = await self._fetch(session_id)
        written = await self._write(tp.partition, session_id, result)
        progress.finish(record.offset, written)

    async def _fetch(self, session_id: str) -> Finished:
        while True:
            await self.gate.wait()
            result = await self.client.fetch_transcript(session_id)
            if isinstance(result, Finished):
                if self.gate.accepted():
                    self.metrics.authorized.set(1)
                    log.warning("the Agntix API accepts the credential again; fetching resumes")
                return result
            self.metrics.auth_failures.labels(str(result.http_status)).inc()
            self.metrics.authorized.set(0)
            fields = {
                "http_status": result.http_status,
                "auth": self.settings.auth_scheme,
                "retry_seconds": self.settings.enricher_auth_retry_seconds,
            }
            if self.gate.refused(result.http_status):
                log.error(
                    "the Agntix API refuses the credential: fetching paused, positions kept; "
                    "fix AGNTIX_API_KEY / AGNTIX_API_TOKEN",
                    extra={"fields": fields},
                )
            else:
                log.warning("the Agntix API still refuses the credential", extra={"fields": fields})

    async def _write(self, partition: int, session_id: str, result: Finished) -> int:
        """Write the record (retrying until Kafka takes it); its offset in the transcripts topic."""
        record = to_record(session_id, result, now_rfc3339())
        value = encode_record(record)
        if len(value) > self._max_record:
            record = too_large_record(record, self._max_record)
            value = encode_record(record)
        delay = _WRITE_RETRY_FIRST_S
        while True:
            try:
                # The input's partition: transcripts are co-partitioned with completed sessions.
                sent = await self.producer.send(
                    self.topics.transcripts,
                    value,
                    key=session_id.encode(),
                    partition=partition,
                    headers=[("status", record.status.value.encode())],
                )
                metadata = await sent
            except MessageSizeTooLargeError:
                record = too_large_record(record, self._max_record)
                value = encode_record(record)
                continue
            except KafkaError as exc:
                log.warning(
                    "writing a transcript failed; retrying",
                    extra={"fields": {"error": type(exc).__name__, "retry_in_s": delay}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _WRITE_RETRY_CAP_S)
                continue
            break
        self._written(record)
        offset: int = metadata.offset
        return offset

    def _written(self, record: TranscriptRecord) -> None:
        self.metrics.finished(record.status, record.httpStatus, record.error)
        if record.status in WRITTEN:
            self.remembered.add(record.sessionId)
        else:
            self.remembered.discard(record.sessionId)
        fields: dict[str, Any] = {
            "session_id": record.sessionId,
            "status": record.status.value,
            "messages": record.messageCount,
            "attempts": record.attempts,
            "pages": record.pages,
            "http_status": record.httpStatus,
        }
        if record.status is TranscriptStatus.FAILED:
            fields |= {"error": record.error, "detail": record.detail}
            log.warning("transcript failed", extra={"fields": fields})
        else:
            log.info("transcript written", extra={"fields": fields})

    # -- offsets and rebalances ------------------------------------------------------------

    async def commit(self) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, progress in self._progress.items():
            pending = progress.pending_commit()
            if pending is not None:
                offsets[tp] = OffsetAndMetadata(*pending)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance in between: the next owner starts from the last good commit.
            log.warning("commit failed", extra={"fields": {"error": type(exc).__name__}})
            return
        for tp, committed in offsets.items():
            owned = self._progress.get(tp)
            if owned is not None:
                owned.committed_at(committed.offset, committed.metadata)

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        tasks = [t for tp in revoked for t in self._tasks.get(tp, ())]
        for task in tasks:
            task.cancel()  # the next owner fetches them again: at least once
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.commit()
        for tp in revoked:
            self._preparing.discard(tp)
            self._progress.pop(tp, None)
            self._tasks.pop(tp, None)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(str(tp.partition))

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        self._ends_answered_at = time.monotonic()  # the group's coordinator just answered
        if not assigned:
            return
        # Nothing is fetched from these partitions until the commit's read-back is done.
        self._preparing |= set(assigned)
        self.consumer.pause(*assigned)
        try:
            await self._prepare(assigned)
        finally:
            self._preparing -= set(assigned)

    async def _prepare(self, assigned: list[TopicPartition]) -> None:
        try:
            await self._read_back_commits(assigned)
        except (KafkaError, OSError, TimeoutError) as exc:
            # Without the read-back a crash's last sessions may be fetched again: at least once.
            log.warning(
                "could not read the committed metadata back; going on without it",
                extra={"fields": {"error": type(exc).__name__}},
            )
        for tp in assigned:
            self._progress.setdefault(tp, PartitionProgress())

    async def _read_back_commits(self, assigned: list[TopicPartition]) -> None:
        committed = await self.admin.list_consumer_group_offsets(
            self.settings.group_id, partitions=assigned
        )
        starts: dict[int, int] = {}
        for tp in assigned:
            found = committed.get(tp)
            offset = found.offset if found is not None and found.offset >= 0 else None
            resume = decode_metadata(found.metadata) if found is not None else None
            self._progress[tp] = PartitionProgress(committed=offset, resume_from=resume)
            if resume is not None:
                starts[tp.partition] = resume
        if starts:
            found_ids = await read_back(
                self.reader, self.topics.transcripts, starts, _READ_BACK_TIMEOUT_S
            )
            for session_id in found_ids:
                self.remembered.add(session_id)
            log.info(
                "read back transcripts written after the last commit",
                extra={"fields": {"partitions": sorted(starts), "sessions": len(found_ids)}},
            )

    async def _watch_ends(self) -> None:
        """Every commit interval, the stable ends of the prepared partitions (read_committed):
        their lag, also while they are paused, and the proof that the broker answers."""
        while True:
            await asyncio.sleep(self.settings.enricher_commit_interval_seconds)
            partitions = list(self._progress)
            try:
                ends = await self.consumer.end_offsets(partitions) if partitions else {}
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning(
                    "could not read the input's ends",
                    extra={"fields": {"error": type(exc).__name__}},
                )
                continue
            self._ends_answered_at = time.monotonic()
            self.metrics.ends_read.set(time.time())
            for tp, end in ends.items():
                progress = self._progress.get(tp)  # revoked meanwhile: no gauge again
                position = progress.position() if progress is not None else None
                if position is not None:
                    self.metrics.consumer_lag.labels(str(tp.partition)).set(max(0, end - position))
