"""The enricher's integration tests' helpers: settings, input records, probes, the output read back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
from aiokafka import AIOKafkaProducer

from enricher.server import run_until_stopped
from enricher.settings import EnricherSettings
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics, ensure_topics
from tests.conftest import REPO, TIMEOUT_S, http_status
from tests.integration.agntix_fake import (
    API_KEY,
    FakeAgntix,
)
from tests.integration.conftest import free_port
from tests.integration.worker_fixtures import read_records
from tests.polling import wait_until

SCHEMA = json.loads((REPO / "schemas" / "session-transcript.v1.json").read_text())
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)


def settings_for(
    bootstrap: str, unique: str, fake: FakeAgntix, **overrides: Any
) -> EnricherSettings:
    values: dict[str, Any] = {
        "AGNTIX_API_URL": fake.url,
        "AGNTIX_API_KEY": API_KEY,
        "kafka_bootstrap_servers": bootstrap,
        "topic_namespace": f"t-{unique}.",
        "partitions": 2,
        "enricher_host": "127.0.0.1",
        "enricher_port": free_port(),
        "enricher_concurrency": 4,
        "enricher_rate_per_second": 500,
        "enricher_request_timeout_seconds": 0.5,
        "enricher_session_deadline_seconds": 8,
        "enricher_max_attempts": 4,
        "enricher_backoff_initial_seconds": 0.05,
        "enricher_backoff_max_seconds": 0.2,
        "enricher_auth_retry_seconds": 0.5,
        "enricher_commit_interval_seconds": 0.2,
        "max_transcript_bytes": 256 * 1024,
        "log_level": "DEBUG",
    }
    values.update(overrides)
    return EnricherSettings(**values)


def topics_of(settings: KafkaSettings) -> Topics:
    return Topics.for_settings(settings)


def completed_value(session_id: str) -> bytes:
    """A completed record's value as the worker writes it (the fields the enricher reads)."""
    return orjson.dumps({"schemaVersion": 1, "sessionId": session_id, "type": "CHAT"})


async def produce_completed(settings: EnricherSettings, session_ids: list[str]) -> None:
    """Completed records as the worker writes them: key and sessionId = the session id."""
    topics = topics_of(settings)
    await ensure_topics(settings, topics.specs(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for sid in session_ids:
            await producer.send(topics.completed, completed_value(sid), key=sid.encode())
        await producer.flush()
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def enricher(settings: EnricherSettings) -> AsyncIterator[None]:
    """`run_until_stopped` in this event loop, stopped (SIGTERM's path) at the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop))
    try:

        async def up() -> bool:
            return task.done() or await ready(settings) is not None

        await wait_until(up, "the enricher up")
        if task.done():
            task.result()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)


async def ready(settings: EnricherSettings) -> int | None:
    """The /readyz status code, None while nothing answers (asked off the event loop)."""
    return await asyncio.to_thread(http_status, f"http://127.0.0.1:{settings.enricher_port}/readyz")


async def scrape(settings: EnricherSettings) -> dict[str, float]:
    """The enricher's /metrics as {series: value}, asked off the event loop."""
    return await asyncio.to_thread(_scrape, settings)


def _scrape(settings: EnricherSettings) -> dict[str, float]:
    url = f"http://127.0.0.1:{settings.enricher_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = bytes(response.read()).decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def transcripts(
    settings: EnricherSettings, until: int, settle_s: float = 1.5
) -> dict[str, dict[str, Any]]:
    """Every transcript record by session id; fails on a session written twice."""
    records = await read_records(
        settings.kafka_bootstrap_servers,
        topics_of(settings).transcripts,
        until=until,
        settle_s=settle_s,
    )
    counts = Counter(str(r["sessionId"]) for r in records)
    assert max(counts.values(), default=1) == 1, counts
    for record in records:
        errors = [e.message for e in VALIDATOR.iter_errors(record)]
        assert not errors, (record, errors)
    return {str(r["sessionId"]): r for r in records}


def enricher_environ(settings: EnricherSettings, api_url: str, **extra: str) -> dict[str, str]:
    """The environment of `sessionflow enricher` run with `settings`' Kafka, topics and port
    against the API at `api_url` (the fake's key), and `extra` variables."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGNTIX_")},
        "AGNTIX_API_URL": api_url,
        "AGNTIX_API_KEY": API_KEY,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SESSIONFLOW_TOPIC_NAMESPACE": settings.topic_namespace,
        "SESSIONFLOW_PARTITIONS": str(settings.partitions),
        "SESSIONFLOW_ENRICHER_HOST": "127.0.0.1",
        "SESSIONFLOW_ENRICHER_PORT": str(settings.enricher_port),
        **extra,
    }


def spawn_enricher(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`sessionflow enricher` as operators run it, its log appended to a file."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "enricher"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
