"""Poison records written straight into the raw topic: dead-lettered, and the partition flows on."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from cli import traffic
from sessionflow.events import SESSION_CREATED
from tests.integration.worker_fixtures import produce_deliveries
from tests.reliability.conftest import ReportBook
from tests.reliability.harness import RECOVERY_S, Stack, by_scale, scenario, traffic_plan
from tests.reliability.outputs import (
    Expected,
    assert_invariants,
    committed_offsets,
    end_offsets,
    outcome_rows,
    wait_outputs,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


@dataclass(frozen=True, slots=True)
class Poison:
    name: str
    key: bytes | None
    value: bytes
    event_type: str | None  # the producer's event-type header; None: no header
    reason: str  # the DLQ reason the worker must give
    message_id: str | None = None  # None: no message-id header at all


def poisons(valid: traffic.Plan) -> list[Poison]:
    """One of each kind, keyed by real sessions so that they share partitions with valid traffic."""
    created = next(d for d in valid.deliveries if d.event_type == SESSION_CREATED)
    keys = [d.session_id.encode() for d in valid.deliveries if d.session_id][:20]
    body = orjson.loads(created.body)
    bad_enum = orjson.dumps({**body, "id": "6f1c0b8e-poison-enum", "type": "FAX"})
    wrong_types = orjson.dumps({**body, "id": "6f1c0b8e-poison-types", "agentId": 42, "state": []})
    deep = b'{"eventType":"session.created","id":"deep","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    ended_body = orjson.dumps({**body, "eventType": "session.ended"})
    return [
        Poison("not JSON", keys[0], b"{this is not json", "session.created", "not_json"),
        Poison("not JSON, no type header", keys[1], b"\x00\x01garbage", None, "not_json"),
        Poison("not an object", keys[2], b"[1, 2, 3]", None, "not_object"),
        Poison("not an object (typed)", keys[3], b'"a string"', "session.ended", "not_object"),
        Poison("wrong types", keys[4], wrong_types, "session.created", "invalid_session_created"),
        Poison(
            "invalid UTF-8",
            keys[5],
            b'{"eventType":"session.created","id":"\xff\xfe\xfd"}',
            "session.created",
            "not_json",
        ),
        Poison("invalid UTF-8, no header", keys[6], b'{"eventType":"\xc3\x28"}', None, "not_json"),
        Poison("null key", None, b"{oops", "session.ended", "not_json"),
        Poison("deep nesting", keys[7], deep, "session.created", "not_json"),
        Poison("deep nesting, no header", keys[8], deep, None, "not_json"),
        Poison("invalid enum", keys[9], bad_enum, "session.created", "invalid_session_created"),
        Poison("empty value", keys[10], b"", "session.created", "not_json"),
        Poison("no event type", keys[11], b'{"id": "x"}', None, "no_event_type"),
        Poison("type mismatch", keys[12], ended_body, "session.created", "event_type_mismatch"),
        Poison("no message id", keys[13], b'{"eventType":"x"}', None, "missing_message_id", ""),
    ]


async def write_poison(bootstrap: str, topic: str, items: list[Poison]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i, p in enumerate(items):
            headers = [("received-at", b"2026-01-01T00:00:00.000Z"), ("poison", p.name.encode())]
            message_id = f"msg_poison_{i:02d}" if p.message_id is None else p.message_id
            if message_id:
                headers.append(("message-id", message_id.encode()))
            if p.event_type is not None:
                headers.append(("event-type", p.event_type.encode()))
            await producer.send(topic, p.value, key=p.key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


@scenario("7")
async def test_poison_records_reach_the_dlq(stack: Stack, report_book: ReportBook) -> None:
    env = stack.env
    await env.make_topics()
    worker = stack.worker("w1")
    await stack.ready_workers([worker], RECOVERY_S)

    sessions = by_scale(300, 3000)
    before = traffic_plan(sessions, seed=70)
    after = traffic_plan(sessions, seed=71)
    items = poisons(before)
    started = time.monotonic()
    await produce_deliveries(env.bootstrap, env.topics.raw, before.deliveries)
    await write_poison(env.bootstrap, env.topics.raw, items)
    await write_poison(env.bootstrap, env.topics.raw, items[:3])  # poison twice is two records
    await produce_deliveries(env.bootstrap, env.topics.raw, after.deliveries)

    expected = Expected()
    for p in (before, after):
        expected.delivered_ids |= {d.message_id for d in p.deliveries}
        expected.merge(set(p.expectations.complete), dict(p.expectations.incomplete))
    outcome = await wait_outputs(env, expected)
    group = f"{env.namespace}sessionflow"
    ends = await end_offsets(env.bootstrap, env.topics.raw)

    deadline = time.monotonic() + RECOVERY_S
    committed = await committed_offsets(env.bootstrap, group, env.topics.raw)
    while committed != ends and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        committed = await committed_offsets(env.bootstrap, group, env.topics.raw)

    by_name = {p.name: p for p in items}
    dlq_names = Counter(r.headers.get("poison", b"").decode() for r in outcome.dlq)
    reasons = {
        r.headers.get("poison", b"").decode(): r.headers.get("reason", b"").decode()
        for r in outcome.dlq
    }
    report_book.record(
        "7",
        "Poison records in the raw topic",
        {
            "poison kinds": len(items),
            "poison records written": len(items) + 3,
            "valid webhooks written": len(before.deliveries) + len(after.deliveries),
            "raw records": len(outcome.raw),
            "DLQ records": len(outcome.dlq),
            "DLQ reasons": dict(sorted(Counter(reasons.values()).items())),
            **outcome_rows(outcome, expected),
            "raw offsets committed / end": f"{sum(committed.values())} / {sum(ends.values())}",
            "all outputs after (s)": round(time.monotonic() - started, 1),
        },
        "Kinds: " + ", ".join(p.name for p in items) + ".",
    )
    # Every poison record is in the DLQ once (three were written twice), with its reason.
    assert dlq_names == Counter([p.name for p in items] + [p.name for p in items[:3]])
    wrong = {n: (reasons[n], p.reason) for n, p in by_name.items() if reasons[n] != p.reason}
    assert not wrong, f"DLQ reasons (got, want): {wrong}"
    assert all(r.headers.get("stage") == b"streams" for r in outcome.dlq)
    poison_values = {p.name: p.value for p in items}
    assert all(r.value == poison_values[r.headers["poison"].decode()] for r in outcome.dlq)
    # Every raw offset is accounted for: contiguous offsets, each either a valid webhook or
    # exactly one DLQ record, and the worker's committed offsets reach the end of each partition.
    per_partition: dict[int, list[int]] = {}
    for r in outcome.raw:
        per_partition.setdefault(r.partition, []).append(r.offset)
    for partition, offsets in per_partition.items():
        assert sorted(offsets) == list(range(ends[partition])), f"gap in partition {partition}"
    valid_raw = [r for r in outcome.raw if "poison" not in r.headers]
    assert len(valid_raw) + sum(dlq_names.values()) == len(outcome.raw)
    assert not [r for r in outcome.dlq if "poison" not in r.headers], "a valid record dead-lettered"
    assert committed == ends, f"committed {committed}, end {ends}"
    assert_invariants(outcome, expected)
