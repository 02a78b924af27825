"""The delivery-report bridge without a broker: futures settled once, polls on a timer."""

from __future__ import annotations

import asyncio

import uvloop
from confluent_kafka import KafkaError

from producer.delivery import ReportPoller


async def test_delivery_reports_settle_their_futures_and_a_late_one_is_ignored() -> None:
    loop = asyncio.get_running_loop()
    poller = ReportPoller(loop)
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
        poller = ReportPoller(asyncio.get_running_loop())
        poller.start(client)  # type: ignore[arg-type]  # a stand-in for the librdkafka client
        poller.kick()
        assert client.polls == 1  # the hand-over serves what is already there
        await asyncio.sleep(seconds)
        await poller.stop()

    # uvloop, as the producer runs: it keeps timers in whole milliseconds, and a delay that
    # rounds to 0 runs at the next turn of the loop (thousands of polls a second, a core spun).
    uvloop.run(in_flight_for(0.2))
    assert 20 <= client.polls <= 260
