"""`sessionflow dlq replay` against the broker: dry run, filter, idempotence, and a real worker."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from cli.dlq import ReplayOptions, replay
from cli.traffic import plan
from tests.integration.cli_fixtures import ServiceEnv, wait_for
from tests.integration.worker_fixtures import (
    WorkerEnv,
    WorkerProcess,
    produce_deliveries,
    read_records,
)

pytestmark = pytest.mark.integration

RECEIVED = b"2026-01-01T00:00:00.000Z"


def dead_letter(msg_id: str, reason: str, *, stage: str = "producer") -> list[tuple[str, bytes]]:
    """The headers the producer (or the worker) writes on a dead letter."""
    return [
        ("message-id", msg_id.encode()),
        ("reason", reason.encode()),
        ("received-at", RECEIVED),
        ("stage", stage.encode()),
    ]


async def write_dlq(
    env: ServiceEnv, records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(env.topics.dlq, value, key=key, headers=headers)
    finally:
        await producer.stop()


def replayed(stdout: str, verb: str = "replayed") -> int:
    found = re.search(rf"^  {verb}\s+(\d+)$", stdout, re.MULTILINE)
    assert found, stdout
    return int(found.group(1))


async def test_dry_run_filter_and_a_second_run_that_adds_nothing(env: ServiceEnv) -> None:
    bodies = [(f"msg_nj{i}", b"{not json" + str(i).encode(), "not_json") for i in range(2)]
    no_key = orjson.dumps({"eventType": "session.ended"})  # a session event without its session
    bodies += [(f"msg_nk{i}", no_key, "no_key") for i in range(3)]
    await write_dlq(env, [(None, body, dead_letter(mid, reason)) for mid, body, reason in bodies])

    dry = await asyncio.to_thread(env.run, "dlq", "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert replayed(dry.stdout, "would replay") == 5
    assert await asyncio.to_thread(env.tail, "raw") == []

    first = await asyncio.to_thread(env.run, "dlq", "replay", "--reason", "not_json")
    assert first.returncode == 0, first.stderr
    assert replayed(first.stdout) == 2
    assert "skipped by filter  3" in first.stdout
    raw = await asyncio.to_thread(env.tail, "raw")
    assert sorted(r["headers"]["message-id"] for r in raw) == ["msg_nj0", "msg_nj1"]
    for record in raw:
        headers = record["headers"]
        assert set(headers) == {"message-id", "received-at", "replayed-from"}
        assert headers["received-at"] == RECEIVED.decode()
        assert re.fullmatch(r"\d+:\d+", headers["replayed-from"])
        assert record["body"].startswith("{not json")
        # No key on a producer dead letter that still does not parse: the message id routes it.
        assert record["key"] == headers["message-id"]

    again = await asyncio.to_thread(env.run, "dlq", "replay", "--reason", "not_json")
    assert replayed(again.stdout) == 0
    assert len(await asyncio.to_thread(env.tail, "raw")) == 2

    # --max caps the dead letters one run looks at; the next run carries on where it stopped.
    only_no_key = frozenset({"no_key"})
    capped = await replay(env.settings, ReplayOptions(reasons=only_no_key, max_records=2))
    assert capped.scanned == 2
    rest = await replay(env.settings, ReplayOptions(reasons=only_no_key))
    assert rest.scanned == 3
    assert capped.replayed + rest.replayed == 3
    assert (await replay(env.settings, ReplayOptions(reasons=only_no_key))).scanned == 0
    raw = await asyncio.to_thread(env.tail, "raw")
    assert Counter(r["headers"]["message-id"][:6] for r in raw) == {"msg_nj": 2, "msg_nk": 3}


async def test_replayed_halves_complete_each_session_exactly_once(
    env: ServiceEnv, tmp_path: Path
) -> None:
    wenv = WorkerEnv(
        bootstrap=env.bootstrap, namespace=env.namespace, root=tmp_path, partitions=env.partitions
    )
    traffic = plan(
        3,
        seed=5,
        now=datetime.now(UTC),
    )
    created = [d for d in traffic.deliveries if d.event_type == "session.created"]
    ended = [d for d in traffic.deliveries if d.event_type == "session.ended"]
    assert len(created) == len(ended) == 3

    # The created halves were dead-lettered earlier (say, by a worker with a bug since fixed).
    await write_dlq(
        env,
        [
            (
                d.session_id.encode() if d.session_id else None,
                d.body,
                [
                    *dead_letter(d.message_id, "invalid_session_created", stage="streams"),
                    ("event-type", b"session.created"),
                ],
            )
            for d in created
        ],
    )
    worker = WorkerProcess(wenv, "w1")
    worker.start()
    try:
        await asyncio.to_thread(worker.wait_ready)
        # The worker really dead-letters an ended half with an invalid field.
        broken = orjson.loads(ended[0].body)
        broken["direction"] = "SIDEWAYS"
        bad = dataclasses.replace(ended[0], message_id="msg_broken", body=orjson.dumps(broken))
        await produce_deliveries(env.bootstrap, env.topics.raw, [bad, *ended])

        def worker_dead_lettered() -> bool:
            return any(
                r["headers"].get("stage") == "streams"
                and r["headers"].get("message-id") == "msg_broken"
                for r in env.tail("dlq")
            )

        await asyncio.to_thread(wait_for, worker_dead_lettered, "the worker's dead letter")
        letters = await asyncio.to_thread(env.tail, "dlq")
        reasons = Counter(r["headers"]["reason"] for r in letters)
        assert reasons == {"invalid_session_created": 3, "invalid_session_ended": 1}

        first = await asyncio.to_thread(
            env.run, "dlq", "replay", "--reason", "invalid_session_created"
        )
        assert replayed(first.stdout) == 3, first.stdout + first.stderr
        completed = await read_records(env.bootstrap, env.topics.completed, until=3, settle_s=1)
        assert sorted(str(r["sessionId"]) for r in completed) == sorted(
            str(d.session_id) for d in created
        )

        again = await asyncio.to_thread(
            env.run, "dlq", "replay", "--reason", "invalid_session_created"
        )
        assert replayed(again.stdout) == 0

        # Under another filter the replay keeps other progress and re-publishes the valid
        # halves: the worker's dedup keeps every session at exactly one completed record.
        everything = await asyncio.to_thread(env.run, "dlq", "replay")
        assert replayed(everything.stdout) == 4, everything.stdout
        completed = await read_records(env.bootstrap, env.topics.completed, until=3, settle_s=4)
        counts = Counter(str(r["sessionId"]) for r in completed)
        assert sorted(counts) == sorted(str(d.session_id) for d in created)
        assert set(counts.values()) == {1}
    finally:
        worker.kill()
