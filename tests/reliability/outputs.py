"""What the scenarios read back: the output topics, the invariants over them, offsets, logs."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from cli.delivery import SendReport
from tests.integration.worker_fixtures import WorkerEnv
from tests.kafka_helpers import reader
from tests.reliability.harness import RECOVERY_S

# -- reading topics ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


async def read_all(bootstrap: str, topic: str, timeout_s: float = RECOVERY_S) -> list[Rec]:
    """Every committed record of a topic, up to its last stable offset now (read_committed)."""
    out: list[Rec] = []
    async with reader(bootstrap) as consumer:
        async with asyncio.timeout(timeout_s):
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()  # first use of the topic
                parts = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            # With read_committed, the end offsets are the last stable offsets.
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=300)
                for tp, recs in batches.items():
                    out += [
                        Rec(
                            tp.partition,
                            r.offset,
                            r.key,
                            r.value,
                            {k: bytes(v) for k, v in (r.headers or ())},
                        )
                        for r in recs
                    ]
    return out


def session_ids(records: Iterable[Rec]) -> Counter[str]:
    return Counter(str(orjson.loads(r.value)["sessionId"]) for r in records)


@dataclass
class Expected:
    """What the topics must hold, from what the sender got a 2xx for (and what went in directly)."""

    delivered_ids: set[str] = field(default_factory=set)
    complete: set[str] = field(default_factory=set)
    incomplete: dict[str, str] = field(default_factory=dict)
    sent: int = 0
    accepted: int = 0

    def add(self, report: SendReport) -> None:
        complete, incomplete, _ = report.expected()
        self.delivered_ids |= report.delivered_message_ids
        self.sent += report.requests
        self.accepted += len(report.delivered)
        self.merge(complete, {k: str(v) for k, v in incomplete.items()})

    def merge(self, complete: set[str], incomplete: dict[str, str]) -> None:
        for sid, reason in incomplete.items():
            if sid in self.complete:
                continue
            held = self.incomplete.get(sid)
            if held is not None and held != reason:
                # One send delivered one half, another the other: a complete session.
                del self.incomplete[sid]
                self.complete.add(sid)
            else:
                self.incomplete[sid] = reason
        for sid in complete:
            self.complete.add(sid)
            self.incomplete.pop(sid, None)


@dataclass
class Outcome:
    raw: list[Rec]
    completed: list[Rec]
    incomplete: list[Rec]
    dlq: list[Rec]
    waited_s: float


async def wait_outputs(
    env: WorkerEnv, expected: Expected, timeout_s: float = RECOVERY_S, settle_s: float = 3.0
) -> Outcome:
    """Read the outputs until they hold as many sessions as expected (or the deadline), then once
    more after `settle_s` so that a late duplicate would show up."""
    topics = env.topics
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        completed = await read_all(env.bootstrap, topics.completed)
        incomplete = await read_all(env.bootstrap, topics.incomplete)
        if (
            len(completed) >= len(expected.complete) and len(incomplete) >= len(expected.incomplete)
        ) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    waited = time.monotonic() - started
    await asyncio.sleep(settle_s)
    return Outcome(
        raw=await read_all(env.bootstrap, topics.raw),
        completed=await read_all(env.bootstrap, topics.completed),
        incomplete=await read_all(env.bootstrap, topics.incomplete),
        dlq=await read_all(env.bootstrap, topics.dlq),
        waited_s=waited,
    )


def assert_invariants(outcome: Outcome, expected: Expected) -> dict[str, int]:
    """The four invariants of every scenario; returns the counts for the report."""
    _dump(outcome, expected)
    raw_ids = {r.headers.get("message-id", b"").decode() for r in outcome.raw}
    lost = expected.delivered_ids - raw_ids
    assert not lost, (
        f"{len(lost)} webhooks answered 2xx are missing from the raw topic: {sorted(lost)[:5]}"
    )
    completed = session_ids(outcome.completed)
    doubled = {s: n for s, n in completed.items() if n > 1}
    assert not doubled, f"sessions completed more than once: {doubled}"
    missing = expected.complete - set(completed)
    assert not missing, f"{len(missing)} complete sessions never completed: {sorted(missing)[:5]}"
    extra = set(completed) - expected.complete
    assert not extra, f"completed records for sessions not expected complete: {sorted(extra)[:5]}"
    incomplete = session_ids(outcome.incomplete)
    doubled = {s: n for s, n in incomplete.items() if n > 1}
    assert not doubled, f"sessions reported incomplete more than once: {doubled}"
    assert set(incomplete) == set(expected.incomplete), (
        f"incomplete mismatch: missing {sorted(set(expected.incomplete) - set(incomplete))[:5]}, "
        f"extra {sorted(set(incomplete) - set(expected.incomplete))[:5]}"
    )
    reasons = {
        str(orjson.loads(r.value)["sessionId"]): orjson.loads(r.value)["reason"]
        for r in outcome.incomplete
    }
    assert reasons == expected.incomplete
    return {
        "raw records": len(outcome.raw),
        "completed": len(completed),
        "incomplete": len(incomplete),
        "dlq": len(outcome.dlq),
    }


def outcome_rows(outcome: Outcome, expected: Expected) -> dict[str, object]:
    """The report's rows that set the records found against the sessions expected."""
    return {
        "expected completed / incomplete": f"{len(expected.complete)} / {len(expected.incomplete)}",
        "completed records": len(outcome.completed),
        "incomplete records": len(outcome.incomplete),
    }


