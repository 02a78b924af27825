"""streams.runtime.fencing: which transactions a new owner fences (only a lost worker's, open on
its partitions), the requests as they go on the wire, the answers read, InitProducerId retried
while the coordinator aborts."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as Errors

from streams.runtime import fencing
from streams.runtime.fencing import (
    DESCRIBE_PRODUCERS,
    DESCRIBE_TRANSACTIONS,
    LIST_TRANSACTIONS,
    ONGOING,
    OpenTransaction,
    described_transactions,
    open_producers,
    to_fence,
)
from streams.runtime.protocol import by_topic

CL0, CL1, CL2 = (TopicPartition("app-changelog", p) for p in range(3))


def _roundtrip(struct: Any) -> Any:
    """Encoded as it goes on the wire, decoded with the same layout."""
    return type(struct).decode(io.BytesIO(struct.encode()))


def _txn(tid: str, state: str = ONGOING, *partitions: TopicPartition) -> OpenTransaction:
    return OpenTransaction(tid, state, producer_id=7, partitions=frozenset(partitions))


def test_a_transaction_open_on_a_waiting_partition_is_fenced() -> None:
    described = [_txn("app-worker-b", ONGOING, CL0, CL2), _txn("app-worker-c", ONGOING, CL1)]
    assert to_fence(described, [CL0], own_id="app-worker-a") == ["app-worker-b"]


def test_a_transaction_on_other_partitions_only_is_a_live_workers_and_kept() -> None:
    # A live worker's next transaction holds only its own partitions.
    assert to_fence([_txn("app-worker-b", ONGOING, CL1)], [CL0], own_id="app-worker-a") == []


@pytest.mark.parametrize("state", ["PrepareCommit", "PrepareAbort", "CompleteCommit", "Empty"])
def test_a_transaction_already_ending_is_left_to_end(state: str) -> None:
    assert to_fence([_txn("app-worker-b", state, CL0)], [CL0], own_id="app-worker-a") == []


def test_the_workers_own_transactional_id_is_never_fenced() -> None:
    assert to_fence([_txn("app-worker-a", ONGOING, CL0)], [CL0], own_id="app-worker-a") == []


def test_each_id_is_fenced_once_in_order() -> None:
    described = [_txn("w-c", ONGOING, CL0), _txn("w-b", ONGOING, CL1), _txn("w-c", ONGOING, CL1)]
    assert to_fence(described, [CL0, CL1], own_id="w-a") == ["w-b", "w-c"]


def test_producers_are_described_by_topic_and_partition() -> None:
    request = DESCRIBE_PRODUCERS.request(by_topic([CL2, CL0, TopicPartition("other", 1)]))
    sent = _roundtrip(request.prepare({61: (0, 0)}))
    assert type(sent) is DESCRIBE_PRODUCERS.request_struct
    assert [(t, ps) for t, ps, _ in sent.topics] == [("app-changelog", [2, 0]), ("other", [1])]


def _producers(*active: tuple[int, int], error_code: int = 0) -> Any:
    """A DescribeProducers answer for CL0: (producer id, current transaction start) each."""
    states: list[Any] = [(pid, 0, 5, 1_700_000_000_000, 3, start, {}) for pid, start in active]
    partition: Any = (0, error_code, "refused" if error_code else None, states, {})
    return _roundtrip(
        DESCRIBE_PRODUCERS.response_struct(0, [("app-changelog", [partition], {})], {})
    )


def test_only_producers_with_a_transaction_open_are_taken() -> None:
    assert open_producers(_producers((11, 79), (12, -1), (13, 0))) == {11, 13}


def test_a_partition_the_leader_refuses_raises_its_error() -> None:
    with pytest.raises(Errors.NotLeaderForPartitionError):
        open_producers(_producers(error_code=Errors.NotLeaderForPartitionError.errno))


def test_transactions_are_listed_for_the_producers_found_in_any_state() -> None:
    sent = _roundtrip(LIST_TRANSACTIONS.request([], [11, 13]).prepare({66: (0, 2)}))
    assert type(sent) is LIST_TRANSACTIONS.request_struct
    assert (sent.state_filters, sent.producer_id_filters) == ([], [11, 13])


def test_transactions_are_described_by_id() -> None:
    sent = _roundtrip(DESCRIBE_TRANSACTIONS.request(["w-b"]).prepare({65: (0, 0)}))
    assert type(sent) is DESCRIBE_TRANSACTIONS.request_struct
    assert sent.transactional_ids == ["w-b"]


def _described(*states: tuple[int, str, str, list[tuple[str, list[int]]]]) -> Any:
    answer = DESCRIBE_TRANSACTIONS.response_struct(
        0,
        [
            (
                code,
                tid,
                state,
                10_000,
                1_700_000_000_000,
                11,
                2,
                [(t, ps, {}) for t, ps in topics],
                {},
            )
            for code, tid, state, topics in states
        ],
        {},
    )
    return _roundtrip(answer)


def test_a_described_transaction_names_its_partitions() -> None:
    answer = _described((0, "w-b", ONGOING, [("app-changelog", [0, 2]), ("out", [1])]))
    assert described_transactions(answer) == [
        OpenTransaction("w-b", ONGOING, 11, frozenset({CL0, CL2, TopicPartition("out", 1)}))
    ]


def test_a_transaction_the_coordinator_cannot_describe_raises() -> None:
    code = Errors.TransactionalIdAuthorizationFailed.errno
    with pytest.raises(Errors.TransactionalIdAuthorizationFailed):
        described_transactions(_described((code, "w-b", "", [])))


class _Coordinator:
    """A transaction coordinator that answers InitProducerId with `codes` in turn."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.asked: list[str] = []

    async def coordinator_lookup(self, kind: Any, key: str) -> int:
        return 1

    async def send(self, node: int, request: Any) -> Any:
        self.asked.append(request._transactional_id)
        return _Answer(self.codes.pop(0))


