"""Faust's own assignor, changelogs and transactional producer work with our broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import TIMEOUT_S
from tests.integration.conftest import free_port
from tests.kafka_helpers import make_topics, reader

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("faust_smoke_app.py")
PARTITIONS = 3


async def test_a_real_faust_worker_keeps_a_table_and_sends(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    source, sink, app_id = f"t-{unique}.in", f"t-{unique}.out", f"smoke-{unique}"
    await make_topics(kafka_bootstrap, source, sink, partitions=PARTITIONS)
    env = {
        **os.environ,
        "SMOKE_APP_ID": app_id,
        "SMOKE_BOOTSTRAP": kafka_bootstrap,
        "SMOKE_DATADIR": str(tmp_path),
        "SMOKE_WEB_PORT": str(free_port()),
        "SMOKE_PARTITIONS": str(PARTITIONS),
        "SMOKE_SOURCE": source,
        "SMOKE_SINK": sink,
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(APP),
        "worker",
        "--loglevel",
        "warn",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(12):
                key = f"key-{i % 4}"
                await producer.send_and_wait(source, f'"v{i}"'.encode(), key=f'"{key}"'.encode())
        finally:
            await producer.stop()

        outputs = await _read(kafka_bootstrap, sink, expect=12)
        by_key: dict[str, list[str]] = {}
        for key, value in outputs:
            by_key.setdefault(key, []).append(value)
        # Each key was seen three times; the table counted 1, 2, 3 in order within its partition.
        assert {k: [v.rsplit(":", 1)[1] for v in vs] for k, vs in by_key.items()} == {
            f'"key-{i}"': ['1"', '2"', '3"'] for i in range(4)
        }

        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            changelog = f"{app_id}-counts-changelog"
            assert changelog in await admin.list_topics()
            described = await admin.describe_topics([changelog])
            assert len(described[0]["partitions"]) == PARTITIONS
        finally:
            await admin.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.wait(), TIMEOUT_S)
        except TimeoutError:
            worker.kill()
            await worker.wait()
        log.close()


async def _read(bootstrap: str, topic: str, expect: int) -> list[tuple[str, str]]:
    async with reader(bootstrap, topic) as consumer:
        found: list[tuple[str, str]] = []
        async with asyncio.timeout(TIMEOUT_S):
            while len(found) < expect:
                batches = await consumer.getmany(timeout_ms=500)
                found += [
                    (r.key.decode(), r.value.decode()) for recs in batches.values() for r in recs
                ]
        return found
