"""The sessions agent under Faust's test context: the wiring from stream to outputs, no broker.

Kafka is replaced here on purpose (a recording producer): this tests the agent's plumbing, not
the pipeline; tests/integration/test_worker.py runs the same agent against a real broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from aiokafka.structs import RecordMetadata, TopicPartition

from sessionflow.topics import Topics
from streams.agents import register
from streams.app import create_app
from streams.metrics import WorkerMetrics
from streams.settings import WorkerSettings
from tests.unit.streams import samples


class RecordingProducer:
    """Stands in for Faust's producer: keeps what the agent sends, acknowledges at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        **_: Any,
    ) -> asyncio.Future[RecordMetadata]:
        self.sent.append((topic, key, value, partition))
        fut: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        tp = TopicPartition(topic, partition or 0)
        fut.set_result(RecordMetadata(topic, tp.partition, tp, len(self.sent), -1, 0, 0))
        return fut

    def on(self, topic: str) -> list[bytes]:
        return [value for name, _, value, _ in self.sent if name == topic]


@pytest.fixture
def settings(tmp_path: Path) -> WorkerSettings:
    return WorkerSettings(
        table_store="memory",
        data_dir=tmp_path,
        topic_namespace="unit.",
        processing_guarantee="at_least_once",
    )


@pytest.fixture
def producer() -> Iterator[RecordingProducer]:
    recording = RecordingProducer()

    async def get_producer(_: object) -> RecordingProducer:
        return recording

    with mock.patch("faust.topics.Topic._get_producer", get_producer):
        yield recording


@pytest.fixture
async def agent(
    settings: WorkerSettings, producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    app = create_app(settings)
    # Outputs go straight to the app's producer (streams/eos.py), table writes through topics.
    monkeypatch.setattr(app.producer, "send", producer.send)
    register(app, settings, WorkerMetrics(max_intents=5))
    app.finalize()
    async with app.agents["sessions"].test_context() as context:
        yield context


async def test_a_pair_and_its_duplicates_give_one_completed_record(
    agent: Any, producer: RecordingProducer, settings: WorkerSettings
) -> None:
    created = samples.session_created()
    ended = samples.session_ended(session_id=created["id"])
    key = str(created["id"]).encode()
    for event, message_id in [(ended, b"m2"), (created, b"m1"), (ended, b"m2"), (created, b"m9")]:
        await agent.put(samples.to_bytes(event), key=key, headers={"message-id": message_id})
    topics = Topics.for_settings(settings)
    [record] = producer.on(topics.completed)
    assert orjson.loads(record)["sessionId"] == created["id"]
    assert producer.on(topics.dlq) == []
    # Two table changes (pending, then marker), each written to the changelog once: by the
    # processor, not also by Faust's table (tables/sessions.py).
    changelog = [v for name, _, v, _ in producer.sent if name.endswith("sessions-changelog")]
    assert len(changelog) == 2


async def test_a_poison_record_goes_to_the_dlq_and_the_stream_goes_on(
    agent: Any, producer: RecordingProducer, settings: WorkerSettings
) -> None:
    await agent.put(b"\xff not json", key=b"k", headers={"message-id": b"bad"})
    created = samples.session_created()
    ended = samples.session_ended(session_id=created["id"])
    key = str(created["id"]).encode()
    await agent.put(samples.to_bytes(created), key=key, headers={"message-id": b"m1"})
    await agent.put(samples.to_bytes(ended), key=key, headers={"message-id": b"m2"})
    topics = Topics.for_settings(settings)
    assert producer.on(topics.dlq) == [b"\xff not json"]
    assert len(producer.on(topics.completed)) == 1
