"""`sessionflow dlq replay`: re-publish dead letters to the raw topic, once, after a fix.

Idempotence has two layers. Replay itself: each batch's raw-topic writes and the replay
group's DLQ offsets commit in one Kafka transaction, so a record is re-published at most once
per progress group, even across a crash. Downstream: the worker dedups by message id and
content digest, so even a record replayed twice (e.g. under two different `--reason` filters,
which keep separate progress) never completes a session twice.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from cli.tail import TailError, not_started, partitions_of
from producer.envelope import parse_envelope
from producer.errors import EnvelopeError
from sessionflow.kafka_security import aiokafka_connection
from sessionflow.raw_record import (
    EVENT_TYPE,
    MESSAGE_ID,
    REASON,
    RECEIVED_AT,
    REPLAYED_FROM,
)
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics

GROUP = "sessionflow-dlq-replay"
# What the raw topic's readers use; the DLQ's reason and stage stay behind.
CARRIED_HEADERS = (MESSAGE_ID, EVENT_TYPE, RECEIVED_AT)
NO_REASON = "unknown"
_POLL_MS = 500
_START_TIMEOUT_S = 30.0

Headers = list[tuple[str, bytes]]
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    reasons: frozenset[str] = frozenset()
    dry_run: bool = False
    max_records: int | None = None
    batch_size: int = 500


@dataclass(slots=True)
class ReplaySummary:
    scanned: int = 0
    replayed: int = 0
    skipped_by_filter: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False

    def render(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        lines = [
            f"sessionflow dlq replay{' (dry run: nothing written)' if self.dry_run else ''}",
            f"  scanned            {self.scanned} dead letters not replayed before",
            f"  {verb:<18} {self.replayed}",
            f"  skipped by filter  {self.skipped_by_filter}",
        ]
        for reason, count in sorted(self.by_reason.items()):
            lines.append(f"    {verb} {reason}: {count}")
        for reason, count in sorted(self.skipped_reasons.items()):
            lines.append(f"    skipped {reason}: {count}")
        return "\n".join(lines) + "\n"


def header_map(headers: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    return dict(headers)


def reason_of(headers: Mapping[str, bytes]) -> str:
    return headers.get(REASON, b"").decode("utf-8", "replace") or NO_REASON


def group_for(settings: KafkaSettings, reasons: frozenset[str]) -> str:
    """The progress group: one per filter, so replaying reason A later does not hide reason B.

    Reasons go through a digest: they are free text and group ids must stay short.
    """
    base = f"{settings.topic_namespace}{GROUP}"
    if not reasons:
        return base
    digest = hashlib.blake2b("\n".join(sorted(reasons)).encode(), digest_size=6).hexdigest()
    return f"{base}.{digest}"


def replay_record(
    key: bytes | None, body: bytes, headers: Mapping[str, bytes], partition: int, offset: int
) -> tuple[bytes | None, Headers]:
    """The raw-topic key and headers for one dead letter.

    A producer dead letter has no key (its envelope did not parse then); if it parses now,
    it is keyed as the producer would key it, so both halves of a session share a partition.
    """
    out: Headers = [(name, headers[name]) for name in CARRIED_HEADERS if name in headers]
    if key is None or EVENT_TYPE not in headers:
        try:
            envelope = parse_envelope(body)
        except EnvelopeError:
            pass  # still unusable: the worker dead-letters it again with its reason
        else:
            key = key if key is not None else envelope.key
            if EVENT_TYPE not in headers:
                out.append((EVENT_TYPE, envelope.event_type.encode()))
    if key is None:
        key = headers.get(MESSAGE_ID)
    out.append((REPLAYED_FROM, f"{partition}:{offset}".encode()))
    return key, out


async def replay(
    settings: KafkaSettings, options: ReplayOptions, progress: ProgressFn | None = None
) -> ReplaySummary:
    topics = Topics.for_settings(settings)
    group = group_for(settings, options.reasons)
    summary = ReplaySummary(dry_run=options.dry_run)
    consumer = AIOKafkaConsumer(
        **aiokafka_connection(settings),
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer: AIOKafkaProducer | None = None
    if not options.dry_run:
        producer = AIOKafkaProducer(
            **aiokafka_connection(settings),
            acks="all",
            enable_idempotence=True,
            # Stable per group: a second concurrent replay fences the first instead of racing it.
            transactional_id=f"{group}.tx",
        )
    try:
        try:
            await asyncio.wait_for(consumer.start(), _START_TIMEOUT_S)
            if producer is not None:
                await asyncio.wait_for(producer.start(), _START_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise await not_started(settings, exc) from exc
        partitions = await partitions_of(consumer, topics.dlq)
        consumer.assign(partitions)
        starts: dict[TopicPartition, int] = {}
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
            starts[tp] = await consumer.position(tp)
        # Stop at the ends found now: records dead-lettered meanwhile wait for the next run.
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        total = sum(max(0, ends[tp] - starts[tp]) for tp in partitions)
        done_at = dict(starts)
        if progress:
            progress(0, total)
        while True:
            active = [tp for tp in partitions if done_at[tp] < ends[tp]]
            if not active:
                break
            if options.max_records is not None and summary.scanned >= options.max_records:
                break
            room = options.batch_size
            if options.max_records is not None:
                room = min(room, options.max_records - summary.scanned)
            batches = await consumer.getmany(*active, timeout_ms=_POLL_MS, max_records=room)
            sends: list[tuple[bytes | None, bytes, Headers]] = []
            advanced: dict[TopicPartition, int] = {}
            for tp in active:
                for record in batches.get(tp, []):
                    if record.offset >= ends[tp]:
                        continue  # past this run's end; read again next run
                    summary.scanned += 1
                    headers = header_map(record.headers)
                    reason = reason_of(headers)
                    if options.reasons and reason not in options.reasons:
                        summary.skipped_by_filter += 1
                        summary.skipped_reasons[reason] += 1
                    else:
                        summary.replayed += 1
                        summary.by_reason[reason] += 1
                        key, out = replay_record(
                            record.key, record.value or b"", headers, tp.partition, record.offset
                        )
                        sends.append((key, record.value or b"", out))
                # The position also steps over transaction markers, which carry no record.
                advanced[tp] = min(await consumer.position(tp), ends[tp])
            moved = {tp: off for tp, off in advanced.items() if off > done_at[tp]}
            if producer is not None and moved:
                await _commit_batch(producer, topics.raw, sends, moved, group)
            done_at.update(moved)
            if progress:
                progress(sum(done_at[tp] - starts[tp] for tp in partitions), total)
        return summary
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()


async def _commit_batch(
    producer: AIOKafkaProducer,
    raw_topic: str,
    sends: list[tuple[bytes | None, bytes, Headers]],
    offsets: dict[TopicPartition, int],
    group: str,
) -> None:
    """The batch's writes and the group's new offsets: both or neither."""
    async with producer.transaction():
        futures = [
            await producer.send(raw_topic, body, key=key, headers=headers)
            for key, body, headers in sends
        ]
        await asyncio.gather(*futures)
        await producer.send_offsets_to_transaction(offsets, group)


class _RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not sys.stderr.isatty(),
        )
        self._task = self._progress.add_task("dlq replay", total=None)

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def __call__(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="dlq_command", metavar="ACTION")
    actions.required = True
    replayer = actions.add_parser(
        "replay",
        help="re-publish dead letters to the raw topic (after a fix)",
        description=(
            "Re-publish dead-lettered records to the raw topic with their key, body and original "
            "message-id/event-type/received-at headers, plus replayed-from=<dlq partition>:<offset>. "
            "Progress is kept in the consumer group sessionflow-dlq-replay (one per --reason "
            "filter), committed in the same transaction as the writes: running it twice "
            "re-publishes nothing. The worker's dedup keeps a session from completing twice."
        ),
    )
    replayer.add_argument(
        "--reason",
        action="append",
        default=[],
        metavar="R",
        help="replay only dead letters with this reason header (repeatable)",
    )
    replayer.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed; write nothing"
    )
    replayer.add_argument(
        "--max", dest="max_records", type=int, default=None, help="look at N dead letters at most"
    )
    replayer.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = ReplayOptions(
        reasons=frozenset(args.reason), dry_run=args.dry_run, max_records=args.max_records
    )
    try:
        with _RichProgress() as progress:
            summary = asyncio.run(replay(KafkaSettings(), options, progress))
    except (TailError, KafkaError, TimeoutError) as exc:
        sys.stderr.write(f"sessionflow dlq replay: {exc}\n")
        return 1
    sys.stdout.write(summary.render())
    return 0
