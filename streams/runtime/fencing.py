"""A lost worker's open transaction, ended as a new owner's restore meets it (consumer.py, 12).

With one transaction per worker, a worker killed or cut off leaves its transaction open on the
changelog partitions it wrote, and the partitions' new owner restores them only past it
(consumer.py, 11): until the broker aborts it at its timeout and its next look for such
transactions, 10-20 s with the defaults. Faust recovers all of a worker's partitions together,
so its own partitions, which hold nothing open, wait as long (bench/results/worker-waits.md).
With one transaction per partition a new owner never waits: opening the partition's
transactional id fences the last owner and aborts what it left open. This does the same for a
worker's transactional id, found from the partitions it left open:

1. DescribeProducers (KIP-664), at each waiting partition's leader: the producers with a
   transaction open on it.
2. ListTransactions, at every broker (each coordinates some ids), filtered to those producers:
   their transactional ids.
3. DescribeTransactions, at each id's coordinator: fenced only while its transaction is
   `Ongoing` and holds one of the waiting partitions (`to_fence`).
4. InitProducerId with that id, at its coordinator, as a restarted worker under that name would
   do: the coordinator aborts the open transaction and bumps the id's epoch. A worker still
   using the id (a zombie) is fenced at its next request, drops its uncommitted work and rejoins
   (runner.py).

Why (3) keeps a live worker's transaction safe: Faust's rebalance is eager, and a worker commits
its transaction as its partitions are revoked, before it rejoins (consumer.py, 5). So a live
member of the group has no transaction open on a partition that moved to another; the one
it opens next holds only partitions assigned to it. A transaction that holds a partition this
worker now owns belongs to a worker outside the group: killed, paused or cut off. One race is
left, and it is benign: a worker that reopens the same id between steps 3 and 4 (a zombie
rejoining) has its new producer fenced by step 4, and drops its uncommitted work and rejoins once
more, as after any fence; nothing is lost or doubled.

aiokafka 0.14 has none of these requests but InitProducerId v0, so the other three are declared
here in streams/runtime/protocol.py's way (Kafka's layouts; brokers since Kafka 3.0 take them).
Anything refused or failing leaves the wait as it was: the broker still ends the transaction
at its timeout.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka import errors as Errors
from aiokafka.client import CoordinationType
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.protocol.types import CompactArray, Int16, Int32, Int64

from streams.runtime.protocol import (
    STRING,
    by_topic,
    flexible_api,
    structs,
    topic_partitions,
    topics,
)

log = logging.getLogger(__name__)

NO_TRANSACTION = -1  # DescribeProducers' CurrentTxnStartOffset of a producer with none open
ONGOING = "Ongoing"  # the coordinator's state of a transaction that has not begun to end
# InitProducerId answers these while the coordinator aborts the transaction or moves: ask again.
_RETRY_CODES = frozenset(
    {
        Errors.ConcurrentTransactions.errno,
        Errors.CoordinatorLoadInProgressError.errno,
        Errors.CoordinatorNotAvailableError.errno,
        Errors.NotCoordinatorError.errno,
    }
)
# Of those, the ones after which the coordinator is looked up again.
_COORDINATOR_MOVED = frozenset(
    {Errors.CoordinatorNotAvailableError.errno, Errors.NotCoordinatorError.errno}
)
RETRY_BACKOFF_S = 0.05


@dataclass(frozen=True, slots=True)
class OpenTransaction:
    """A transaction as its coordinator describes it."""

    transactional_id: str
    state: str
    producer_id: int
    partitions: frozenset[TopicPartition]


def to_fence(
    described: Iterable[OpenTransaction], waiting: Iterable[TopicPartition], own_id: str
) -> list[str]:
    """The transactional ids to fence: transactions still open on a `waiting` partition, none of
    them this worker's own (`own_id`)."""
    held = frozenset(waiting)
    return sorted(
        {
            t.transactional_id
            for t in described
            if t.state == ONGOING and t.partitions & held and t.transactional_id != own_id
        }
    )


async def fence_lost_transactions(
    client: Any, waiting: Iterable[TopicPartition], own_id: str, timeout_ms: int, limit_s: float
) -> list[str]:
    """Steps 1-4 for the `waiting` partitions, with `client` (an AIOKafkaClient with their
    metadata): the transactional ids fenced. Raises what a request answers with an error."""
    waiting = sorted(waiting)
    producers = await _producers_with_open_transactions(client, waiting)
    if not producers:
        return []
    ids = await _transactional_ids(client, producers)
    if not ids:
        # The coordinators list every transactional id a producer has, whatever its state, but
        # only those the principal may describe: none is a refusal, not an absence.
        raise Errors.TransactionalIdAuthorizationFailed(
            f"no transactional id listed for producers {sorted(producers)}, which hold"
            " transactions open: Describe on the workers' transactional ids is missing"
        )
    described = [t for tid in ids for t in await _describe(client, tid)]
    fenced = to_fence(described, waiting, own_id)
    deadline = time.monotonic() + limit_s
    for tid in fenced:
        await _init_producer_id(client, tid, timeout_ms, deadline)
    return fenced


