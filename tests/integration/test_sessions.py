"""One session's story against the real broker: worker GET /sessions/{id} and `sessionflow inspect`.

Two workers share four partitions, so that some sessions are owned by the worker that is not
asked. One session in each state: completed, waiting, incomplete (its half received long
before the TTL), dead-lettered (a session.created the worker cannot validate), unknown.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from cli import inspect
from sessionflow import raw_record
from tests.conftest import TIMEOUT_S
from tests.integration.worker_fixtures import WorkerEnv, WorkerProcess, read_records
from tests.unit.streams.samples import session_created, session_ended, to_bytes

pytestmark = pytest.mark.integration

TTL_S = 600.0


def received_at(moment: datetime) -> bytes:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


async def write_raw(
    worker_env: WorkerEnv, records: list[tuple[dict[str, Any], str, datetime]]
) -> None:
    """Raw records as the producer writes them: key = session id, its headers."""
    producer = AIOKafkaProducer(bootstrap_servers=worker_env.bootstrap, acks="all")
    await producer.start()
    try:
        for event, message_id, at in records:
            await producer.send(
                worker_env.topics.raw,
                to_bytes(event),
                key=str(event["id"]).encode(),
                headers=[
                    (raw_record.MESSAGE_ID, message_id.encode()),
                    (raw_record.EVENT_TYPE, str(event["eventType"]).encode()),
                    (raw_record.RECEIVED_AT, received_at(at)),
                ],
            )
        await producer.flush()
    finally:
        await producer.stop()


def get(port: int, path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, orjson.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read()), dict(exc.headers)


async def test_each_state_from_either_worker_and_inspect_tells_each_story(
    worker_env: WorkerEnv, workers: list[WorkerProcess]
) -> None:
    # A half received a TTL ago expires at the first tick; the others wait.
    worker_env.ttl_seconds, worker_env.grace_seconds = TTL_S, 1.0
    await worker_env.make_topics()
    a, b = WorkerProcess(worker_env, "a"), WorkerProcess(worker_env, "b")
    workers += [a, b]
    a.start()
    b.start()
    await asyncio.gather(asyncio.to_thread(a.wait_ready), asyncio.to_thread(b.wait_ready))

    now = datetime.now(UTC)
    done, waiting, expired, dead, unknown = (str(uuid.uuid4()) for _ in range(5))
    await write_raw(
        worker_env,
        [
            (session_created(done), "msg_done_c", now),
            (session_ended(done), "msg_done_e", now),
            (session_created(waiting), "msg_wait_c", now),
            (session_ended(expired), "msg_exp_e", now - timedelta(seconds=TTL_S + 60)),
            (session_created(dead, type="FAX"), "msg_dead_c", now),
        ],
    )
    await read_records(worker_env.bootstrap, worker_env.topics.completed, until=1, settle_s=0)
    await read_records(worker_env.bootstrap, worker_env.topics.incomplete, until=1, settle_s=0)

    # The table's view, asked of both workers: the same owner answers either way.
    owners = set()
    for worker in (a, b):
        status, body, _ = get(worker.port, f"/sessions/{waiting}")
        assert status == 200, body
        assert body["state"] == "waiting"
        assert body["half"] == "session.created"
        assert body["messageId"] == "msg_wait_c"
        assert "+14155550123" not in orjson.dumps(body).decode()  # redacted by default
        owners.add(body["worker"])
        status, body, _ = get(worker.port, f"/sessions/{done}")
        assert status == 200, body
        assert (body["state"], body["created"], body["ended"]) == (
            "completed",
            {"messageId": "msg_done_c"},
            {"messageId": "msg_done_e"},
        )
        assert get(worker.port, f"/sessions/{unknown}")[0] == 404
        assert get(worker.port, f"/sessions/{expired}")[0] == 404  # expired: deleted
        assert get(worker.port, "/sessions/not-a-uuid")[0] == 400
    assert len(owners) == 1, "two workers claim one session"
    assert owners & {f"http://127.0.0.1:{w.port}" for w in (a, b)}

    # inspect: the whole story of each.
    worker_url = f"http://127.0.0.1:{a.port}"
    since = now - timedelta(minutes=5)
    stories = {
        sid: await inspect.inspect(worker_env.settings, sid, since, worker_url)
        for sid in (done, waiting, expired, dead, unknown)
    }
    verdicts = {sid: inspect.story_verdict(s)[0] for sid, s in stories.items()}
    assert verdicts == {
        done: "completed",
        waiting: "waiting",
        expired: "incomplete",
        dead: "dead_lettered",
        unknown: "unknown",
    }
    story = stories[done]
    assert story.partition == raw_record.partition_for_key(done.encode(), worker_env.partitions)
    assert [(r["messageId"], r["eventType"]) for r in story.raw] == [
        ("msg_done_c", "session.created"),
        ("msg_done_e", "session.ended"),
    ]
    assert story.completed[0]["created"] == {
        "messageId": "msg_done_c",
        "receivedAt": received_at(now).decode(),
    }
    assert stories[expired].incomplete[0]["reason"] == "ended_without_created"
    assert [(d["messageId"], d["stage"]) for d in stories[dead].dead_letters] == [
        ("msg_dead_c", "streams")
    ]
    assert "expires at" in inspect.story_verdict(stories[waiting])[1]

    # The command itself: one JSON object, and it stops by itself.
    command = [sys.executable, "-m", "cli", "inspect", waiting, "--json"]
    out = await asyncio.to_thread(
        subprocess.run,
        [*command, "--since", "5m", "--worker", f"http://127.0.0.1:{b.port}"],
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": worker_env.bootstrap,
            "SESSIONFLOW_TOPIC_NAMESPACE": worker_env.namespace,
        },
        capture_output=True,
        timeout=TIMEOUT_S,
        check=True,
    )
    doc = orjson.loads(out.stdout)
    assert doc["verdict"] == "waiting"
    assert doc["table"]["messageId"] == "msg_wait_c"
    assert [r["messageId"] for r in doc["raw"]] == ["msg_wait_c"]
