"""`sessionflow tail` against the broker: committed records only, end detection, --follow, DLQ view."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from cli.tail import TailOptions, Which, tail
from tests.conftest import TIMEOUT_S
from tests.integration.cli_fixtures import ServiceEnv, cli, wait_for

pytestmark = pytest.mark.integration


def completed(n: int) -> bytes:
    return orjson.dumps({"schemaVersion": 1, "sessionId": f"s-{n}"})


async def write(
    env: ServiceEnv,
    topic: str,
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
    *,
    abort: bool = False,
    tx: str = "",
) -> None:
    """Write in one transaction, committed or aborted, as the worker writes its outputs."""
    producer = AIOKafkaProducer(
        bootstrap_servers=env.bootstrap, transactional_id=f"{env.namespace}tail-test{tx}"
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        for key, value, headers in records:
            await producer.send(topic, value, key=key, headers=headers)
        if abort:
            await producer.abort_transaction()
        else:
            await producer.commit_transaction()
    finally:
        await producer.stop()


async def test_reads_committed_records_to_the_end_and_stops(env: ServiceEnv) -> None:
    topic = env.topics.completed
    await write(env, topic, [(f"k{n}".encode(), completed(n), []) for n in range(5)])
    await write(env, topic, [(b"k9", completed(99), [])], abort=True, tx="-aborted")
    await write(env, topic, [(b"k6", completed(6), [])], tx="-late")

    done = await asyncio.to_thread(env.run, "tail", "completed", "--from-beginning")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # Not a terminal: one compact JSON document per line; the aborted record never shows.
    assert sorted(orjson.loads(line)["sessionId"] for line in lines) == [
        "s-0",
        "s-1",
        "s-2",
        "s-3",
        "s-4",
        "s-6",
    ]
    assert all(line.startswith("{") and line.endswith("}") for line in lines)

    capped = await asyncio.to_thread(env.run, "tail", "completed", "--from-beginning", "--max", "2")
    assert len(capped.stdout.splitlines()) == 2

    # Without --from-beginning and --follow there is nothing new to wait for.
    latest = await asyncio.to_thread(env.run, "tail", "completed")
    assert (latest.returncode, latest.stdout) == (0, "")


async def test_pretty_output_is_indented(env: ServiceEnv) -> None:
    await write(env, env.topics.completed, [(b"k", completed(1), [])])
    out = io.StringIO()
    options = TailOptions(which=Which.COMPLETED, from_beginning=True, pretty=True)
    assert await tail(env.settings, options, out) == 1
    assert out.getvalue() == '{\n  "schemaVersion": 1,\n  "sessionId": "s-1"\n}\n'


async def test_dlq_records_show_headers_and_body(env: ServiceEnv) -> None:
    headers = [
        ("message-id", b"msg_1"),
        ("reason", b"not_json"),
        ("received-at", b"2026-01-01T00:00:00.000Z"),
        ("stage", b"producer"),
    ]
    binary = b"\xff\xfe not utf-8"
    await write(env, env.topics.dlq, [(None, b"{oops", headers), (b"k", binary, headers[:2])])
    records = await asyncio.to_thread(env.tail, "dlq")
    assert len(records) == 2
    text = next(r for r in records if "body" in r)
    raw = next(r for r in records if "body_base64" in r)
    assert text["body"] == "{oops"
    assert text["key"] is None
    assert text["headers"] == {
        "message-id": "msg_1",
        "reason": "not_json",
        "received-at": "2026-01-01T00:00:00.000Z",
        "stage": "producer",
    }
    assert base64.b64decode(raw["body_base64"]) == binary
    assert raw["key"] == "k"


async def test_follow_prints_new_records_until_max(env: ServiceEnv) -> None:
    await write(env, env.topics.completed, [(b"k", completed(1), [])])
    out_path = env.root / "follow.out"
    with out_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cli("tail", "completed", "--from-beginning", "--follow", "--max", "3"),
            env=env.environ(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await asyncio.to_thread(
            wait_for, lambda: out_path.read_bytes().count(b"\n") >= 1, "the existing record"
        )
        await write(env, env.topics.completed, [(b"k", completed(2), [])], tx="-2")
        await asyncio.to_thread(
            wait_for, lambda: out_path.read_bytes().count(b"\n") >= 2, "the new record"
        )
        assert proc.returncode is None  # --follow: it keeps waiting for the third
        await write(env, env.topics.completed, [(b"k", completed(3), [])], tx="-3")
        assert await asyncio.wait_for(proc.wait(), TIMEOUT_S) == 0
        lines = out_path.read_bytes().splitlines()
        assert [orjson.loads(line)["sessionId"] for line in lines] == ["s-1", "s-2", "s-3"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
