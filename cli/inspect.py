"""`sessionflow inspect SESSION_ID`: one session's story from the topics and the worker's table.

Read-only and bounded: the session's partition follows from its key (every project topic has
the raw topic's partition count, and every record about a session is keyed by its id), so one
partition of each topic is read, from the first record at or after `--since` (Kafka's time
index) to the last stable offset found at start, as a read_committed consumer without a group.
The verdict is decided by `story_verdict`, a pure function of what was found.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

import aiohttp
import orjson
from aiokafka import TopicPartition

from cli.errors import CliError
from cli.tail import Record, TailError, partitions_of, reached, started_reader
from sessionflow import raw_record
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics

Verdict: TypeAlias = Literal["completed", "waiting", "incomplete", "dead_lettered", "unknown"]
DEFAULT_SINCE: Final = "72h"  # the default session TTL (48 h) and then some
_POLL_MS: Final = 300
_READ_TIMEOUT_S: Final = 120.0
_WORKER_TIMEOUT_S: Final = 10.0
_DURATION: Final = re.compile(r"^(\d+)([smhd])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class InspectError(CliError, RuntimeError):
    """The story cannot be read: a bad argument, a missing topic, no broker."""


def parse_since(text: str, now: datetime) -> datetime:
    """`72h`, `30m`, `7d`, `90s` before `now`, or an RFC 3339 time."""
    if match := _DURATION.match(text.strip()):
        amount, unit = match.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InspectError(f"--since: {text!r} is neither a duration (72h) nor a time") from exc
    if moment.tzinfo is None:
        raise InspectError("--since: give the time with its offset (Z for UTC)")
    return moment


def _header(record: Record, name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


_RAW_FIELDS: Final = {
    "messageId": raw_record.MESSAGE_ID,
    "eventType": raw_record.EVENT_TYPE,
    "receivedAt": raw_record.RECEIVED_AT,
}
_DEAD_LETTER_FIELDS: Final = {
    "messageId": raw_record.MESSAGE_ID,
    "reason": raw_record.REASON,
    "stage": raw_record.STAGE,
    "receivedAt": raw_record.RECEIVED_AT,
}


def header_entry(record: Record, fields: dict[str, str]) -> dict[str, object]:
    """A record's offset, timestamp and these headers (never its body: personal data)."""
    entry: dict[str, object] = {"offset": record.offset, "timestamp": record.timestamp}
    entry.update({name: _header(record, header) for name, header in fields.items()})
    return entry


def raw_entry(record: Record) -> dict[str, object]:
    return header_entry(record, _RAW_FIELDS)


def dead_letter_entry(record: Record) -> dict[str, object]:
    return header_entry(record, _DEAD_LETTER_FIELDS)


def output_entry(record: Record, fields: Sequence[str]) -> dict[str, object]:
    """An output record's offset and a few of its fields (not its metadata: personal data)."""
    entry: dict[str, object] = {"offset": record.offset, "timestamp": record.timestamp}
    try:
        doc = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return {**entry, "error": "not JSON"}
    if isinstance(doc, dict):
        entry.update({name: doc[name] for name in fields if name in doc})
    return entry


@dataclass
class Story:
    """Everything found about one session."""

    session_id: str
    partition: int
    since: str
    raw: list[dict[str, object]] = field(default_factory=list)
    dead_letters: list[dict[str, object]] = field(default_factory=list)
    completed: list[dict[str, object]] = field(default_factory=list)
    incomplete: list[dict[str, object]] = field(default_factory=list)
    # The worker's answer (its JSON body and HTTP status), or why there is none.
    table: dict[str, object] | None = None


def story_verdict(story: Story) -> tuple[Verdict, str]:
    """The verdict and its one line. An output record is final; then what the table holds;
    then dead letters; raw halves with neither output nor table state are still waiting."""
    if story.completed:
        first = story.completed[0]
        return "completed", f"completed at {first.get('completedAt')} (offset {first['offset']})"
    table_state = (story.table or {}).get("state")
    if story.incomplete:
        last = story.incomplete[-1]
        return "incomplete", f"incomplete: {last.get('reason')} (expired {last.get('expiredAt')})"
    if table_state == "completed":
        return "completed", (
            f"completed at {(story.table or {}).get('completedAt')} "
            "(the table's marker; the record is older than --since)"
        )
    if table_state == "waiting":
        table = story.table or {}
        return "waiting", (
            f"waiting for {table.get('waitingFor')} (has {table.get('half')}, "
            f"expires at {table.get('expiresAt')})"
        )
    if story.dead_letters:
        reasons = sorted({str(d.get("reason")) for d in story.dead_letters})
        return "dead_lettered", f"dead-lettered: {', '.join(reasons)}"
    halves = [r for r in story.raw if str(r.get("eventType", "")).startswith("session.")]
    if halves:
        return "waiting", (
            f"waiting: {len(halves)} raw record(s), no output yet, the table did not say "
            f"({(story.table or {}).get('error', 'no answer')})"
        )
    if story.raw:
        return "unknown", f"{len(story.raw)} raw record(s), none of them a session half"
    return "unknown", f"never seen since {story.since}"


def to_json(story: Story) -> dict[str, object]:
    verdict, line = story_verdict(story)
    return {
        "sessionId": story.session_id,
        "verdict": verdict,
        "summary": line,
        "partition": story.partition,
        "since": story.since,
        "raw": story.raw,
        "deadLetters": story.dead_letters,
        "table": story.table,
        "completed": story.completed,
        "incomplete": story.incomplete,
    }