def _dump(outcome: Outcome, expected: Expected) -> None:
    """Everything a failure needs for its diagnosis, as JSON lines (SESSIONFLOW_RELIABILITY_DUMP)."""
    target = os.environ.get("SESSIONFLOW_RELIABILITY_DUMP")
    if not target:
        return
    with open(target, "wb") as out:
        for name in ("raw", "completed", "incomplete", "dlq"):
            for r in getattr(outcome, name):
                out.write(
                    orjson.dumps(
                        {
                            "topic": name,
                            "p": r.partition,
                            "o": r.offset,
                            "key": (r.key or b"").decode(errors="replace"),
                            "h": {k: v.decode(errors="replace") for k, v in r.headers.items()},
                            "v": r.value.decode(errors="replace")[:300],
                        }
                    )
                    + b"\n"
                )
        out.write(
            orjson.dumps(
                {
                    "expected_complete": sorted(expected.complete),
                    "expected_incomplete": expected.incomplete,
                }
            )
            + b"\n"
        )


# -- what the processes wrote to their logs -----------------------------------------------

# A webhook secret, a signature value (`v1,` and base64 of 32 bytes) and an E.164 number.
LEAKS = {
    "webhook secret": re.compile(r"whsec_"),
    "signature value": re.compile(r"v1,[A-Za-z0-9+/]{40,}={0,2}"),
    "phone number": re.compile(r"(?<![\w+])\+[1-9]\d{7,14}\b"),
}


def scan_for_leaks(paths: Iterable[Path]) -> tuple[int, int, list[str]]:
    """(files, lines, findings): every line of the logs that shows a secret, signature or phone."""
    files = lines = 0
    findings: list[str] = []
    for path in paths:
        files += 1
        with path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                lines += 1
                line = raw.decode("utf-8", errors="replace")
                for what, pattern in LEAKS.items():
                    if pattern.search(line):
                        findings.append(f"{path}:{number}: {what}: {line.strip()[:200]!r}")
    return files, lines, findings


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset of each partition of `topic`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await consumer._client.force_metadata_update()  # first use of the topic
            parts = consumer.partitions_for_topic(topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def settle(
    env: WorkerEnv, sending: Awaitable[SendReport]
) -> tuple[SendReport, Expected, Outcome]:
    """The sender's report (every webhook got its 2xx), what it implies, and the outputs once
    they are all there (the last incomplete records come a TTL after the last send)."""
    report = await sending
    assert report.ok, f"the sender gave up on {len(report.failed_message_ids)} webhooks"
    expected = Expected()
    expected.add(report)
    return report, expected, await wait_outputs(env, expected, RECOVERY_S + env.ttl_seconds)