async def _producers_with_open_transactions(
    client: Any, partitions: list[TopicPartition]
) -> set[int]:
    by_leader: dict[int, list[TopicPartition]] = collections.defaultdict(list)
    for tp in partitions:
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            raise Errors.LeaderNotAvailableError(f"no leader known for {tp}")
        by_leader[leader].append(tp)
    producers: set[int] = set()
    for leader, tps in by_leader.items():
        response = await client.send(leader, DESCRIBE_PRODUCERS.request(by_topic(tps)))
        producers |= open_producers(response)
    return producers


def open_producers(response: Any) -> set[int]:
    """The producer ids with a transaction open on a partition of a DescribeProducers answer."""
    producers: set[int] = set()
    for _topic, partitions, _ in response.topics:
        for _partition, error_code, error_message, active, _ in partitions:
            if error_code:
                raise Errors.for_code(error_code)(error_message)
            producers |= {p[0] for p in active if p[5] != NO_TRANSACTION}
    return producers


async def _transactional_ids(client: Any, producers: set[int]) -> set[str]:
    ids: set[str] = set()
    for broker in client.cluster.brokers():
        response = await client.send(
            broker.nodeId, LIST_TRANSACTIONS.request([], sorted(producers))
        )
        if response.error_code:
            raise Errors.for_code(response.error_code)()
        ids |= {tid for tid, _producer, _state, _ in response.transaction_states}
    return ids


async def _describe(client: Any, transactional_id: str) -> list[OpenTransaction]:
    node = await client.coordinator_lookup(CoordinationType.TRANSACTION, transactional_id)
    response = await client.send(node, DESCRIBE_TRANSACTIONS.request([transactional_id]))
    return described_transactions(response)


def described_transactions(response: Any) -> list[OpenTransaction]:
    """The transactions a DescribeTransactions answer describes."""
    described = []
    for (
        code,
        tid,
        state,
        _timeout,
        _start,
        producer_id,
        _epoch,
        held,
        _,
    ) in response.transaction_states:
        if code:
            raise Errors.for_code(code)(tid)
        partitions = frozenset(TopicPartition(t, p) for t, indexes, _ in held for p in indexes)
        described.append(OpenTransaction(tid, state, producer_id, partitions))
    return described


async def _init_producer_id(
    client: Any, transactional_id: str, timeout_ms: int, deadline: float
) -> None:
    """InitProducerId until the coordinator has aborted the open transaction (it answers
    CONCURRENT_TRANSACTIONS while it does) or `deadline` passes (RequestTimedOutError)."""
    node = await client.coordinator_lookup(CoordinationType.TRANSACTION, transactional_id)
    while True:
        response = await client.send(node, InitProducerIdRequest(transactional_id, timeout_ms))
        code = response.error_code
        if not code:
            return
        if code not in _RETRY_CODES:
            raise Errors.for_code(code)(transactional_id)
        if time.monotonic() >= deadline:
            raise Errors.RequestTimedOutError(f"{transactional_id}: still {code}")
        await asyncio.sleep(RETRY_BACKOFF_S)
        if code in _COORDINATOR_MOVED:
            node = await client.coordinator_lookup(CoordinationType.TRANSACTION, transactional_id)


DESCRIBE_PRODUCERS = flexible_api(
    "DescribeProducers",
    61,
    0,
    request=(("topics", topics()),),
    response=(
        ("throttle_time_ms", Int32),
        (
            "topics",
            topic_partitions(
                ("partition_index", Int32),
                ("error_code", Int16),
                ("error_message", STRING),
                (
                    "active_producers",
                    structs(
                        ("producer_id", Int64),
                        ("producer_epoch", Int32),
                        ("last_sequence", Int32),
                        ("last_timestamp", Int64),
                        ("coordinator_epoch", Int32),
                        ("current_txn_start_offset", Int64),
                    ),
                ),
            ),
        ),
    ),
)
LIST_TRANSACTIONS = flexible_api(
    "ListTransactions",
    66,
    0,
    request=(("state_filters", CompactArray(STRING)), ("producer_id_filters", CompactArray(Int64))),
    response=(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("unknown_state_filters", CompactArray(STRING)),
        (
            "transaction_states",
            structs(
                ("transactional_id", STRING), ("producer_id", Int64), ("transaction_state", STRING)
            ),
        ),
    ),
)
DESCRIBE_TRANSACTIONS = flexible_api(
    "DescribeTransactions",
    65,
    0,
    request=(("transactional_ids", CompactArray(STRING)),),
    response=(
        ("throttle_time_ms", Int32),
        (
            "transaction_states",
            structs(
                ("error_code", Int16),
                ("transactional_id", STRING),
                ("transaction_state", STRING),
                ("transaction_timeout_ms", Int32),
                ("transaction_start_time_ms", Int64),
                ("producer_id", Int64),
                ("producer_epoch", Int16),
                ("topics", structs(("topic", STRING), ("partitions", CompactArray(Int32)))),
            ),
        ),
    ),
)
