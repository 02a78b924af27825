"""The librdkafka publisher without a broker: its settings, error mapping and report bridge."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from confluent_kafka import KafkaError

from producer.errors import PublishUnavailable, RecordTooLarge
from producer.publisher import KafkaPublisher, _Poller, fresh_client_due, producer_config
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
    with pytest.raises(PublishUnavailable, match="kafka_unavailable"):
        await KafkaPublisher(settings).publish_raw(b"k", b"{}", [])


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


async def test_delivery_reports_settle_their_futures_and_a_late_one_is_ignored() -> None:
    loop = asyncio.get_running_loop()
    poller = _Poller(loop, lambda error: None)
    acked = [loop.create_future() for _ in range(3)]
    failure = KafkaError(KafkaError._MSG_TIMED_OUT)
    acked[2].set_result(None)  # already settled (our deadline passed first): left alone
    for future, error in zip(acked, [None, failure, KafkaError(KafkaError._FATAL)], strict=True):
        poller.callback(future)(error, None)
    assert [f.result() for f in acked] == [None, failure, None]


class InFlight:
    """A client with records in flight for good: counts the polls it is given."""

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, timeout: float) -> int:
        assert timeout == 0
        self.polls += 1
        return 0

    def __len__(self) -> int:
        return 1


def test_records_in_flight_are_polled_on_a_timer_not_at_every_turn_of_the_loop() -> None:
    client = InFlight()

    async def in_flight_for(seconds: float) -> None:
        poller = _Poller(asyncio.get_running_loop(), lambda error: None)
        poller.start(client)  # type: ignore[arg-type]  # a stand-in for the librdkafka client
        poller.kick()
        assert client.polls == 1  # the hand-over serves what is already there
        await asyncio.sleep(seconds)
        await poller.stop()

    # uvloop, as the producer runs: it keeps timers in whole milliseconds, and a delay that
    # rounds to 0 runs at the next turn of the loop (thousands of polls a second, a core spun).
    uvloop.run(in_flight_for(0.2))
    assert 20 <= client.polls <= 260


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
    settings: ProducerSettings,
) -> None:
    # librdkafka 2.16 sends it again just after the cluster answered (a retired bootstrap
    # connection): the probe, woken at once, decides whether Kafka is lost.
    publisher = KafkaPublisher(settings)
    publisher._found()
    publisher._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert publisher._reachable
    assert publisher._wake.is_set()


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