def to_text(story: Story) -> str:
    verdict, line = story_verdict(story)
    out = [f"session {story.session_id}: {line}", f"  partition {story.partition}"]
    out.append(f"  raw records since {story.since}: {len(story.raw)}")
    out += [
        f"    @{r['offset']} {r['eventType']} {r['messageId']} received {r['receivedAt']}"
        for r in story.raw
    ]
    if story.dead_letters:
        out.append(f"  dead letters: {len(story.dead_letters)}")
        out += [
            f"    @{d['offset']} {d['reason']} ({d['stage']}) {d['messageId']}"
            for d in story.dead_letters
        ]
    table = story.table or {}
    out.append(f"  table: {table.get('state') or table.get('error') or 'no answer'}")
    for name, records in (("completed", story.completed), ("incomplete", story.incomplete)):
        out += [f"  {name} record @{r['offset']}" for r in records]
    out.append(f"  verdict: {verdict}")
    return "\n".join(out) + "\n"


async def read_partition(
    settings: KafkaSettings, session_id: str, since: datetime
) -> tuple[int, dict[str, list[Record]]]:
    """The session's partition and its records in raw, dlq, completed and incomplete."""
    topics = Topics.for_settings(settings)
    names = {"raw": topics.raw, "dlq": topics.dlq, "completed": topics.completed}
    names["incomplete"] = topics.incomplete
    key = session_id.encode()
    consumer = await started_reader(settings)
    try:
        partition = raw_record.partition_for_key(
            key, len(await partitions_of(consumer, topics.raw))
        )
        tps = {which: TopicPartition(name, partition) for which, name in names.items()}
        for name in names.values():
            if len(await partitions_of(consumer, name)) <= partition:
                raise InspectError(f"{name} has fewer partitions than {topics.raw}")
        consumer.assign(list(tps.values()))
        since_ms = int(since.timestamp() * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps.values(), since_ms))
        # read_committed: last stable offsets, so nothing uncommitted is waited for.
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(tps.values()))
        for tp, found in starts.items():
            consumer.seek(tp, ends[tp] if found is None else found.offset)
        by_topic: dict[str, list[Record]] = {which: [] for which in names}
        which_of = {tp: which for which, tp in tps.items()}
        async with asyncio.timeout(_READ_TIMEOUT_S):
            while not reached({tp: await consumer.position(tp) for tp in ends}, ends):
                batches = await consumer.getmany(timeout_ms=_POLL_MS)
                for tp, records in batches.items():
                    by_topic[which_of[tp]] += [
                        r for r in records if r.key == key and r.offset < ends[tp]
                    ]
        return partition, by_topic
    finally:
        await consumer.stop()


async def ask_worker(worker_url: str, session_id: str, *, full: bool = False) -> dict[str, object]:
    url = f"{worker_url.rstrip('/')}/sessions/{session_id}" + ("?full=true" if full else "")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_WORKER_TIMEOUT_S)) as http,
            http.get(url) as response,
        ):
            body: Any = await response.json(content_type=None)
            answer = body if isinstance(body, dict) else {"answer": body}
            return {**answer, "httpStatus": response.status}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"error": "worker_unreachable", "detail": f"{url}: {type(exc).__name__}"}


async def inspect(
    settings: KafkaSettings,
    session_id: str,
    since: datetime,
    worker_url: str,
    *,
    full: bool = False,
) -> Story:
    (partition, found), table = await asyncio.gather(
        read_partition(settings, session_id, since), ask_worker(worker_url, session_id, full=full)
    )
    return Story(
        session_id=session_id,
        partition=partition,
        since=since.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        raw=[raw_entry(r) for r in found["raw"]],
        dead_letters=[dead_letter_entry(r) for r in found["dlq"]],
        completed=[
            output_entry(r, ("completedAt", "created", "ended")) for r in found["completed"]
        ],
        incomplete=[
            output_entry(r, ("reason", "expiredAt", "received")) for r in found["incomplete"]
        ],
        table=table,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session_id", help="the session's id (a UUID, as the webhook spells it)")
    parser.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help=f"read records written since this long ago (72h, 30m, 7d) or this RFC 3339 time "
        f"(default {DEFAULT_SINCE})",
    )
    parser.add_argument(
        "--worker",
        default="http://127.0.0.1:6066",
        help="any worker's web URL; it forwards to the session's owner (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object, with `verdict`")
    parser.add_argument(
        "--full",
        action="store_true",
        help="the waiting half unredacted (phone number, session variables): only for the case "
        "at hand (README, 'Keep the inside inside')",
    )


def run(args: argparse.Namespace) -> int:
    try:
        uuid.UUID(args.session_id)
    except ValueError:
        sys.stderr.write(f"sessionflow inspect: {args.session_id!r} is not a UUID\n")
        return 2
    started = time.monotonic()
    try:
        since = parse_since(args.since, datetime.now(UTC))
        story = asyncio.run(
            inspect(KafkaSettings(), args.session_id, since, args.worker, full=args.full)
        )
    except (InspectError, TailError) as exc:
        sys.stderr.write(f"sessionflow inspect: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(to_json(story)).decode() + "\n")
    else:
        sys.stdout.write(to_text(story))
        sys.stdout.write(f"  (read in {time.monotonic() - started:.1f}s)\n")
    return 0
