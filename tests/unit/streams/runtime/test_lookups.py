"""streams.runtime.lookups: failed coordinator lookups are paced, and one that loses its
connection or finds no broker known is tried again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaClient
from aiokafka.client import CoordinationType
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    NodeNotReadyError,
)

from streams.runtime.lookups import lookup_wait, pace_coordinator_lookups


class FakeClient:
    """A producer's AIOKafkaClient lookup, failing as scripted, then finding node 1."""

    def __init__(self, *failures: BaseException) -> None:
        self._failures = list(failures)
        self.lookups = 0
        self.cluster = SimpleNamespace(brokers=lambda: [SimpleNamespace(nodeId=1)])

    async def coordinator_lookup(self, coordinator_type: Any, coordinator_key: str) -> int:
        self.lookups += 1
        if self._failures:
            raise self._failures.pop(0)
        return 1


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The lookups' waits, recorded instead of slept."""
    recorded: list[float] = []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr("streams.runtime.lookups.asyncio.sleep", sleep)
    return recorded


def test_a_lookup_waits_longer_after_each_failure_up_to_the_most() -> None:
    assert [lookup_wait(n, 0.02, 0.5) for n in range(8)] == [
        0.0,
        0.02,
        0.04,
        0.08,
        0.16,
        0.32,
        0.5,
        0.5,
    ]
    assert lookup_wait(10_000, 0.02, 0.5) == 0.5


async def test_failed_lookups_are_paced_until_one_answers(waits: list[float]) -> None:
    not_ready = [NodeNotReadyError(1), CoordinatorNotAvailableError(), NodeNotReadyError(1)]
    client = FakeClient(*not_ready)
    pace_coordinator_lookups(client, first_s=0.02, most_s=0.05)
    for failure in not_ready:
        # aiokafka's Sender tries these again itself, after a metadata update.
        with pytest.raises(type(failure)):
            await client.coordinator_lookup(1, "group")
    assert await client.coordinator_lookup(1, "group") == 1
    assert await client.coordinator_lookup(1, "group") == 1  # an answer ends the pacing
    assert waits == [0.0, 0.02, 0.04, 0.05, 0.0]
    assert client.lookups == 5


async def test_a_lost_connection_is_tried_again_like_a_node_not_ready(waits: list[float]) -> None:
    client = FakeClient(KafkaConnectionError("Connection at 127.0.0.1:9092 closed"))
    pace_coordinator_lookups(client)
    with pytest.raises(NodeNotReadyError) as lost:
        await client.coordinator_lookup(1, "group")
    assert isinstance(lost.value.__cause__, KafkaConnectionError)
    assert await client.coordinator_lookup(1, "group") == 1


async def test_a_client_that_knows_no_broker_yet_is_a_node_not_ready(waits: list[float]) -> None:
    # A real client whose cluster lists no broker, as after a bootstrap that a broker back from
    # a pause answered with none (reliability scenario 13).
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9")
    try:
        with pytest.raises(AssertionError, match="bootstrap"):  # aiokafka on its own
            await client.coordinator_lookup(CoordinationType.TRANSACTION, "t-0")
        pace_coordinator_lookups(client, first_s=0.02)
        for _ in range(2):
            # aiokafka's Sender tries a node not ready again, after a metadata update.
            with pytest.raises(NodeNotReadyError, match="no broker known"):
                await client.coordinator_lookup(CoordinationType.TRANSACTION, "t-0")
        assert waits == [0.0, 0.02]  # paced like any other failed lookup
    finally:
        await client.close()


async def test_any_other_failure_still_raises_as_it_is(waits: list[float]) -> None:
    client = FakeClient(GroupAuthorizationFailedError("group"))
    pace_coordinator_lookups(client)
    with pytest.raises(GroupAuthorizationFailedError):
        await client.coordinator_lookup(1, "group")
    assert client.lookups == 1


async def test_a_connection_lost_for_longer_than_the_retry_time_raises() -> None:
    client = FakeClient(*(KafkaConnectionError("closed") for _ in range(10_000)))
    pace_coordinator_lookups(client, retry_s=0.05, first_s=0.01, most_s=0.01)
    raised: list[type[BaseException]] = []
    while not raised or raised[-1] is NodeNotReadyError:  # the first failure starts the clock
        try:
            await client.coordinator_lookup(1, "group")
        except (NodeNotReadyError, KafkaConnectionError) as err:
            raised.append(type(err))
    assert raised[-1] is KafkaConnectionError
    assert 2 <= client.lookups < 100
