"""ensure_topics at start-up: it waits for a broker that does not answer yet, up to a deadline."""

from __future__ import annotations

import logging
import time

import pytest
from aiokafka.errors import KafkaError

from bench.proc import free_port
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics, TopicSpec, ensure_topics, max_transcript_record_bytes


async def test_waits_for_the_broker_until_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    settings = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "sessionflow.topics"), pytest.raises(KafkaError):
        await ensure_topics(settings, [TopicSpec("t", 1, 1, {})], startup_timeout_s=1.5)
    assert time.monotonic() - started >= 1.5
    assert sum("waiting for Kafka" in r.getMessage() for r in caplog.records) >= 2


async def test_no_wait_without_a_startup_budget() -> None:
    settings = KafkaSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(KafkaError):
        await ensure_topics(settings, [TopicSpec("t", 1, 1, {})], startup_timeout_s=0)
    assert time.monotonic() - started < 1.0


def test_the_transcripts_topic_is_compacted_co_partitioned_and_fits_a_capped_transcript() -> None:
    settings = KafkaSettings(partitions=7, topic_namespace="ns.", max_transcript_bytes=2_000_000)
    specs = {s.name: s for s in Topics.for_settings(settings).specs(settings)}
    transcripts = specs["ns.agntix.sessions.transcripts"]
    assert transcripts.partitions == specs["ns.agntix.sessions.completed"].partitions == 7
    assert transcripts.config["cleanup.policy"] == "compact"
    assert int(transcripts.config["max.message.bytes"]) == max_transcript_record_bytes(settings)
    assert max_transcript_record_bytes(settings) > 2_000_000
