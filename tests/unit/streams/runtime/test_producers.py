"""streams.runtime.producers: a coordinator lookup that loses its connection is tried again."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, KafkaError

from streams.runtime.producers import retry_lost_lookups


class FakeClient:
    def __init__(self) -> None:
        self.refreshed = 0

    async def force_metadata_update(self) -> bool:
        self.refreshed += 1
        return True


class FakeSender:
    """An aiokafka Sender's lookup, failing as scripted, then finding node 1."""

    def __init__(self, *failures: BaseException) -> None:
        self.client = FakeClient()
        self._retry_backoff = 0.0
        self._failures = list(failures)
        self.lookups = 0

    async def _find_coordinator(self, coordinator_type: Any, coordinator_key: str) -> int:
        self.lookups += 1
        if self._failures:
            raise self._failures.pop(0)
        return 1


def _lost() -> KafkaError:
    # What aiokafka 0.14's Sender._find_coordinator raises when the connection closes.
    err = KafkaError("KafkaConnectionError('Connection at 127.0.0.1:9092 closed')")
    err.__cause__ = KafkaConnectionError("Connection at 127.0.0.1:9092 closed")
    return err


async def test_lost_connections_are_tried_again_until_the_lookup_answers() -> None:
    sender = FakeSender(_lost(), KafkaConnectionError("closed"), _lost())
    retry_lost_lookups(sender)
    assert await sender._find_coordinator(1, "group") == 1
    assert sender.lookups == 4
    assert sender.client.refreshed == 3


async def test_any_other_failure_still_raises_at_once() -> None:
    sender = FakeSender(GroupAuthorizationFailedError("group"))
    retry_lost_lookups(sender)
    with pytest.raises(GroupAuthorizationFailedError):
        await sender._find_coordinator(1, "group")
    assert sender.lookups == 1


async def test_a_connection_lost_for_longer_than_the_retry_time_raises() -> None:
    sender = FakeSender(*(_lost() for _ in range(10_000)))
    sender._retry_backoff = 0.01
    retry_lost_lookups(sender, retry_s=0.05)
    with pytest.raises(KafkaError):
        await sender._find_coordinator(1, "group")
    assert 2 <= sender.lookups < 100