class _Answer:
    def __init__(self, error_code: int) -> None:
        self.error_code = error_code


async def test_init_producer_id_is_asked_again_while_the_coordinator_aborts() -> None:
    busy = Errors.ConcurrentTransactions.errno
    client = _Coordinator(busy, Errors.NotCoordinatorError.errno, busy, 0)
    await fencing._init_producer_id(client, "w-b", 10_000, time.monotonic() + 5)
    assert client.asked == ["w-b"] * 4


async def test_init_producer_id_refused_raises() -> None:
    client = _Coordinator(Errors.TransactionalIdAuthorizationFailed.errno)
    with pytest.raises(Errors.TransactionalIdAuthorizationFailed):
        await fencing._init_producer_id(client, "w-b", 10_000, time.monotonic() + 5)


async def test_init_producer_id_gives_up_at_its_deadline() -> None:
    client = _Coordinator(*[Errors.ConcurrentTransactions.errno] * 100)
    with pytest.raises(Errors.RequestTimedOutError):
        await fencing._init_producer_id(client, "w-b", 10_000, time.monotonic() + 0.12)
    assert 2 <= len(client.asked) < 10


async def test_open_transactions_whose_ids_are_not_listed_are_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ListTransactions leaves out the ids the principal may not describe: an empty list for
    producers that hold transactions open is an authorization error, never a silent nothing."""

    async def producers(client: Any, partitions: list[TopicPartition]) -> set[int]:
        return {7, 9}

    async def no_ids(client: Any, found: set[int]) -> set[str]:
        return set()

    monkeypatch.setattr(fencing, "_producers_with_open_transactions", producers)
    monkeypatch.setattr(fencing, "_transactional_ids", no_ids)
    with pytest.raises(Errors.TransactionalIdAuthorizationFailed, match=r"producers \[7, 9\]"):
        await fencing.fence_lost_transactions(None, [CL0], "w-a", 10_000, 1.0)
