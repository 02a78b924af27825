"""The librdkafka publisher without a broker: its settings, error mapping and readiness."""

from __future__ import annotations

import asyncio
import logging

import pytest
from confluent_kafka import KafkaError

from producer.deadlines import Deadline
from producer.delivery import Acked
from producer.errors import PublishUnavailable, RecordTooLarge
from producer.publisher import KafkaPublisher, fresh_client_due, producer_config
from producer.settings import ProducerSettings
from sessionflow.topics import max_record_bytes

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def settings() -> ProducerSettings:
    return ProducerSettings(webhook_secrets=SECRET, publish_timeout_seconds=8)


def test_a_2xx_waits_for_every_in_sync_replica_of_an_idempotent_producer(
    settings: ProducerSettings,
) -> None:
    config = producer_config(settings)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    # The partitioner the worker's table and every earlier record rely on (Java's murmur2).
    assert config["partitioner"] == "murmur2_random"
    assert config["message.timeout.ms"] == 8000
    assert config["message.max.bytes"] == max_record_bytes(settings)


async def test_publishing_is_refused_at_once_before_start(settings: ProducerSettings) -> None:
    told: list[Exception | None] = []
    with pytest.raises(PublishUnavailable, match="kafka_unavailable"):
        KafkaPublisher(settings).publish_raw(b"k", b"{}", [], told.append)
    assert told == []  # refused at the hand-over: no report follows


@pytest.mark.parametrize(
    ("report", "told"),
    [
        (None, None),
        (KafkaError(KafkaError._MSG_TIMED_OUT), PublishUnavailable),
        (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), RecordTooLarge),
    ],
)
async def test_a_settled_delivery_disarms_its_deadline_and_tells_what_it_means(
    settings: ProducerSettings, report: KafkaError | None, told: type[Exception] | None
) -> None:
    publisher = KafkaPublisher(settings)
    deadline = Deadline(0.0, lambda: None)
    acked: Acked = asyncio.get_running_loop().create_future()
    acked.set_result(report)
    outcomes: list[Exception | None] = []
    publisher._settled(deadline, outcomes.append, acked)
    assert not deadline.armed
    [outcome] = outcomes
    if told is None:
        assert outcome is None
    else:
        assert isinstance(outcome, told)


def test_failed_deliveries_map_to_the_answer_and_only_a_fatal_error_breaks_the_client(
    settings: ProducerSettings,
) -> None:
    publisher = KafkaPublisher(settings)
    assert isinstance(publisher._refused(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)), RecordTooLarge)
    for code in (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT):
        timed_out = publisher._refused(KafkaError(code))
        assert isinstance(timed_out, PublishUnavailable)
        assert timed_out.reason == "publish_timeout"
    for _ in range(5):
        other = publisher._refused(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS))
        assert isinstance(other, PublishUnavailable)
        assert other.reason == "kafka_error"
    # librdkafka recovers from those by itself (epoch bumps): the client stays.
    assert not publisher._broken


def test_a_fatal_error_breaks_the_client_at_once(settings: ProducerSettings) -> None:
    publisher = KafkaPublisher(settings)
    publisher._refused(KafkaError(KafkaError._FATAL, fatal=True))
    assert publisher._broken
    assert not publisher.ready


def test_a_fresh_client_is_due_only_after_kafka_stayed_unreachable_that_long() -> None:
    after = 10.0
    assert not fresh_client_due(None, 0.0, 1000.0, after), "reachable: the client stays"
    assert not fresh_client_due(100.0, 0.0, 109.9, after)
    assert fresh_client_due(100.0, 0.0, 110.0, after)
    # A fresh client tried at 110 that did not reach the cluster: the next try after as long.
    assert not fresh_client_due(100.0, 110.0, 119.9, after)
    assert fresh_client_due(100.0, 110.0, 120.0, after)
    # Unreachable again after a try in an earlier outage: counted from the new outage.
    assert not fresh_client_due(500.0, 120.0, 505.0, after)
    assert fresh_client_due(500.0, 120.0, 510.0, after)


def test_a_report_of_all_brokers_down_brings_the_probe_forward_without_refusing_anything(
    settings: ProducerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # librdkafka 2.16 sends it again just after the cluster answered (a retired bootstrap
    # connection): the probe, woken at once, decides whether Kafka is lost.
    publisher = KafkaPublisher(settings)
    publisher._found()
    with caplog.at_level(logging.INFO, logger="producer.publisher"):
        publisher._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert publisher._reachable
    assert publisher._wake.is_set()
    assert [r.getMessage() for r in caplog.records] == [
        "kafka reports all brokers down: probing now"
    ]


def test_losing_kafka_is_noted_once_and_finding_it_clears_the_outage(
    settings: ProducerSettings,
) -> None:
    publisher = KafkaPublisher(settings)
    publisher._found()
    assert publisher._unreachable_since is None
    publisher._lost("no answer to the probe")
    since = publisher._unreachable_since
    assert since is not None
    publisher._lost("_TRANSPORT")  # the probe failing afterwards keeps the outage's start
    assert publisher._unreachable_since == since
    publisher._found()
    assert publisher._unreachable_since is None
    assert publisher.clients_replaced == {"fatal": 0, "unreachable": 0}
