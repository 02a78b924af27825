"""`sessionflow tail`: print a topic's records as JSON lines without joining a consumer group."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from cli.errors import CliError
from sessionflow.kafka_security import aiokafka_connection, refusal
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics
from streams.runtime.runner import Record as FetchedRecord

_POLL_MS = 500
_START_TIMEOUT_S = 30.0


class Which(StrEnum):
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    TRANSCRIPTS = "transcripts"
    DLQ = "dlq"
    RAW = "raw"


class TailError(CliError, RuntimeError):
    """The topic cannot be read (missing, or the broker does not answer)."""


class Record(FetchedRecord, Protocol):
    """What tail reads of an aiokafka ConsumerRecord: what the worker reads, and where it is."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


def topic_for(which: Which, topics: Topics) -> str:
    return {
        Which.COMPLETED: topics.completed,
        Which.INCOMPLETE: topics.incomplete,
        Which.TRANSCRIPTS: topics.transcripts,
        Which.DLQ: topics.dlq,
        Which.RAW: topics.raw,
    }[which]


def bytes_field(name: str, data: bytes | None) -> dict[str, str | None]:
    """`{name: text}` for UTF-8 bytes, else `{name_base64: ...}`: readable, never lossy."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


def describe(record: Record, which: Which) -> Any:
    """The JSON value printed for one record.

    Output topics hold our own JSON: print it as is. Raw and DLQ records are opaque bytes
    with headers (reason, stage, message-id...): print both, the body as text when it is UTF-8.
    """
    if which in (Which.COMPLETED, Which.INCOMPLETE, Which.TRANSCRIPTS) and record.value is not None:
        try:
            return orjson.loads(record.value)
        except orjson.JSONDecodeError:
            pass  # not ours after all: shown like a raw record below
    headers: dict[str, Any] = {}
    for name, data in record.headers:
        headers.update(bytes_field(name, data))
    return {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        **bytes_field("key", record.key),
        "headers": headers,
        **bytes_field("body", record.value),
    }


def render(value: Any, *, pretty: bool) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, option=option) + b"\n"


def reached(positions: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> bool:
    """True when every partition has been read up to the end offset found at start."""
    return all(positions.get(tp, 0) >= end for tp, end in ends.items())


@dataclass(frozen=True, slots=True)
class TailOptions:
    which: Which
    from_beginning: bool = False
    follow: bool = False
    max_records: int | None = None
    pretty: bool = False


async def tail(settings: KafkaSettings, options: TailOptions, out: TextIO) -> int:
    """Print records; without `follow`, stop at the end offsets found at start. Returns the count.

    No group id: partitions are assigned by hand and nothing is committed, so tailing never
    moves anyone's offsets or triggers a rebalance.
    """
    topic = topic_for(options.which, Topics.for_settings(settings))
    consumer = await started_reader(settings)
    try:
        partitions = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        if options.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        # read_committed: these are last stable offsets, so nothing uncommitted is awaited.
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        printed = 0
        while options.max_records is None or printed < options.max_records:
            if not options.follow and reached(await _positions(consumer, partitions), ends):
                break
            batches = await consumer.getmany(*partitions, timeout_ms=_POLL_MS)
            for record in _in_order(batches.values()):
                if (
                    not options.follow
                    and record.offset >= ends[TopicPartition(record.topic, record.partition)]
                ):
                    continue
                out.write(render(describe(record, options.which), pretty=options.pretty).decode())
                printed += 1
                if options.max_records is not None and printed >= options.max_records:
                    break
            out.flush()
        return printed
    finally:
        await consumer.stop()


async def started_reader(settings: KafkaSettings) -> AIOKafkaConsumer:
    """A started read_committed consumer without a group id (tail's and inspect's): nothing is
    committed and no group rebalances. TailError when Kafka does not answer, or refuses this
    client (saying why: the credentials, a certificate)."""
    consumer = AIOKafkaConsumer(
        **aiokafka_connection(settings),
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    try:
        await asyncio.wait_for(consumer.start(), _START_TIMEOUT_S)
    except (KafkaError, OSError, TimeoutError) as exc:
        await consumer.stop()
        raise await not_started(settings, exc) from exc
    return consumer


async def not_started(settings: KafkaSettings, exc: BaseException) -> TailError:
    """The error of a tool whose Kafka client did not start: Kafka refuses it (saying why: the
    credentials, a certificate), or does not answer."""
    why = await refusal(settings, _START_TIMEOUT_S)
    return TailError(why or f"Kafka at {settings.kafka_bootstrap_servers} does not answer: {exc!r}")


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, for manual assignment; TailError if it does not exist."""
    if topic not in await consumer.topics():
        raise TailError(f"topic {topic} does not exist (run `sessionflow topics` to create it)")
    # topics() does not fill the client's own metadata, and aiokafka has no public way to
    # load one topic's partitions without subscribing (which needs a group): refresh it.
    async with asyncio.timeout(_START_TIMEOUT_S):
        while not (found := consumer.partitions_for_topic(topic)):
            await consumer._client.force_metadata_update()
    return [TopicPartition(topic, p) for p in sorted(found)]


async def _positions(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    return {tp: await consumer.position(tp) for tp in partitions}


def _in_order(batches: Iterable[list[Any]]) -> list[Any]:
    return sorted((r for recs in batches for r in recs), key=lambda r: (r.timestamp, r.partition))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "which",
        type=Which,
        choices=list(Which),
        help="completed or incomplete sessions, transcripts, dead letters (dlq), or raw webhooks",
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest retained record (default: only records written from now on)",
    )
    parser.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep waiting for new records (default: stop at the end found at start)",
    )
    parser.add_argument(
        "--max", dest="max_records", type=int, default=None, help="stop after N records"
    )


def run(args: argparse.Namespace) -> int:
    options = TailOptions(
        which=args.which,
        from_beginning=args.from_beginning,
        follow=args.follow,
        max_records=args.max_records,
        pretty=sys.stdout.isatty(),
    )
    try:
        asyncio.run(tail(KafkaSettings(), options, sys.stdout))
    except TailError as exc:
        sys.stderr.write(f"sessionflow tail: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `| head`: the reader has gone; stop quietly as other Unix tools do.
        sys.stderr.close()
        return 0
    return 0
