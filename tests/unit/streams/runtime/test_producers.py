"""streams.runtime.producers: a coordinator lookup that loses its connection is tried again; a
transaction takes the group's offsets partition once it holds data; transactional requests are
tried again sooner than aiokafka's default."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, KafkaError
from aiokafka.producer.transaction_manager import TransactionManager

from streams.runtime.producers import (
    TXN_RETRY_BACKOFF_MS,
    Producers,
    add_offsets_early,
    retry_lost_lookups,
)


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
    retry_lost_lookups(sender, backoff_s=0.0)
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
    retry_lost_lookups(sender, retry_s=0.05, backoff_s=0.01)
    with pytest.raises(KafkaError):
        await sender._find_coordinator(1, "group")
    assert 2 <= sender.lookups < 100


def _in_transaction() -> TransactionManager:
    """aiokafka's own transaction manager, with its producer id, in an open transaction."""
    txn = TransactionManager("t-0", 60_000)
    add_offsets_early(txn, "group")
    txn.set_pid_and_epoch(1, 0)
    txn.begin_transaction()
    return txn


def _holds_data(txn: TransactionManager) -> None:
    tp = TopicPartition("out", 0)
    txn.maybe_add_partition_to_txn(tp)
    txn.partition_added(tp)


async def test_an_open_transaction_without_data_takes_no_offsets_partition() -> None:
    assert _in_transaction().consumer_group_to_add() is None


async def test_a_transaction_takes_it_after_its_first_data_partition_once() -> None:
    txn = _in_transaction()
    _holds_data(txn)
    assert txn.consumer_group_to_add() == "group"
    txn.consumer_group_added("group")
    assert txn.consumer_group_to_add() is None
    assert txn.offsets_to_commit() is None  # nothing to commit before the offsets are sent


async def test_offsets_sent_first_take_aiokafkas_own_path() -> None:
    txn = _in_transaction()
    txn.add_offsets_to_txn({TopicPartition("in", 0): 5}, "group")
    assert txn.consumer_group_to_add() == "group"


async def test_a_committing_transaction_takes_nothing_more() -> None:
    txn = _in_transaction()
    _holds_data(txn)
    txn.committing_transaction()
    assert txn.consumer_group_to_add() is None


async def test_the_next_transaction_starts_without_it() -> None:
    txn = _in_transaction()
    _holds_data(txn)
    txn.consumer_group_added("group")
    txn.committing_transaction()
    txn.complete_transaction()
    txn.begin_transaction()
    assert txn.consumer_group_to_add() is None
    _holds_data(txn)
    assert txn.consumer_group_to_add() == "group"


def test_transactional_producers_need_the_group_whose_offsets_they_commit() -> None:
    with pytest.raises(ValueError, match="group_id"):
        Producers(bootstrap_servers="127.0.0.1:9", client_id="c", transactional_id=str)


async def test_transactional_producers_retry_after_the_short_backoff_the_shared_one_not() -> None:
    producers = Producers(
        bootstrap_servers="127.0.0.1:9",
        client_id="w",
        transactional_id=lambda partition: f"app-group-{partition}",
        group_id="g",
    )
    transactional = producers._new("app-group-0")
    shared = producers._new(None)
    try:
        assert transactional._sender._retry_backoff == TXN_RETRY_BACKOFF_MS / 1000
        assert shared._sender._retry_backoff == 0.1  # aiokafka's default, for everything else
    finally:
        await transactional.stop()
        await shared.stop()
